"""Atomic artefacts and stage directories: nothing half-written, skip when unchanged."""

import pytest

from prismrec.artifacts import (build_stage, fingerprint_settings, is_current, read_json, stage_fingerprint,
                                stage_fingerprint_for, write_json)


def test_write_json_replaces_atomically(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert read_json(path) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp files left


def test_failed_stage_leaves_previous_version_untouched(tmp_path):
    final = tmp_path / "stage"
    with build_stage(final, config={"k": 1}, inputs={"in": "abc"}) as d:
        (d / "out.txt").write_text("v1")
    with pytest.raises(RuntimeError):
        with build_stage(final, config={"k": 2}, inputs={"in": "abc"}) as d:
            (d / "out.txt").write_text("half")
            raise RuntimeError("boom")
    assert (final / "out.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]  # temp dir cleaned up


def test_manifest_fingerprint_tracks_config_and_inputs(tmp_path):
    final = tmp_path / "stage"
    with build_stage(final, config={"k": 1}, inputs={"in": "abc"}):
        pass
    manifest = read_json(final / "manifest.json")
    assert {"config", "inputs", "versions", "wall_seconds", "fingerprint"} <= set(manifest)
    assert is_current(final, stage_fingerprint_for({"k": 1}, {"in": "abc"}))
    assert not is_current(final, stage_fingerprint_for({"k": 2}, {"in": "abc"}))
    assert not is_current(final, stage_fingerprint_for({"k": 1}, {"in": "abd"}))
    assert stage_fingerprint(final) == manifest["fingerprint"]
    assert stage_fingerprint(tmp_path / "absent") == "missing"


def test_artefacts_get_normal_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {})
        with build_stage(tmp_path / "stage", config={}, inputs={}):
            pass
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "stage").stat().st_mode) == 0o755


def test_added_options_enter_the_fingerprint_only_when_switched_on():
    from dataclasses import dataclass

    @dataclass
    class Before:
        width: int = 4
        device: str = "cpu"

    @dataclass
    class After(Before):
        new_option: bool = False

    old = stage_fingerprint_for(fingerprint_settings(Before(), ("device",)), {})
    assert stage_fingerprint_for(fingerprint_settings(After(), ("device",), {"new_option": False}), {}) == old
    assert stage_fingerprint_for(fingerprint_settings(After(device="cuda"), ("device",), {"new_option": False}), {}) == old
    assert stage_fingerprint_for(fingerprint_settings(After(new_option=True), ("device",), {"new_option": False}), {}) != old
    assert stage_fingerprint_for(fingerprint_settings(After(width=5), ("device",), {"new_option": False}), {}) != old


def test_wall_seconds_count_from_when_the_stage_work_began(tmp_path):
    import time

    with build_stage(tmp_path / "computed_before", config={}, inputs={}, started=time.time() - 100):
        pass
    with build_stage(tmp_path / "computed_inside", config={}, inputs={}):
        pass
    assert read_json(tmp_path / "computed_before" / "manifest.json")["wall_seconds"] >= 100
    assert read_json(tmp_path / "computed_inside" / "manifest.json")["wall_seconds"] < 100
