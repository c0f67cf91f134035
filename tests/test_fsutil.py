"""Atomic writes: all or nothing, and files readable like any other file the user writes."""
from __future__ import annotations

import os
import stat

import pytest

from kws.fsutil import atomic_path, atomic_write_json, atomic_write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new cont")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_mode_follows_umask_not_mkstemp(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "r.json").stat().st_mode)
    assert mode & 0o044 == 0o044  # group/other can read (mkstemp alone gives 0600)


def test_label_file_round_trip_and_errors(tmp_path):
    from kws.labels import load_labels, save_labels

    save_labels(("yes", "no", "_silence_"), tmp_path)
    assert load_labels(tmp_path) == ["yes", "no", "_silence_"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_labels(tmp_path / "bad.json")
    (tmp_path / "dup.json").write_text('["a", "a"]')
    with pytest.raises(ValueError, match="duplicate"):
        load_labels(tmp_path / "dup.json")
    with pytest.raises(FileNotFoundError, match="label file not found"):
        load_labels(tmp_path / "missing.json")
