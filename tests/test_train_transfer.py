"""Training that builds on other models: init from weights, frozen backbones with cached
features, distillation from a teacher, weighted data parts, cross-validation folds."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from cli import train as train_cli
import zoo
from kws.audio import CLIP_SAMPLES
from kws.data import open_source
from kws.data.folds import Fold, apply_fold, speaker_folds
from kws.data.index import DataError
from training.config import ConfigError, TrainConfig
from training.loader import ViewBatches, WeightedShardSampler, make_loader
from training.report import read_metrics
from training.teacher import distill_kl, label_map

DATA = "synth:tiny"
FAST = ["--batch-size", "16", "--no-progress", "--deterministic", "--seed", "1"]
FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd-dev"
GSC12 = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsc12-dev"


def _train(tmp: Path, name: str, *args: str, capsys=None) -> Path:
    out = tmp / name
    assert train_cli.main(["--data", DATA, *FAST, "--out", str(out), *args]) == 0
    return out


# --------------------------------------------------------------------------- init from weights

def test_init_from_with_another_label_set_starts_a_fresh_head(tmp_path, capsys):
    first = _train(tmp_path, "first", "--model", "dscnn", "--epochs", "1")
    capsys.readouterr()
    second = _train(tmp_path, "second", "--model", "dscnn", "--epochs", "1", "--labels", "12",
                    "--init-from", str(first), "--lr", "1e-12", "--no-augment")
    log = capsys.readouterr().out
    assert "label set differs (36 labels there, 12 here), so the head starts fresh" in log
    a, _ = zoo.load_model(first)
    b, _ = zoo.load_model(second)
    assert b.labels != a.labels
    # lr ~ 0: the backbone is exactly what the first run trained; the head is new
    key = "backbone.features.0.weight"
    torch.testing.assert_close(b.state_dict()[key], a.state_dict()[key], atol=1e-6, rtol=0)
    assert b.head[-1].weight.shape[0] == 12

    capsys.readouterr()
    _train(tmp_path, "same", "--model", "dscnn", "--epochs", "1", "--init-from", str(first))
    assert "every weight loaded (same labels)" in capsys.readouterr().out


def test_init_from_needs_the_same_model(tmp_path, capsys):
    first = _train(tmp_path, "first", "--model", "dscnn", "--epochs", "1")
    rc = train_cli.main(["--data", DATA, *FAST, "--model", "mobilenetv3_small_100", "--epochs", "1",
                         "--init-from", str(first), "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "holds a dscnn checkpoint, another model than mobilenetv3_small_100" in capsys.readouterr().err


# --------------------------------------------------------------------------- frozen backbone

def test_frozen_backbone_trains_the_head_on_cached_views(tmp_path):
    cache = tmp_path / "cache"
    args = ["--model", "speech_embedding_mlp", "--freeze-backbone", "--cache-views", "3", "--epochs", "4",
            "--cache-dir", str(cache)]
    out = _train(tmp_path, "frozen", *args)
    views = sorted(p.name for p in (cache / "features").glob("*/view-*.npy"))
    assert views.count("view-0.npy") == 3 and views.count("view-2.npy") == 1  # train x3, val, test
    model, _ = zoo.load_model(out)
    fresh = zoo.create_model("speech_embedding_mlp", labels=model.labels)
    for k, v in fresh.backbone.state_dict().items():  # the embedding never moved
        assert torch.equal(model.backbone.state_dict()[k], v), k
    rows = read_metrics(out / "metrics.csv")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]

    # a second run with the same data and augmentation reads the cache: nothing is recomputed
    stamp = {p: p.stat().st_mtime_ns for p in (cache / "features").glob("*/view-*.npy")}
    again = _train(tmp_path, "again", *args)
    assert {p: p.stat().st_mtime_ns for p in (cache / "features").glob("*/view-*.npy")} == stamp
    assert json.loads((again / "report.json").read_text())["accuracy"] == \
        json.loads((out / "report.json").read_text())["accuracy"]


def test_view_batches_read_one_view_per_epoch():
    views = [np.full((10, 2), v, np.float16) for v in range(3)]
    loader = make_loader(ViewBatches(views, np.arange(10)), 5, train=True, seed=0)
    seen = []
    for epoch in range(4):
        loader.batch_sampler.sampler.set_epoch(epoch)
        x = torch.cat([b[0] for b in loader])
        assert len(x) == 10 and x.unique().numel() == 1
        seen.append(int(x[0, 0]))
    assert seen == [0, 1, 2, 0]


def test_teacher_and_frozen_backbone_do_not_combine():
    with pytest.raises(ConfigError, match="teacher and freeze_backbone do not combine"):
        TrainConfig(teacher="dscnn", freeze_backbone=True)


# --------------------------------------------------------------------------- distillation

def test_label_map_sends_missing_words_to_unknown():
    m = label_map(["yes", "no", "cat", "_silence_"], ["yes", "no", "_silence_", "_unknown_"])
    assert m.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    with pytest.raises(ConfigError, match=r"no output for the student's labels \['up'\]"):
        label_map(["yes", "no"], ["yes", "up"])


def test_distill_kl_is_zero_at_the_teacher_and_positive_elsewhere():
    logits = torch.randn(4, 5)
    soft = torch.softmax(logits / 2.0, -1)
    assert abs(float(distill_kl(logits, soft, 2.0))) < 1e-6
    assert float(distill_kl(torch.zeros(4, 5), soft, 2.0)) > 0.01


def test_distillation_lowers_the_kl_to_the_teacher(tmp_path):
    """A 1-epoch tiny student with a tiny teacher: the KL to the teacher on its training batch falls."""
    teacher = _train(tmp_path, "teacher", "--model", "dscnn", "--epochs", "3", "--lr", "3e-3")
    t_model, _ = zoo.load_model(teacher)
    src = open_source(DATA, labels="35s")
    cs = src.split("train")
    x = torch.from_numpy(cs.batch(np.arange(32))[0])
    with torch.no_grad():
        soft = torch.softmax(t_model(x) / 2.0, -1)

    def kl_of(run: Path | None) -> float:
        torch.manual_seed(1)
        student = zoo.load_model(run)[0] if run else zoo.create_model("dscnn", labels=src.labels)
        student.eval()
        with torch.no_grad():
            return float(distill_kl(student(x), soft, 2.0))

    student = _train(tmp_path, "student", "--model", "dscnn", "--epochs", "1", "--teacher", str(teacher),
                     "--distill-weight", "1.0", "--distill-temperature", "2.0", "--lr", "3e-3", "--no-augment")
    assert kl_of(student) < kl_of(None)
    rows = read_metrics(student / "metrics.csv")
    assert np.isfinite(rows[0]["train_kl"]) and rows[0]["train_kl"] > 0
    cfg = (student / "config.yaml").read_text()
    assert "distill_weight: 1.0" in cfg and "distill_temperature: 2.0" in cfg and str(teacher) in cfg


def test_distilled_run_resumes_exactly(tmp_path):
    teacher = _train(tmp_path, "teacher", "--model", "dscnn", "--epochs", "1")
    args = ["--model", "dscnn", "--teacher", str(teacher), "--epochs", "2"]
    full = _train(tmp_path, "full", *args)
    part = _train(tmp_path, "part", *args, "--stop-after-epochs", "1")
    assert train_cli.main(["--resume", str(part), "--no-progress"]) == 0
    drop = {"epoch_s", "samples_per_s"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in rows]  # noqa: E731
    assert strip(read_metrics(full / "metrics.csv")) == strip(read_metrics(part / "metrics.csv"))


# --------------------------------------------------------------------------- weighted parts

def test_weighted_sampler_draws_in_proportion_and_replays():
    w = np.array([1.0] * 50 + [3.0] * 50)
    s = WeightedShardSampler(w, seed=4)
    s.set_epoch(0)
    counts = Counter()
    for e in range(40):
        s.set_epoch(e)
        counts.update(i >= 50 for i in s)
    assert 2.6 < counts[True] / counts[False] < 3.4
    s.set_epoch(7)
    a = list(s)
    s.set_epoch(7)
    assert a == list(s)  # a function of (seed, epoch): resumes replay it
    shards = [list(WeightedShardSampler(w, 2, r, seed=4)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 50


def test_part_weights_reach_the_clips():
    src = open_source(f"{DATA}*0.25", labels="35s")
    assert set(src.weights("train")) == {0.25}
    assert open_source(DATA, labels="35s").weights("train") is None
    with pytest.raises(DataError, match="weight must be > 0"):
        open_source(f"{DATA}*0", labels="35s")


# --------------------------------------------------------------------------- folds

def test_speaker_folds_balance_clips_and_keep_fixed_speakers():
    counts = {f"s{i}": c for i, c in enumerate([50, 40, 30, 20, 10, 10, 10, 10, 10, 10])}
    folds = speaker_folds(counts, 5, seed=0)
    load = Counter()
    for s, f in folds.items():
        load[f] += counts[s]
    assert max(load.values()) == 50 and min(load.values()) >= 30  # the 50-clip speaker alone is the most
    even = speaker_folds({f"t{i}": c for i, c in enumerate([40, 30, 20, 20] + [10] * 9)}, 5, seed=0)
    assert set(Counter(f for f in even.values()).keys()) == set(range(5))
    # a speaker already placed by another corpus keeps its fold; the others fill around it
    assert speaker_folds({"a": 5, "b": 5}, 2, fixed={"a": 1}) == {"a": 1, "b": 0}
    assert sorted(speaker_folds({"a": 5, "b": 5, "c": 5}, 3, fixed={"a": 2}).values()) == [0, 1, 2]


def test_fold_spec_is_checked():
    with pytest.raises(DataError, match="expected K/N"):
        Fold.parse("2of5")
    with pytest.raises(DataError, match="1 <= K <= N"):
        Fold.parse("6/5")
    with pytest.raises(DataError, match="1 <= K <= N"):
        Fold.parse("0/5")
    assert str(Fold.parse("all")) == "all"
    with pytest.raises(ConfigError, match="expected K/N"):
        TrainConfig(fold="x")


@pytest.mark.real_data
def test_folds_over_real_speakers_are_disjoint_and_cover_every_clip():
    if not (FSDD.is_dir() and GSC12.is_dir()):
        pytest.skip("needs ../shared/data/fsdd-dev and gsc12-dev")
    spec = f"folder:{GSC12}+folder:{FSDD}"
    tests = []
    for k in range(1, 6):
        src = open_source(spec, labels="35s", fold=f"{k}/5")
        parts = {s: src.entries(s) for s in ("train", "validation", "test")}
        spk = {s: {e.speaker for e in es if e.speaker} for s, es in parts.items()}
        assert not (spk["test"] & spk["train"]) and not (spk["test"] & spk["validation"])
        assert not (spk["validation"] & spk["train"])
        fsdd_test = {e.speaker for e in parts["test"] if e.path.startswith(str(FSDD))}
        assert len(fsdd_test) == 1  # five FSDD speakers: leave one speaker out
        tests += [e.ref for e in parts["test"]]
        noise = {n.path for n in src.index.noise}
        assert not noise & {e.path for e in parts["test"]}  # no held-out silence as training noise
    everything = open_source(spec, labels="35s")
    total = sum(len(everything.entries(s)) for s in ("train", "validation", "test"))
    assert len(tests) == len(set(tests)) == total  # every clip held out exactly once
    final = open_source(spec, labels="35s", fold="all")  # the shipped model: no fold held out
    assert not final.entries("test") and len(final.entries("train")) > 0.8 * total


def test_apply_fold_needs_enough_speakers():
    src = open_source(DATA, labels="35s")
    ix = src.index
    few = type(ix)(name="x", root=ix.root, kind=ix.kind, splits={"train": ix.splits["train"][:1],
                   "validation": (), "test": ()}, natural_labels=ix.natural_labels)
    with pytest.raises(DataError, match="cannot fill 5 speaker-disjoint folds"):
        apply_fold(few, Fold(1, 5))


def test_every_model_runs_with_the_waveform_shared_by_frontends():
    # the distillation contract: every zoo model reads the same 1 s waveform, whatever its frontend
    for name in zoo.list_models():
        assert zoo.create_model(name).cfg.frontend.clip_samples == CLIP_SAMPLES
