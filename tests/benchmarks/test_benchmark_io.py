"""Benchmark results are committed: the command they record names run directories RUN, RUN2, ...
and never a path of the machine that measured them."""

import sys
from pathlib import Path

from benchmark_io import command_line


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
