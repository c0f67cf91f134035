"""scripts/ship_weights.py: what a model card says about how its accuracy was measured."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import ship_weights  # noqa: E402
from kws.runinfo import write_results  # noqa: E402


def _cv(tmp_path: Path, folds: list[str]) -> Path:
    summary = {"kind": "summary", "part": "gsc12-dev", "metric": "acc12", "clips": 364, "speakers": 21,
               "pooled": 0.593, "pooled_ci95": [0.535, 0.661], "folds": {f: 0.593 for f in folds},
               "fold_mean": 0.593, "fold_mean_ci95": [float("nan"), float("nan")]}
    return write_results(tmp_path / "cv.json", [summary], command="test", folds=folds)


def test_the_card_says_which_protocol_and_which_model_it_describes(tmp_path):
    one = ship_weights.cv_accuracy(_cv(tmp_path, ["1/5"]), shipped_fold="1/5")
    assert one["protocol"].startswith("fold 1 of") and "fold-1 model" in one["shipped"]
    assert one["acc12"]["value"] == 0.593
    other = ship_weights.cv_accuracy(_cv(tmp_path, ["1/5"]), shipped_fold="all")
    assert "rough estimate" in other["shipped"]
    synth = ship_weights.cv_accuracy(_cv(tmp_path, ["all"]), shipped_fold="all")
    assert "synthetic speech only" in synth["protocol"] and synth["shipped"] == "These weights are that model."
    full = ship_weights.cv_accuracy(_cv(tmp_path, [f"{k}/5" for k in range(1, 6)]), shipped_fold="all")
    assert full["protocol"].startswith("speaker-disjoint 5-fold") and "every fold" in full["shipped"]


def test_every_shipped_file_is_within_the_limit_and_has_its_card():
    from zoo.model import model_dir

    files = sorted(model_dir().glob("*.safetensors"))
    assert files, "no shipped weights"
    for f in files:
        assert f.stat().st_size <= ship_weights.MAX_BYTES, f"{f.name}: {f.stat().st_size:,} bytes"
        card = f.with_suffix(".md")
        assert card.is_file() and "## Real-speech accuracy" in card.read_text(), f"{card}: no model card"
