"""Benchmark results are committed: the command they record names run directories RUN, RUN2, ...
and never a path of the machine that measured them."""

import sys
from pathlib import Path

from benchmark_io import command_line, model_specs


def test_the_run_directory_is_written_run(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/home/me/prismrec/benchmarks/item_head_weight.py", "/data/runs/beauty/",
                                      "--model", "prism", "--weights", "0,0.5,inf", "--out", "benchmarks/results/x"])
    assert command_line(Path("/data/runs/beauty")) == (
        "python benchmarks/item_head_weight.py RUN --model prism --weights 0,0.5,inf --out benchmarks/results/x")


def test_paths_inside_a_run_directory_and_several_run_directories(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["sid_history_overlap.py", "runs/a/tokenizer=PSQ", "runs/ab/tokenizer-tiger",
                                      "/x/runs/a/tokenizer", "--label", "my runs"])
    # runs/a must not match inside runs/ab or /x/runs/a; an argument with a space stays one argument
    assert command_line("runs/a", "runs/ab", "runs/a") == (
        "python benchmarks/sid_history_overlap.py RUN/tokenizer=PSQ RUN2/tokenizer-tiger /x/runs/a/tokenizer "
        "--label 'my runs'")


def test_without_run_directories_the_command_is_as_typed(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cpu_dropout.py", "--steps", "3"])
    assert command_line() == "python benchmarks/cpu_dropout.py --steps 3"


def test_models_of_other_run_directories_are_labelled_by_their_run_name():
    specs = model_specs(["prism", "prism@/data/runs/b/", "sasrec-seed1@/data/runs/c", "tiger@/data/runs/b"], "/data/runs/a")
    assert [label for label, _, _ in specs] == ["prism", "prism@RUN2", "sasrec-seed1@RUN3", "tiger@RUN2"]
    assert [name for _, name, _ in specs] == ["prism", "prism", "sasrec-seed1", "tiger"]
    assert [str(d) for _, _, d in specs] == ["/data/runs/a", "/data/runs/b", "/data/runs/c", "/data/runs/b"]
    # the default run directory named with @ is the default run directory
    assert model_specs(["pop@/data/runs/a/"], "/data/runs/a")[0][0] == "pop"


def test_machine_info_names_the_cpu_and_whether_it_computes_bfloat16(monkeypatch, tmp_path):
    import benchmark_io

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\n")
    monkeypatch.setattr(benchmark_io, "Path", lambda _: cpuinfo)
    info = benchmark_io.machine_info()
    assert info["cpu_model"] == "Test CPU 9000"
    assert isinstance(info["cpu_native_bf16"], bool)
