"""The few-shot benchmark (bench.fewshot) on a miniature of its protocol: two "speakers"
(synthetic voices laid out as FSDD is), one recording per word, seconds per run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from bench import fewshot
from kws.data.custom import build_words
from kws.runinfo import write_results

WORDS = ("lights on", "hey computer")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("cache")
    build = build_words(WORDS, 4, cache / "elsewhere", progress=False)
    root = tmp_path_factory.mktemp("fsdd")
    for word in WORDS:
        (root / word).mkdir()
        for i, wav in enumerate(sorted((build / word).glob("*.wav"))[:4]):
            shutil.copy(wav, root / word / f"{'ab'[i // 2]}_{i % 2}.wav")
    return root, cache


def test_train_on_one_speaker_score_the_others(corpus, tmp_path: Path) -> None:
    root, cache = corpus
    overrides = {"cache_dir": str(cache), "epochs": 1, "synth_per_word": 3, "negatives": "none", "cache_views": 1,
                 "progress": False, "threads": 1, "batch_size": 16}
    rows = fewshot.measure(root, speakers=["a"], ks=[1], arms=("synth", "real", fewshot.SYNTH_ONLY),
                           runs=tmp_path / "runs", overrides=overrides, val_takes=(1,))
    trained = [r for r in rows if r["arm"] != fewshot.SYNTH_ONLY]
    assert {(r["arm"], r["train_speaker"], r["test_speaker"]) for r in trained} == {("synth", "a", "b"),
                                                                                  ("real", "a", "b")}
    assert all(r["clips"] == 4 and 0 <= r["accuracy"] <= 1 for r in trained)  # b's 2 takes of 2 words
    # synthetic only: scored on every speaker, none of whom it heard
    assert sorted(r["test_speaker"] for r in rows if r["arm"] == fewshot.SYNTH_ONLY) == ["a", "b"]
    # the data each run trained on: the k takes of its speaker, validation on another take
    train = sorted(p.name for p in (tmp_path / "runs" / "real-a-k1" / "train").rglob("*.wav"))
    assert train == ["a_0.wav", "a_0.wav"]
    with pytest.raises(ValueError, match="would train on the validation takes"):
        fewshot.measure(root, speakers=["a"], ks=[2], arms=("real",), runs=tmp_path / "runs", overrides=overrides,
                        val_takes=(1,))

    results = write_results(tmp_path / "fewshot.json", rows, command="python -m bench.fewshot run (test)")
    md, png = fewshot.report(results)
    text = md.read_text()
    assert "| synth | 1 | 1 | 4 |" in text and "| synth-only | 0 |" in text
    with Image.open(png) as im:
        assert im.text["Software"] == "python -m bench.fewshot report" and im.text["Description"]
    summary = {(s["arm"], s["k"]): s for s in fewshot.summarize(json.loads(results.read_text())["results"])}
    assert summary[("synth", 1)]["clips"] == 4 and summary[("synth-only", 0)]["clips"] == 8


def test_recordings_must_name_speaker_and_take(tmp_path: Path) -> None:
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "george.wav").write_bytes(b"")
    with pytest.raises(Exception, match=r"expected <speaker>_<take>.wav"):
        fewshot.recordings(tmp_path)
