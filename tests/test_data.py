"""kws.data: split rules, label views, the memmap cache, bad-file handling, the CLI, the
archive download, and the real sets in ../shared/data (skipped when absent)."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import math
import pickle
import tarfile
import threading
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import kws.data.cache as cache_mod
import kws.data.source as source_mod
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, load_clip
from kws.data import LABEL_SETS, SPLITS, ClipEntry, DataError, open_source, parse_spec, which_set
from kws.data.__main__ import main as cli
from kws.data.index import canonical_split
from kws.data.download import DownloadError, download_file, download_speech_commands, extract_tar
from kws.data.noise import NOISE_SPLIT_BOUNDS, SILENCE_FRACTION
from kws.data.splits import proportional_split, speaker_disjoint_split, speaker_of, stratified_random_split
from kws.data.views import LabelView, stratified_subset
from kws.labels import GSC12_LABELS, GSC12_WORDS, GSC_V1_WORDS, GSC_V2_WORDS, SILENCE, UNKNOWN, to_12class
from kws.runinfo import run_metadata

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real data: ../shared/data/{name} not found")
    return path


def write_tone(path: Path, freq: float, seconds: float = 0.25, sr: int = SAMPLE_RATE, amp: float = 0.3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    sf.write(str(path), (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="PCM_16")
    return path


def write_noise(path: Path, seconds: float, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).standard_normal(int(SAMPLE_RATE * seconds)).astype(np.float32) * 0.1
    sf.write(str(path), x, SAMPLE_RATE, subtype="PCM_16")
    return path


def make_gsc(root: Path, words=("yes", "no", "cat"), n_speakers: int = 40, noise_seconds: float = 20.0,
             lists: bool = False) -> Path:
    """A tiny Speech Commands folder: one 0.25 s tone per speaker and word, plus noise."""
    for w_i, word in enumerate(words):
        for s in range(n_speakers):
            write_tone(root / word / f"{s * 7919:08x}_nohash_0.wav", 300 + 40 * w_i + s)
    write_noise(root / "_background_noise_" / "pink.wav", noise_seconds, 1)
    write_noise(root / "_background_noise_" / "white.wav", noise_seconds / 2, 2)
    (root / "_background_noise_" / "README.md").write_text("noise\n")
    if lists:
        val = [f"{words[0]}/00000000_nohash_0.wav", f"{words[1]}/00001eef_nohash_0.wav"]
        (root / "validation_list.txt").write_text("\n".join(val) + "\n")
        (root / "testing_list.txt").write_text(f"{words[0]}/00003dde_nohash_0.wav\nghost/deadbeef_nohash_0.wav\n")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def gsc_dir(tmp_path_factory) -> Path:
    return make_gsc(tmp_path_factory.mktemp("gsc"))


# --------------------------------------------------------------------------- rules

def test_label_sets():
    assert LABEL_SETS["35"] == GSC_V2_WORDS and len(LABEL_SETS["35"]) == 35
    assert LABEL_SETS["35s"] == GSC_V2_WORDS + (SILENCE,)
    assert LABEL_SETS["12"] == GSC12_LABELS and len(GSC12_LABELS) == 12
    view = LabelView(LABEL_SETS["12"])
    for word in GSC_V2_WORDS + (SILENCE,):
        assert view.target(word) == to_12class(word)
    assert LabelView(LABEL_SETS["35"]).target(SILENCE) is None  # "35" drops silence
    with pytest.raises(DataError, match="duplicate"):
        LabelView(("yes", "yes"))


def test_which_set_groups_speakers_and_splits_10_10_80():
    assert which_set("0a7c2a8d_nohash_0.wav") == which_set("yes/0a7c2a8d_nohash_4.wav")
    rng = np.random.default_rng(0)
    names = [f"{rng.integers(2**32):08x}_nohash_0.wav" for _ in range(4000)]
    share = Counter(which_set(n) for n in names)
    assert 0.08 < share["validation"] / 4000 < 0.12 and 0.08 < share["test"] / 4000 < 0.12
    assert [which_set(n) for n in names[:50]] == [which_set(n) for n in names[:50]]


def test_speaker_id_parsing():
    assert speaker_of("george_12") == "george"
    assert speaker_of("0a7c2a8d_nohash_3") == "0a7c2a8d"
    assert speaker_of("my_mic_take_3") == "my_mic_take"
    assert speaker_of("recording") is None


def test_speaker_disjoint_split_fills_every_split():
    counts = {s: 500 for s in ("george", "jackson", "lucas", "nicolas", "yweweler")}
    a = speaker_disjoint_split(counts, seed=0)
    assert Counter(a.values()) == {"train": 3, "validation": 1, "test": 1}
    assert a == speaker_disjoint_split(counts, seed=0)
    assert any(speaker_disjoint_split(counts, seed=s) != a for s in range(1, 6))
    with pytest.raises(ValueError):
        speaker_disjoint_split({"a": 1, "b": 1}, seed=0)


def test_random_split_is_stratified_and_seeded():
    words = ["a"] * 100 + ["b"] * 20 + ["c"] * 3
    split = stratified_random_split(words, seed=0)
    per = Counter(zip(words, split))
    assert per[("a", "validation")] == 10 and per[("a", "test")] == 10 and per[("b", "test")] == 2
    assert per[("c", "validation")] == 1 and per[("c", "test")] == 1  # small words still evaluated
    assert split == stratified_random_split(words, seed=0) != stratified_random_split(words, seed=1)


def test_proportional_split():
    got = proportional_split(189, {"train": 0, "validation": 0, "test": 1.0}, seed=0)
    assert set(got) == {"test"}
    got = proportional_split(101, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
    assert Counter(got) == {"train": 81, "validation": 10, "test": 10}
    assert got == proportional_split(101, None, seed=0) != proportional_split(101, None, seed=1)


def test_stratified_subset():
    rng = np.random.default_rng(0)
    sizes = {f"w{i}": int(s) for i, s in enumerate(rng.integers(50, 2000, size=35))} | {"rare": 2}
    entries = [ClipEntry(f"/x/{w}/{k}.wav", w) for w, n in sizes.items() for k in range(n)]
    sub = stratified_subset(entries, 5000, seed=0)
    assert len(sub) == 5000 and len(set(sub)) == 5000
    got = Counter(e.word for e in sub)
    for w, n in sizes.items():
        assert abs(got[w] - n * 5000 / len(entries)) <= 1.01 or got[w] == 1
    assert got["rare"] == 1
    assert sub == stratified_subset(entries, 5000, seed=0)
    assert set(sub) != set(stratified_subset(entries, 5000, seed=1))
    assert stratified_subset(entries[:10], 5000, seed=0) == tuple(entries[:10])


# --------------------------------------------------------------------------- Speech Commands layout

def test_gsc_without_lists_uses_which_set_and_cuts_silence(gsc_dir, cache):
    src = open_source(f"gsc:{gsc_dir}", labels="35s", cache_dir=cache)
    assert "which_set" in src.index.split_rule
    per_split = {s: [e for e in src.entries(s) if e.word != SILENCE] for s in SPLITS}
    assert all(per_split.values()), "fixture speakers must fill every which_set bucket"
    for s, entries in per_split.items():
        assert all(which_set(e.path) == s for e in entries)
    seen = {s: {e.speaker for e in es} for s, es in per_split.items()}
    assert not (seen["train"] & seen["validation"]) and not (seen["train"] & seen["test"])

    lengths = {p.name: sf.info(str(p)).frames for p in (gsc_dir / "_background_noise_").glob("*.wav")}
    for s in SPLITS:
        silence = [e for e in src.entries(s) if e.word == SILENCE]
        assert len(silence) == math.ceil(SILENCE_FRACTION * len(per_split[s]))  # 1/11 of the split
        lo, hi = NOISE_SPLIT_BOUNDS[s]
        for e in silence:  # cut from this split's own stretch of each noise file
            n = lengths[Path(e.path).name]
            assert int(lo * n) <= e.start and e.start + CLIP_SAMPLES <= int(hi * n)
    test = src.split("test")
    sil_rows = [i for i, w in enumerate(test.words) if w == SILENCE]
    assert sil_rows and all(np.abs(test.waves[i]).max() > 0 for i in sil_rows)
    assert "_background_noise_" not in src.labels
    assert len(src.noise) == sum(int(0.8 * n) for n in lengths.values())  # training part only
    assert src.noise.dtype == np.float32

    no_sil = open_source(f"gsc:{gsc_dir}", labels="35", cache_dir=cache)
    assert SILENCE not in no_sil.labels
    assert len(no_sil.split("train")) == len(per_split["train"])


def test_gsc_split_lists(tmp_path, cache):
    root = make_gsc(tmp_path / "listed", words=("yes", "no"), n_speakers=5, noise_seconds=0, lists=True)
    for p in (root / "_background_noise_").glob("*.wav"):
        p.unlink()
    src = open_source(f"gsc:{root}", labels="35", cache_dir=cache)
    val = {Path(f).relative_to(root).as_posix() for f in src.split("validation").files}
    test = {Path(f).relative_to(root).as_posix() for f in src.split("test").files}
    assert val == {"yes/00000000_nohash_0.wav", "no/00001eef_nohash_0.wav"}
    assert test == {"yes/00003dde_nohash_0.wav"}
    assert len(src.split("train")) == 10 - 3
    assert any("not on disk" in n for n in src.summary()["notes"])  # ghost/deadbeef


def test_clipset_contents_and_views(gsc_dir, cache):
    src = open_source(f"gsc:{gsc_dir}", labels="12", cache_dir=cache)
    cs = src.split("train")
    assert isinstance(cs.waves, np.memmap) and cs.waves.dtype == np.int16 and cs.waves.shape[1] == CLIP_SAMPLES
    assert cs.y.dtype == np.int64 and cs.labels == GSC12_LABELS
    assert len(cs) == len(cs.files) == len(cs.speakers) == len(cs.y)
    i = cs.words.index("cat")
    wave, label = cs[i]
    assert wave.dtype == np.float32 and wave.shape == (CLIP_SAMPLES,) and -1 <= wave.min() and wave.max() < 1
    assert cs.labels[label] == UNKNOWN  # "cat" is not one of the 10 words
    np.testing.assert_array_equal(wave, load_clip(cs.files[i]))  # PCM16 round-trips exactly
    j = cs.words.index("yes")
    xb, yb = cs.batch([j, i])
    np.testing.assert_array_equal(xb[1], wave)
    assert yb.tolist() == [cs.labels.index("yes"), cs.labels.index(UNKNOWN)]
    counts = cs.counts()
    assert list(counts) == list(GSC12_LABELS) and counts["left"] == 0 and sum(counts.values()) == len(cs)
    # "35s" and "12" view the same clips: one cache, labels differ.
    same = open_source(f"gsc:{gsc_dir}", labels="35s", cache_dir=cache).split("train")
    assert same.path == cs.path and same.labels[same.y[i]] == "cat"


def test_clipset_pickles_as_a_path_not_a_copy(gsc_dir, cache):
    cs = open_source(f"gsc:{gsc_dir}", cache_dir=cache).split("train")
    blob = pickle.dumps(cs)
    assert len(blob) < cs.waves.nbytes / 4  # the clips stay on disk
    back = pickle.loads(blob)
    assert isinstance(back.waves, np.memmap) and np.array_equal(back.waves, cs.waves)
    assert back.labels == cs.labels and np.array_equal(back.y, cs.y) and back[3][1] == cs[3][1]


def test_torch_dataloader_accepts_a_clipset(gsc_dir, cache):
    torch = pytest.importorskip("torch")
    cs = open_source(f"gsc:{gsc_dir}", cache_dir=cache).split("validation")
    x, y = next(iter(torch.utils.data.DataLoader(cs, batch_size=4, shuffle=True)))
    assert x.shape == (4, CLIP_SAMPLES) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_fast_mode_is_a_stratified_training_subset(gsc_dir, cache, monkeypatch):
    monkeypatch.setattr(source_mod, "FAST_TRAIN_CLIPS", 30)
    full = open_source(f"gsc:{gsc_dir}", cache_dir=cache)
    fast = open_source(f"gsc:{gsc_dir}", fast=True, cache_dir=cache)
    assert len(fast.entries("train")) == 30 < len(full.entries("train"))
    assert set(fast.entries("train")) <= set(full.entries("train"))
    assert {e.word for e in fast.entries("train")} == {e.word for e in full.entries("train")}
    assert fast.entries("test") == full.entries("test")
    assert len(fast.split("train")) == 30 and fast.split("train").path != full.split("train").path


# --------------------------------------------------------------------------- cache behaviour

def test_cache_is_reused_not_redecoded(gsc_dir, tmp_path, monkeypatch):
    first = open_source(f"gsc:{gsc_dir}", cache_dir=tmp_path).split("validation")
    snapshot = np.array(first.waves)

    def no_decoding(entry):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(cache_mod, "decode_entry", no_decoding)
    again = open_source(f"gsc:{gsc_dir}", cache_dir=tmp_path).split("validation")
    assert again.path == first.path and np.array_equal(np.asarray(again.waves), snapshot)


def test_interrupted_build_leaves_no_half_cache(gsc_dir, tmp_path, monkeypatch):
    real = cache_mod.decode_entry
    calls = {"n": 0}

    def dies_midway(entry):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # a Ctrl-C or a kill in the middle of decoding
        return real(entry)

    monkeypatch.setattr(cache_mod, "decode_entry", dies_midway)
    src = open_source(f"gsc:{gsc_dir}", cache_dir=tmp_path, workers=1)
    with pytest.raises(KeyboardInterrupt):
        src.split("train")
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert leftovers == []
    monkeypatch.setattr(cache_mod, "decode_entry", real)
    cs = open_source(f"gsc:{gsc_dir}", cache_dir=tmp_path).split("train")
    assert len(cs) == len(src.entries("train")) and np.abs(np.asarray(cs.waves)).max() > 0


def test_edited_file_invalidates_the_cache(tmp_path):
    root = make_gsc(tmp_path / "g", words=("yes",), n_speakers=3, noise_seconds=0)
    for p in (root / "_background_noise_").glob("*.wav"):
        p.unlink()
    src = open_source(f"gsc:{root}", labels="35", cache_dir=tmp_path / "c")
    before = {s: src.split(s) for s in SPLITS}
    split, cs = next((s, c) for s, c in before.items() if len(c))
    write_tone(Path(cs.files[0]), 1234.0, seconds=0.5)
    after = open_source(f"gsc:{root}", labels="35", cache_dir=tmp_path / "c").split(split)
    assert after.path != cs.path
    assert np.count_nonzero(after.waves[0]) > np.count_nonzero(cs.waves[0])  # 0.5 s instead of 0.25 s


# --------------------------------------------------------------------------- bad files

def test_bad_files_are_reported_and_skipped(tmp_path):
    root = tmp_path / "my_words"
    for word in ("lights_on", "lights_off"):
        for s in ("ann", "bob", "cid", "dee"):
            write_tone(root / word / f"{s}_1.wav", 500, seconds=1.5)
    good = write_tone(tmp_path / "good.wav", 440, seconds=1.0).read_bytes()
    (root / "lights_on" / "ann_2.wav").write_bytes(good[: len(good) // 2])  # truncated
    (root / "lights_on" / "bob_2.wav").write_bytes(b"")  # zero bytes
    (root / "lights_on" / "cid_2.wav").write_text("not audio\n" * 50)  # text named .wav
    x = np.full(8000, 0.1, np.float32)
    x[7] = np.nan
    sf.write(str(root / "lights_off" / "ann_2.wav"), x, SAMPLE_RATE, subtype="FLOAT")  # NaN
    sf.write(str(root / "lights_off" / "bob_2.wav"), np.zeros((8000, 6), np.float32), SAMPLE_RATE)  # 6 channels
    (root / "lights_off" / "notes.txt").write_text("ignored: not an audio suffix")

    src = open_source(f"folder:{root}", cache_dir=tmp_path / "c")
    assert src.labels == ("lights_off", "lights_on")  # custom words keep their folder names
    summary = src.summary()
    bad = {Path(b["path"]).parent.name + "/" + Path(b["path"]).name: b["kind"] for b in summary["bad_files"]}
    assert bad == {"lights_on/ann_2.wav": "truncated", "lights_on/bob_2.wav": "empty",
                   "lights_on/cid_2.wav": "not_audio", "lights_off/ann_2.wav": "nan",
                   "lights_off/bob_2.wav": "channels"}
    assert all(b["problem"] for b in summary["bad_files"])
    assert sum(summary["clips"].values()) == 8  # the good clips, none lost
    assert not any("bob_2" in f for s in SPLITS for f in src.split(s).files)
    # Reopened from the cache, the bad files are still reported.
    assert len(open_source(f"folder:{root}", cache_dir=tmp_path / "c").summary()["bad_files"]) == 5

    out = io.StringIO()
    with redirect_stdout(out):
        rc = cli(["summary", "--source", f"folder:{root}", "--cache-dir", str(tmp_path / "c")])
    assert rc == 0 and "cid_2.wav" in out.getvalue() and "not an audio file" in out.getvalue()


def test_long_recordings_keep_their_loudest_second(tmp_path):
    root = tmp_path / "words"
    (root / "go").mkdir(parents=True)
    x = np.zeros(3 * 22_050, np.float32)
    x[50_000:55_000] = 0.5  # the "word", late in a 3 s take at 22.05 kHz
    for s in ("ann", "bob", "cid"):
        sf.write(str(root / "go" / f"{s}_0.wav"), x, 22_050, subtype="FLOAT")
    src = open_source(f"folder:{root}", labels=None, cache_dir=tmp_path / "c")
    for s in SPLITS:
        for wave, _ in src.split(s):
            assert np.abs(wave).max() > 0.4  # a centre crop (0.5-1.5 s) would have missed it


# --------------------------------------------------------------------------- specs and concatenation

def test_spec_errors_name_the_problem(gsc_dir, tmp_path, cache):
    with pytest.raises(DataError, match="unknown data source"):
        open_source("imagenet")
    with pytest.raises(DataError, match="data folder not found"):
        open_source(f"gsc:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no word folders"):
        open_source(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="unknown label set"):
        open_source(f"gsc:{gsc_dir}", labels="13", cache_dir=cache)
    with pytest.raises(DataError, match="unknown split"):
        open_source(f"gsc:{gsc_dir}", cache_dir=cache).split("dev2")
    assert canonical_split("val") == "validation"


def test_spec_parsing_keeps_plus_inside_paths():
    parts = parse_spec("gsc:/data/a+b/sc+folder:/x/my words+gsc12-dev")
    assert [(p.kind, p.arg) for p in parts][:2] == [("gsc", "/data/a+b/sc"), ("folder", "/x/my words")]
    assert parts[2].kind == "gsc" and parts[2].arg.endswith("gsc12-dev")
    assert parse_spec("synth")[0].arg == "default" and parse_spec("synth:tiny")[0].arg == "tiny"


def test_default_labels_are_35s_for_speech_commands_and_the_folder_names_otherwise(gsc_dir, tmp_path, cache):
    digits = tmp_path / "digits"
    for word in ("one", "two", "three"):
        for s in ("ann", "bob", "cid"):
            write_tone(digits / word / f"{s}_0.wav", 500)
    commands = tmp_path / "commands"
    for word in GSC12_WORDS + ("cat",):
        for s in ("ann", "bob", "cid"):
            write_tone(commands / word / f"{s}_0.wav", 700)
    own = open_source(f"folder:{digits}", cache_dir=cache)
    assert own.labels == ("one", "three", "two")  # digits are Speech Commands words, but not the set
    assert any("own 3 words" in n for n in own.summary()["notes"])
    assert open_source(f"folder:{digits}", labels="35s", cache_dir=cache).labels == LABEL_SETS["35s"]  # asked for
    assert open_source(f"folder:{commands}", cache_dir=cache).labels == LABEL_SETS["35s"]  # all ten command words
    assert open_source(f"gsc:{gsc_dir}", cache_dir=cache).labels == LABEL_SETS["35s"]
    assert open_source(f"gsc:{gsc_dir}+folder:{digits}", cache_dir=cache).labels == LABEL_SETS["35s"]
    # the trainer and the data CLI share the default
    from training.config import TrainConfig
    from kws.data.views import DEFAULT_LABELS

    assert TrainConfig().labels == DEFAULT_LABELS
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["summary", "--source", f"folder:{digits}", "--cache-dir", str(cache)]) == 0
    assert "custom (3)" in out.getvalue()


def test_concatenation_uses_a_common_label_set(gsc_dir, tmp_path, cache):
    custom = tmp_path / "custom"
    for s in ("ann", "bob", "cid"):
        write_tone(custom / "lights_on" / f"{s}_0.wav", 900)
    a = open_source(f"gsc:{gsc_dir}", cache_dir=cache)
    both = open_source(f"gsc:{gsc_dir}+folder:{custom}", cache_dir=cache)
    assert both.labels == LABEL_SETS["35s"] + ("lights_on",)
    for s in SPLITS:
        assert len(both.entries(s)) == len(a.entries(s)) + sum(e.word == "lights_on" for e in both.entries(s))
    assert sum(len(both.entries(s)) for s in SPLITS) == sum(len(a.entries(s)) for s in SPLITS) + 3
    train = both.split("train")
    assert set(train.labels[k] for k in train.y) >= {"yes", "no", "cat", SILENCE}


# --------------------------------------------------------------------------- real data

def test_gsc_v1_sample_official_lists(cache):
    root = shared("gsc-v1-sample").resolve()  # the loader resolves links (a symlinked data folder)
    for labels in ("35", "35s"):
        src = open_source(f"gsc:{root}", labels=labels, cache_dir=cache)
        s = src.summary()
        assert s["clips"] == {"train": 205, "validation": 44, "test": 22}
        assert s["bad_files"] == []
        assert src.labels == LABEL_SETS[labels]  # the full v0.02 set; missing words have 0 clips
        seen = {w for split in SPLITS for w, n in s["per_label"][split].items() if n}
        assert seen == set(GSC_V1_WORDS)
        assert all(s["per_label"]["train"][w] == 0 for w in set(GSC_V2_WORDS) - set(GSC_V1_WORDS))
    listed = set((root / "validation_list.txt").read_text().split())
    assert {Path(f).relative_to(root).as_posix() for f in src.split("validation").files} == listed
    # The official lists were made by the which_set rule: our hash must reproduce them exactly.
    for split in SPLITS:
        assert {which_set(f) for f in src.split(split).files} == {split}
    assert src.noise.size == 0  # the sample has no _background_noise_ (so no silence either)


def test_gsc12_dev_is_a_test_set_under_which_set(cache):
    root = shared("gsc12-dev")
    src = open_source("gsc12-dev", labels="35s", cache_dir=cache)
    assert Path(src.root) == root.resolve()
    s = src.summary()
    # Its speakers are v0.02 test-partition speakers: the official rule makes all of it test,
    # silence included (it follows the speech), i.e. the canonical 12-class evaluation.
    assert s["clips"] == {"train": 0, "validation": 0, "test": 1815}
    assert s["bad_files"] == [] and s["speakers"]["test"] == 104
    assert s["per_label"]["test"][SILENCE] == 189
    assert any("folder:" in n for n in s["notes"])  # says how to get a train/validation split
    cs35 = src.split("test")
    twelve = open_source("gsc12-dev", labels="12", cache_dir=cache).split("test")
    assert twelve.path == cs35.path and twelve.labels == GSC12_LABELS
    assert [twelve.labels[k] for k in twelve.y] == [to_12class(cs35.labels[k]) for k in cs35.y]
    c = twelve.counts()
    assert c[SILENCE] == 189 and all(130 <= c[w] <= 160 for w in GSC12_WORDS)
    assert c[UNKNOWN] == sum(n for w, n in s["per_label"]["test"].items() if w not in GSC12_WORDS + (SILENCE,))
    assert len(open_source("gsc12-dev", labels="35", cache_dir=cache).split("test")) == 1815 - 189


def test_gsc12_dev_folder_view_is_speaker_disjoint(cache):
    root = shared("gsc12-dev")
    src = open_source(f"folder:{root}", labels="12", cache_dir=cache)
    s = src.summary()
    assert s["clips"] == {"train": 1441, "validation": 184, "test": 190}  # seed 0 pin
    assert s["bad_files"] == [] and src.labels == GSC12_LABELS
    speakers = {sp: set(src.split(sp).speakers) - {""} for sp in SPLITS}
    assert sum(map(len, speakers.values())) == 104 and all(speakers.values())
    assert not (speakers["train"] & speakers["validation"] or speakers["train"] & speakers["test"]
                or speakers["validation"] & speakers["test"])
    assert all(s["per_label"][sp][SILENCE] for sp in SPLITS)
    assert sum(s["per_label"][sp][SILENCE] for sp in SPLITS) == 189
    assert len(src.noise) == s["per_label"]["train"][SILENCE] * CLIP_SAMPLES  # training silence as noise


def test_fsdd_dev_folder_source(cache):
    root = shared("fsdd-dev")
    src = open_source(f"folder:{root}", labels=None, cache_dir=cache)
    digits = ("eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero")
    assert src.labels == digits  # sorted folder names
    s = src.summary()
    assert sum(s["clips"].values()) == 2500 and s["bad_files"] == []
    by_split = {sp: set(src.split(sp).speakers) for sp in SPLITS}
    assert sorted(len(v) for v in by_split.values()) == [1, 1, 3]
    assert set().union(*by_split.values()) == {"george", "jackson", "lucas", "nicolas", "yweweler"}
    # 8 kHz -> 16 kHz: a clip of n samples at 8 kHz fills 2n samples of the centred 1 s clip.
    cs = src.split("test")
    for i in (0, len(cs) // 2):
        frames = sf.info(cs.files[i]).frames
        nz = np.flatnonzero(cs.waves[i])
        span = nz[-1] - nz[0] + 1
        assert abs(span - min(2 * frames, CLIP_SAMPLES)) <= 8
    # Viewed through the Speech Commands labels, the digits keep their names.
    as35 = open_source("fsdd-dev", labels="35s", cache_dir=cache)
    assert as35.labels == LABEL_SETS["35s"] and sum(len(as35.entries(sp)) for sp in SPLITS) == 2500


# --------------------------------------------------------------------------- synthetic source

def test_synth_tiny_opens_through_the_generator(cache):
    pytest.importorskip("kws.data.synth", reason="kws.data.synth not available yet")
    src = open_source("synth:tiny", cache_dir=cache)
    s = src.summary()
    assert src.labels == LABEL_SETS["35s"] and all(s["clips"][sp] for sp in SPLITS)
    assert s["bad_files"] == [] and len(src.noise) > 0
    spk = {sp: set(src.split(sp).speakers) - {""} for sp in SPLITS}
    assert not (spk["train"] & spk["test"]) and not (spk["train"] & spk["validation"])


# --------------------------------------------------------------------------- CLI and run metadata

def test_cli_summary_build_and_bench(gsc_dir, tmp_path):
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["build", "--source", f"gsc:{gsc_dir}", "--cache-dir", str(tmp_path)]) == 0
        assert cli(["summary", "--source", f"gsc:{gsc_dir}", "--source", "gsc:/nonexistent",
                    "--cache-dir", str(tmp_path), "--json", str(tmp_path / "s.json")]) == 1
    text = out.getvalue()
    src = open_source(f"gsc:{gsc_dir}", cache_dir=tmp_path)
    row = next(ln for ln in text.splitlines() if ln.startswith(f"gsc:{gsc_dir}") and "35s (36)" in ln)
    for sp in SPLITS:
        assert f" {len(src.split(sp))} " in f" {row} "
    assert "data folder not found" in text
    assert json.loads((tmp_path / "s.json").read_text())[0]["clips"]["train"] == len(src.split("train"))

    result = tmp_path / "data_loading.json"
    with redirect_stdout(io.StringIO()):
        assert cli(["bench-load", "--source", f"gsc:{gsc_dir}", "--out", str(result), "--batch-size", "16"]) == 0
    doc = json.loads(result.read_text())
    assert "bench-load" in doc["metadata"]["command"] and doc["metadata"]["machine"]["cores"]["logical"] >= 1
    r = doc["results"][0]
    assert r["clips"] == len(src.split("train")) and r["cold_clips_per_s"] > 0 and r["warm_batch_clips_per_s"] > 0


def test_run_metadata_describes_code_and_machine():
    import socket

    meta = run_metadata(["python", "-m", "x", "--flag"], seed=3)
    assert meta["command"] == "python -m x --flag" and meta["seed"] == 3
    assert set(meta) >= {"git", "python", "packages", "machine", "time_utc"}
    assert meta["packages"]["numpy"] == np.__version__
    commit = meta["git"]["commit"]
    assert commit is None or len(commit) == 40
    assert socket.gethostname() not in json.dumps(meta)


# --------------------------------------------------------------------------- download

class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    honour_range = True
    log: list = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        rng = self.headers.get("Range") if self.honour_range else None
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(self.payload):
            self.send_response(416)
            self.end_headers()
            return
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.log.append((self.headers.get("Range"), len(body)))

    def log_message(self, *args):
        pass


def _tarball(src_dir: Path, members: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if src_dir is not None:
            tar.add(src_dir, arcname=".")
        for name, data in (members or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture()
def server():
    handler = type("H", (_RangeHandler,), {"log": [], "payload": b"", "honour_range": True})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/archive.tar.gz"
    httpd.shutdown()
    httpd.server_close()


def test_download_verify_extract_then_open(server, tmp_path):
    handler, url = server
    root = make_gsc(tmp_path / "src", words=("yes", "no"), n_speakers=4, noise_seconds=3, lists=True)
    handler.payload = _tarball(root)
    digest = hashlib.sha256(handler.payload).hexdigest()
    dest = download_speech_commands("v0.02", dest=tmp_path / "sc", sha256=digest, url=url, progress=False)
    assert (dest / "validation_list.txt").exists() and (dest / "yes").is_dir()
    assert (tmp_path / "speech_commands_v0.02.tar.gz").read_bytes() == handler.payload
    assert not list(tmp_path.glob(".sc.extract-*")) and not list(tmp_path.glob("*.part"))
    src = open_source(f"gsc:{dest}", labels="35", cache_dir=tmp_path / "c")
    assert len(src.entries("validation")) == 2 and len(src.entries("test")) == 1


@pytest.mark.parametrize("form", [["--version", "v0.02"], ["v0.02"]])
def test_download_cli_takes_the_version_as_flag_or_argument(server, tmp_path, form, capsys):
    # The README's `python -m kws.data download --version v0.02`, and the positional form.
    handler, url = server
    handler.payload = _tarball(make_gsc(tmp_path / "src", words=("yes",), n_speakers=2, noise_seconds=1))
    digest = hashlib.sha256(handler.payload).hexdigest()
    rc = cli(["download", *form, "--dest", str(tmp_path / "sc"), "--sha256", digest, "--url", url])
    assert rc == 0 and (tmp_path / "sc" / "yes").is_dir()
    assert "Speech Commands v0.02 ready" in capsys.readouterr().out


def test_download_cli_version_errors(capsys):
    for argv, message in ((["download"], "which version?"),
                          (["download", "v0.01", "--version", "v0.02"], "two versions given")):
        with pytest.raises(SystemExit) as e:
            cli(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_download_resumes_a_partial_file(server, tmp_path):
    handler, url = server
    handler.payload = np.random.default_rng(0).bytes(300_000)
    dest = tmp_path / "a.tar.gz"
    (tmp_path / "a.tar.gz.part").write_bytes(handler.payload[:100_000])
    download_file(url, dest, hashlib.sha256(handler.payload).hexdigest(), progress=False)
    assert dest.read_bytes() == handler.payload
    assert handler.log == [("bytes=100000-", 200_000)]  # only the missing part was sent


def test_download_restarts_when_the_server_ignores_ranges(server, tmp_path):
    handler, url = server
    handler.payload, handler.honour_range = b"x" * 5000, False
    (tmp_path / "b.bin.part").write_bytes(b"garbage")
    download_file(url, tmp_path / "b.bin", hashlib.sha256(handler.payload).hexdigest(), progress=False)
    assert (tmp_path / "b.bin").read_bytes() == handler.payload


def test_download_checksum_mismatch(server, tmp_path):
    handler, url = server
    handler.payload = b"corrupted mirror" * 100
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_file(url, tmp_path / "c.tar.gz", "0" * 64, progress=False)
    assert not (tmp_path / "c.tar.gz").exists() and not (tmp_path / "c.tar.gz.part").exists()


def test_download_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="cannot connect"):
        download_file("http://127.0.0.1:9/none.tar.gz", tmp_path / "d", None, timeout=2, progress=False)


def test_unsafe_tar_is_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tarball(None, {"ok.txt": b"fine", "../escaped.txt": b"pwned"}))
    with pytest.raises(DownloadError, match="unsafe"):
        extract_tar(archive, tmp_path / "out" / "data", progress=False)
    assert not (tmp_path / "out" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "data").exists() and list((tmp_path / "out").iterdir()) == []


def test_truncated_archive_leaves_no_folder(tmp_path):
    archive = tmp_path / "cut.tar.gz"
    whole = _tarball(None, {f"f{i}.bin": np.random.default_rng(i).bytes(50_000) for i in range(4)})
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DownloadError, match="cannot extract"):
        extract_tar(archive, tmp_path / "out" / "data", progress=False)
    assert list((tmp_path / "out").iterdir()) == []
