"""The rare-word few-shot benchmark (bench.fewshot_gsc) on a miniature: synthetic voices laid out
as Speech Commands is (one clip per speaker and word), one recording per word, seconds per run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import fewshot, fewshot_gsc
from kws.data.custom import build_words
from kws.data.splits import speaker_of

WORDS = ("lights on", "hey computer")
SPEAKERS = ("aaaa0001", "bbbb0002", "cccc0003", "dddd0004")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("cache")
    build = build_words(WORDS, 4, cache / "elsewhere", progress=False)
    root = tmp_path_factory.mktemp("gsc")
    for word in (*WORDS, "yes"):  # "yes" is a 12-class word: never a rare one
        (root / word).mkdir()
        for speaker, wav in zip(SPEAKERS, sorted((build / (word if word != "yes" else WORDS[0])).glob("*.wav"))):
            shutil.copy(wav, root / word / f"{speaker}_nohash_0.wav")
    return root, cache


def test_draws_keep_speakers_apart(corpus):
    root, _ = corpus
    words = fewshot_gsc.rare_words(root, min_clips=3)
    assert sorted(words) == sorted(WORDS)
    d = fewshot_gsc.draw(words, k=2, d=0)
    for word in WORDS:
        picked = [speaker_of(p.stem) for p in d.train[word] + d.val[word]]
        assert len(d.train[word]) == 2 and len(d.val[word]) == 1 and len(set(picked)) == 3
        assert set(picked) <= d.heard
    assert d == fewshot_gsc.draw(words, k=2, d=0) and d != fewshot_gsc.draw(words, k=2, d=1)  # seeded by draw
    with pytest.raises(ValueError, match="fewer than 5 speakers"):
        fewshot_gsc.draw(words, k=4, d=0)


def test_train_on_some_speakers_score_the_unheard(corpus, tmp_path: Path):
    root, cache = corpus
    overrides = {"cache_dir": str(cache), "epochs": 1, "synth_per_word": 3, "negatives": "none", "cache_views": 1,
                 "progress": False, "threads": 1, "batch_size": 16}
    rows = fewshot_gsc.measure(root, ks=[1], draws=1, arms=("real", fewshot.SYNTH_ONLY), runs=tmp_path / "runs",
                               overrides=overrides, min_clips=3)
    real = [r for r in rows if r["arm"] == "real"]
    heard = {speaker_of(p.stem) for p in (tmp_path / "runs" / "real-d0-k1").rglob("*.wav")}
    assert real and heard and not heard & {r["test_speaker"] for r in real}  # no test speaker was heard
    assert sum(r["clips"] for r in real) == 2 * (len(SPEAKERS) - len(heard))
    synth_only = [r for r in rows if r["arm"] == fewshot.SYNTH_ONLY]
    assert sorted(r["test_speaker"] for r in synth_only) == sorted(SPEAKERS)  # heard nobody: scored on everyone


def test_k_must_leave_clips_to_test(corpus):
    root, _ = corpus
    assert fewshot_gsc.main(["run", "--data", str(root), "--k", "6"]) == 2
