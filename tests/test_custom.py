"""Your own words (kws.data.custom): synthetic speech of any word, recordings that are all
training data, hard negatives as `_unknown_`, the project's noise for data without any, and
train.py's --synth-words / --negatives / --hard-negatives. Everything here builds its own
tiny data into a fresh cache (seconds), so it passes on a clean clone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli import train as train_cli
import zoo
from kws.data import open_source
from kws.data.custom import build_words, default_noise, parse_say, say_spec
from kws.data.plan import check_hard_negatives, plan_custom
from kws.data.index import DataError
from kws.labels import SILENCE, UNKNOWN

WORDS = ("lights on", "hey computer")
FAST = ["--batch-size", "16", "--no-progress", "--deterministic", "--seed", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def my_words(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder, `my_words/<word>/me_<n>.wav`: 4 takes of each word (synthetic voices
    stand in for the microphone; none of these is in the `say:` build the tests train with)."""
    build = build_words(WORDS, 4, cache / "elsewhere", progress=False)
    out = tmp_path_factory.mktemp("my_words")
    for word in WORDS:
        (out / word).mkdir()
        for n, wav in enumerate(sorted((build / word).glob("*.wav"))):
            shutil.copy(wav, out / word / f"me_{n}.wav")
    return out


# --------------------------------------------------------------------------- data parts

def test_say_builds_synthetic_speech_of_any_word(cache: Path) -> None:
    src = open_source("say:3:lights on,hey computer", labels="auto", cache_dir=cache)
    assert set(WORDS) <= set(src.labels)
    clips = sum(len(src.entries(s)) for s in ("train", "validation", "test"))
    assert clips >= 2 * 3
    assert src.noise.size == 0  # the build's own noise is not training noise (default_noise is)
    assert not src.parts[0].recorded
    # a second open reuses the build: same folder, nothing regenerated
    again = open_source("say:3:lights on,hey computer", labels="auto", cache_dir=cache)
    assert again.root == src.root


@pytest.mark.parametrize("arg, problem", [("", "no words"), ("3:", "no words"), ("0:yes", ">= 1")])
def test_say_refuses_bad_word_lists(arg: str, problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        parse_say(arg)


def test_say_words_may_not_hold_spec_syntax() -> None:
    assert parse_say("5:a b, c") == (5, ("a b", "c"))
    with pytest.raises(DataError, match=r"may not contain"):
        say_spec(["on+off"])


def test_train_part_is_all_training_data(my_words: Path, cache: Path) -> None:
    src = open_source(f"train:{my_words}", labels="auto", cache_dir=cache)
    assert len(src.entries("train")) == 8 and not src.entries("validation") and not src.entries("test")
    assert src.parts[0].recorded


def test_negatives_part_is_unknown_at_any_depth(tmp_path: Path, my_words: Path, cache: Path) -> None:
    deep = tmp_path / "saved" / "2026-12-01" / "lights on"
    deep.mkdir(parents=True)
    shutil.copy(next((my_words / "lights on").glob("*.wav")), deep / "false.wav")
    src = open_source(f"negatives:{tmp_path / 'saved'}+train:{my_words}", labels=list(WORDS) + [UNKNOWN],
                      cache_dir=cache)
    train = src.split("train")
    assert sorted(train.labels[y] for y in train.y).count(UNKNOWN) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: no audio files"):
        open_source(f"negatives:{empty}", cache_dir=cache)


def test_hard_negatives_refuse_a_folder_holding_correct_detections(tmp_path: Path, my_words: Path) -> None:
    wav = next((my_words / "lights on").glob("*.wav"))
    (tmp_path / "wrong").mkdir()
    shutil.copy(wav, tmp_path / "wrong" / "a.wav")
    check_hard_negatives(tmp_path / "wrong")  # the false ones only: fine
    check_hard_negatives(tmp_path)
    shutil.copy(wav, tmp_path / "right.wav")
    with pytest.raises(DataError, match=r"pass --hard-negatives .*wrong to train on the false ones only"):
        check_hard_negatives(tmp_path)


def test_default_noise_is_the_projects_synthetic_beds(cache: Path) -> None:
    noise, what = default_noise(cache)
    assert noise.dtype == np.float32 and noise.size >= 6 * 60 * 16_000
    assert what.startswith("default noise: 6 synthetic beds")


# --------------------------------------------------------------------------- train.py's options

def test_plan_adds_synthetic_words_negatives_and_labels(my_words: Path, cache: Path, tmp_path: Path) -> None:
    plan = plan_custom(f"folder:{my_words}", "default", synth_words="auto", synth_per_word=3, negatives="none",
                       cache_dir=cache)
    assert plan.keywords == tuple(sorted(WORDS))
    assert plan.labels == (*sorted(WORDS), SILENCE, UNKNOWN)
    assert plan.spec == f"folder:{my_words}+say:3:hey computer,lights on*0.2"
    # a word with no recording at all is learnt from synthetic speech alone
    more = plan_custom(f"folder:{my_words}", "default", synth_words="lights off", synth_per_word=3,
                       negatives="none", cache_dir=cache)
    assert "lights off" in more.keywords and more.spec.endswith("+say:3:lights off*0.2")
    unchanged = plan_custom(f"folder:{my_words}", "default", negatives="none", cache_dir=cache)
    assert unchanged.spec == f"folder:{my_words}" and unchanged.labels == "default"


def test_train_a_new_word_from_a_few_recordings(my_words: Path, cache: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    rc = train_cli.main(["--model", "speech_embedding_mlp", "--freeze-backbone", "--cache-views", "2",
                         "--epochs", "2", "--data", f"folder:{my_words}", "--synth-words", "auto",
                         "--synth-per-word", "3", "--negatives", "none", "--cache-dir", str(cache),
                         "--out", str(out), *FAST])
    assert rc == 0
    log = capsys.readouterr().out
    assert "synthetic speech: 3 clips of each of hey computer, lights on" in log
    assert "default noise: 6 synthetic beds" in log  # my_words has no _background_noise_
    model, meta = zoo.load_model(out)
    assert model.labels == (*sorted(WORDS), SILENCE, UNKNOWN)
    assert "synthetic speech of its words (3 clips each)" in meta["training_data"]
    assert json.loads((out / "report.json").read_text())["n"] > 0



def test_each_part_has_its_own_feature_cache(my_words: Path, tmp_path: Path) -> None:
    """A retrain with one more hard negative computes the backbone outputs of that clip only."""
    cache = tmp_path / "cache"
    saved = tmp_path / "saved"
    saved.mkdir()
    shutil.copy(next((my_words / WORDS[0]).glob("*.wav")), saved / "false.wav")
    args = ["--model", "speech_embedding_mlp", "--freeze-backbone", "--cache-views", "2", "--epochs", "1",
            "--data", f"folder:{my_words}", "--synth-words", "auto", "--synth-per-word", "3",
            "--negatives", "none", "--cache-dir", str(cache), *FAST]
    assert train_cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    before = {p: p.stat().st_mtime_ns for p in (cache / "features").glob("*/view-*.npy")}
    assert train_cli.main([*args, "--hard-negatives", str(saved), "--out", str(tmp_path / "b")]) == 0
    after = {p: p.stat().st_mtime_ns for p in (cache / "features").glob("*/view-*.npy")}
    assert {p: after[p] for p in before} == before  # nothing recomputed
    new = {p.parent for p in set(after) - set(before)}
    assert len(new) == 1  # the hard negative's part, training views only
    assert json.loads((next(iter(new)) / "manifest.json").read_text())["clips"] == 1
