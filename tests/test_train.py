"""The trainer: config precedence, device-side augmentation, a real run's artefacts, exact resume, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cli import train as train_cli
import zoo
from _tone_words import write_tone_words
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE
from kws.frontend import FrontendConfig, LogMel
from training.augment import Augmenter
from training.config import ConfigError, TrainConfig, resolve
from training.loader import ClipBatches, make_loader
from kws.metrics import to_12class_cm
from training.report import read_metrics, scores

REPO = Path(__file__).resolve().parents[1]
DATA = "synth:tiny"
# Small and quick, but every stage on: augmentation (incl. mixup), label smoothing, warm restarts.
RUN_ARGS = ["--model", "dscnn", "--data", DATA, "--batch-size", "16", "--lr", "3e-3", "--t0", "2",
            "--no-progress", "--deterministic", "--seed", "3"]
TIMING = {"epoch_s", "samples_per_s"}


def run(tmp: Path, name: str, *extra: str) -> Path:
    out = tmp / name
    assert train_cli.main([*RUN_ARGS, "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    """An uninterrupted 4-epoch run (shared by the artefact and the resume tests)."""
    return run(tmp_path_factory.mktemp("runs"), "full", "--epochs", "4")


# --------------------------------------------------------------------------- config

def test_config_precedence_defaults_yaml_cli(tmp_path):
    y = tmp_path / "exp.yaml"
    y.write_text("model: dscnn\nlr: 0.01\nbatch_size: 8\ngain: [0.9, 1.1]\nchannels_last: true\n")
    cfg = resolve({"lr": 0.5, "gain": [0.7, 1.3]}, y)
    assert (cfg.model, cfg.batch_size, cfg.channels_last) == ("dscnn", 8, True)  # from YAML
    assert cfg.lr == 0.5 and cfg.gain == (0.7, 1.3)  # CLI wins
    assert cfg.weight_decay == TrainConfig.weight_decay  # default kept

    # the same through the real command line, with generated flags
    argv = ["--config", str(y), "--lr", "0.25", "--no-channels-last", "--workers", "none", "--print-config"]
    parsed = _print_config(argv)
    assert parsed["lr"] == 0.25 and parsed["model"] == "dscnn" and parsed["batch_size"] == 8
    assert parsed["channels_last"] is False and parsed["workers"] is None and parsed["gain"] == [0.9, 1.1]


def _print_config(argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert train_cli.main(argv) == 0
    return yaml.safe_load(buf.getvalue())


@pytest.mark.parametrize("text, message", [
    ("lr_rate: 0.1\n", "unknown setting 'lr_rate'"),
    ("batch_size: 2.5\n", "batch_size: expected an integer"),
    ("gain: 1.0\n", "gain: expected a list of 2 numbers"),
    ("augment: maybe\n", "augment: expected true or false"),
    ("p_mixup: 1.5\n", "p_mixup is a probability"),
    ("- a list\n", "expected a mapping"),
])
def test_bad_yaml_is_a_clear_error(tmp_path, text, message):
    y = tmp_path / "bad.yaml"
    y.write_text(text)
    with pytest.raises(ConfigError, match=message):
        resolve({}, y)


def test_cli_error_names_the_problem(tmp_path, capsys):
    assert train_cli.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: config file not found" in capsys.readouterr().err
    assert train_cli.main(["--model", "nope", "--data", DATA, "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------- augmentation

def make_aug(**kw) -> Augmenter:
    off = dict(p_shift=0.0, p_noise=0.0, p_gain=0.0, p_gauss=0.0, p_stretch=0.0, p_pitch=0.0,
               p_specaug=0.0, p_mixup=0.0)
    noise = np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE).astype(np.float32)
    return Augmenter(TrainConfig(**{**off, **kw}), LogMel(FrontendConfig()), noise, torch.device("cpu"), seed=0)


def speechlike(b: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    t = torch.arange(CLIP_SAMPLES) / SAMPLE_RATE
    env = torch.exp(-((t - 0.5) / 0.15) ** 2)
    f0 = 100 + 200 * torch.rand(b, 1, generator=g)
    return 0.3 * env * torch.sin(2 * torch.pi * f0 * t) + 0.001 * torch.randn(b, CLIP_SAMPLES, generator=g)


def test_all_off_is_identity():
    aug = make_aug()
    x = speechlike(8)
    assert torch.equal(aug.wave(x), x)
    feats = torch.randn(8, 1, 128, 63)
    assert torch.equal(aug.spec(feats), feats)
    # drawn but neutral (stretch 1, pitch 0): the grid is the identity, up to float rounding
    neutral = make_aug(p_stretch=1.0, stretch=(1.0, 1.0), p_pitch=1.0, pitch_semitones=0.0)
    torch.testing.assert_close(neutral.spec(feats), feats, atol=1e-3, rtol=0)
    f, y2, lam = aug.mixup(feats, torch.arange(8))
    assert lam == 1.0 and f is feats


def test_gain_within_bounds_and_per_clip():
    aug = make_aug(p_gain=1.0, gain=(0.8, 1.2))
    x = speechlike()
    ratio = aug.wave(x) / x
    per_clip = ratio[:, 8000]
    assert torch.allclose(ratio, per_clip[:, None].expand_as(ratio), rtol=1e-5)  # one gain per clip
    assert per_clip.min() >= 0.8 and per_clip.max() <= 1.2 and per_clip.std() > 0.05


def test_time_shift_moves_clips_by_at_most_100_ms():
    aug = make_aug(p_shift=1.0, shift_s=0.1)
    x = torch.arange(1, CLIP_SAMPLES + 1, dtype=torch.float32).repeat(32, 1)
    y = aug.wave(x)
    shift = (x[:, 8000] - y[:, 8000]).long()  # x is a ramp: y[i] = x[i - shift]
    assert shift.abs().max() <= 1600 and shift.unique().numel() > 5
    for row, s in zip(y, shift.tolist()):  # zero-filled, and otherwise the clip itself
        assert torch.equal(row[1600:-1600], x[0, 1600 - s: CLIP_SAMPLES - 1600 - s])
        assert (row[:s] == 0).all() if s > 0 else (row[CLIP_SAMPLES + s:] == 0).all()


def test_background_noise_mixed_at_the_requested_snr():
    aug = make_aug(p_noise=1.0, noise_snr_db=(5.0, 15.0))
    # A ramp as "noise": each added row then tells which window of it was cut.
    ramp = np.arange(1, 3 * SAMPLE_RATE + 1, dtype=np.float32)
    aug.noise = torch.from_numpy(ramp)
    x = speechlike()
    added = (aug.wave(x) - x).double()
    snr = 10 * torch.log10(x.double().square().mean(1) / added.square().mean(1))
    assert snr.min() >= 5.0 - 1e-3 and snr.max() <= 15.0 + 1e-3 and snr.std() > 1.0
    scale = added[:, 1] - added[:, 0]
    start = added[:, 0] / scale - 1  # window start index into the ramp
    assert start.min() >= -0.5 and start.max() <= ramp.size - CLIP_SAMPLES + 0.5 and start.std() > 1000
    expected = scale[:, None] * (start.round()[:, None] + 1 + torch.arange(CLIP_SAMPLES, dtype=torch.float64))
    torch.testing.assert_close(added, expected, rtol=1e-3, atol=1e-4)


def test_gaussian_noise_std_in_range():
    aug = make_aug(p_gauss=1.0, gauss_std=(0.002, 0.004))
    x = torch.zeros(64, CLIP_SAMPLES)
    std = aug.wave(x).std(1)
    assert std.min() > 0.002 * 0.97 and std.max() < 0.004 * 1.03


def test_specaugment_mask_counts_and_widths():
    aug = make_aug(p_specaug=1.0, time_masks=(1, 2), time_mask_frames=30, freq_masks=(1, 2), freq_mask_bands=15)
    feats = torch.randn(256, 1, 128, 63) + 5.0  # no value equal to its clip's mean of its own
    out = aug.specaugment(feats)
    zero = out[:, 0] == feats.mean(dim=(1, 2, 3))[:, None, None]  # masks hold each clip's mean
    cols = zero.all(1)  # time frames masked over every band
    rows = zero.all(2)  # bands masked over every frame
    assert cols.sum(1).max() <= 2 * 30 and rows.sum(1).max() <= 2 * 15
    assert (cols.sum(1) > 0).float().mean() > 0.8 and (rows.sum(1) > 0).float().mean() > 0.8
    assert (cols.sum(1) > 30).any() and (rows.sum(1) > 15).any()  # two masks happen
    unmasked = ~(cols[:, None, :] | rows[:, :, None])
    assert torch.equal(out[:, 0][unmasked], feats[:, 0][unmasked])  # nothing else touched


def test_pitch_shift_moves_a_tone_by_the_drawn_semitones():
    """A tone's log-mel peak moves to the band of f * 2^(k/12); time stretch keeps it."""
    from kws.frontend import LogMel, hz_to_mel, mel_to_hz

    fe = FrontendConfig()
    t = torch.arange(CLIP_SAMPLES) / SAMPLE_RATE
    x = torch.sin(2 * torch.pi * 1000.0 * t).repeat(16, 1)
    feats = LogMel(fe)(x)
    aug = make_aug(p_pitch=1.0, pitch_semitones=4.0, p_stretch=1.0, stretch=(0.8, 1.2))
    state = aug.gen.get_state()
    out = aug.warp(feats, 1.0, 1.0)
    aug.gen.set_state(state)  # replay the draws to learn the semitones
    b = feats.shape[0]
    aug._coin(b, 1.0), aug._u(b, 0.8, 1.2), aug._coin(b, 1.0)
    semis = aug._u(b, -4.0, 4.0)
    centres = mel_to_hz(np.linspace(hz_to_mel(fe.f_min), hz_to_mel(fe.f_max), fe.n_mels + 2)[1:-1])
    peak = out[:, 0, :, 20:43].mean(-1).argmax(-1).numpy()  # centre frames: inside every stretch
    expected = np.abs(centres[None, :] - 1000.0 * 2 ** (semis.numpy()[:, None] / 12)).argmin(1)
    assert np.abs(peak - expected).max() <= 1
    assert semis.abs().max() > 2.0  # the draws did move the tone


def test_mixup_mixes_half_the_batches_with_beta_lambda():
    aug = make_aug(p_mixup=0.5, mixup_alpha=0.4)
    feats = torch.randn(16, 1, 8, 8)
    y = torch.arange(16)
    lams, mixed = [], 0
    for _ in range(200):
        f, y2, lam = aug.mixup(feats, y)
        if lam < 1.0:
            mixed += 1
            lams.append(lam)
            torch.testing.assert_close(f, lam * feats + (1 - lam) * feats[y2])
    assert 70 < mixed < 130
    assert np.mean(np.minimum(lams, 1 - np.array(lams)) < 0.1) > 0.3  # Beta(0.4, 0.4) is U-shaped


def test_augmenter_state_replays_exactly():
    aug = make_aug(p_shift=0.8, p_noise=0.8, p_gain=0.8, p_gauss=0.5, p_stretch=0.5, p_pitch=0.5, p_specaug=1.0,
                   p_mixup=0.5)
    x, feats = speechlike(8), torch.randn(8, 1, 128, 63)
    saved = aug.state()
    a = (aug.wave(x), aug.spec(feats), aug.mixup(feats, torch.arange(8))[2])
    aug.load_state(*saved)
    b = (aug.wave(x), aug.spec(feats), aug.mixup(feats, torch.arange(8))[2])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]


# --------------------------------------------------------------------------- loader and scores

def test_loader_reads_whole_batches_and_shards_exactly():
    waves = np.arange(50, dtype=np.int16)[:, None].repeat(CLIP_SAMPLES, 1)
    ds = ClipBatches(waves, np.arange(50) % 5)
    seen = []
    for rank in range(2):
        for x, y in make_loader(ds, 8, train=False, seed=0, rank=rank, world=2):
            assert x.dtype == torch.int16 and x.shape[1] == CLIP_SAMPLES
            assert torch.equal(y, x[:, 0].long() % 5)  # labels stay with their clips
            seen += x[:, 0].tolist()
    assert sorted(seen) == list(range(50))  # evaluation: every clip exactly once over the ranks
    train_loader = make_loader(ds, 8, train=True, seed=0)
    train_loader.batch_sampler.sampler.set_epoch(0)
    e0 = [b[0][:, 0].tolist() for b in train_loader]
    train_loader.batch_sampler.sampler.set_epoch(1)
    e1 = [b[0][:, 0].tolist() for b in train_loader]
    assert all(len(b) == 8 for b in e0) and len(e0) == 6 and e0 != e1  # whole batches, reshuffled


def test_scores_and_12class_mapping():
    labels = ["yes", "no", "cat", "_silence_"]
    cm = np.array([[8, 2, 0, 0], [1, 9, 0, 0], [0, 3, 5, 2], [0, 0, 0, 10]])
    s = scores(cm, labels)
    assert s["accuracy"] == pytest.approx(32 / 40)
    assert s["per_class"]["no"]["precision"] == pytest.approx(9 / 14)
    assert s["per_class"]["cat"]["recall"] == pytest.approx(0.5)
    cm12, lab12 = to_12class_cm(cm, labels)
    assert cm12[lab12.index("_unknown_"), lab12.index("_unknown_")] == 5  # cat -> _unknown_
    assert cm12.sum() == cm.sum() and np.trace(cm12) == np.trace(cm)


def test_no_12class_figure_on_clips_without_its_words():
    # A digits-only test set viewed through "35s": every clip would map to _unknown_ and the
    # 12-class accuracy would read 1.0 for any model. It must not be computed or printed.
    from kws.data import LABEL_SETS
    from training.report import build_report, report_markdown

    labels = LABEL_SETS["35s"]
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    one, two = labels.index("one"), labels.index("two")
    cm[one, one], cm[one, two], cm[two, two] = 3, 2, 5
    rep = build_report(cm, labels, {"model": "x", "data": "folder:digits"})
    assert "gsc12" not in rep and "12-class" not in report_markdown(rep)
    cm[labels.index("yes"), labels.index("yes")] = 1  # one clip of a command word: the task exists
    assert "gsc12" in build_report(cm, labels, {"model": "x"})


# --------------------------------------------------------------------------- runs

def test_run_writes_every_artefact_and_learns(full_run):
    names = {p.name for p in full_run.iterdir()}
    assert {"config.yaml", "class_labels.json", "best.safetensors", "last.safetensors", "train_state.safetensors",
            "metrics.csv", "curves.png", "confusion.png", "report.json", "report.md"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    rows = read_metrics(full_run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.05, rows  # it learns
    assert all(r["train_samples"] > 0 and 0 <= r["val_acc"] <= 1 for r in rows)
    assert rows[1]["lr"] > rows[0]["lr"] or rows[2]["lr"] > rows[1]["lr"]  # a warm restart (t0=2)

    cfg = yaml.safe_load((full_run / "config.yaml").read_text())
    assert cfg["model"] == "dscnn" and cfg["lr"] == 3e-3 and cfg["epochs"] == 4 and cfg["label_smoothing"] == 0.1
    labels = json.loads((full_run / "class_labels.json").read_text())
    assert len(labels) == 36 and labels[-1] == "_silence_"

    rep = json.loads((full_run / "report.json").read_text())
    assert rep["split"] == "test" and rep["n"] > 0 and set(rep["per_class"]) == set(labels)
    assert {"accuracy", "macro_f1", "macro_precision", "macro_recall"} <= set(rep)
    assert "gsc12" in rep and 0 <= rep["gsc12"]["accuracy"] <= 1  # 35s models are scored on 12 classes
    assert "12-class accuracy" in (full_run / "report.md").read_text()

    # the best checkpoint is a zoo model: loads by run folder, predicts the saved labels
    model, meta = zoo.load_model(full_run)
    assert model.labels == tuple(labels)
    best_epoch = max(r["epoch"] for r in rows if r["best"])
    assert meta["epoch"] == best_epoch and rep["checkpoint"] == f"best (epoch {best_epoch})"
    with torch.no_grad():
        assert model(torch.zeros(2, CLIP_SAMPLES)).shape == (2, 36)


def test_killed_and_resumed_run_matches_uninterrupted(full_run, tmp_path):
    assert not torch.are_deterministic_algorithms_enabled()  # train() put the process-wide switches back
    part = run(tmp_path, "part", "--epochs", "4", "--stop-after-epochs", "2")
    assert not (part / "report.json").exists() and len(read_metrics(part / "metrics.csv")) == 2
    assert train_cli.main(["--resume", str(part), "--no-progress"]) == 0

    a, b = read_metrics(full_run / "metrics.csv"), read_metrics(part / "metrics.csv")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (full_run, part))
    for key in ("accuracy", "macro_f1", "test_loss", "confusion", "checkpoint", "epochs_trained"):
        assert ra[key] == rb[key], key
    from safetensors.torch import load_file

    wa, wb = load_file(str(full_run / "last.safetensors")), load_file(str(part / "last.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_time_budget_stops_the_run_and_still_reports(tmp_path):
    out = run(tmp_path, "budget", "--epochs", "50", "--max-minutes", "0.0001", "--no-augment")
    rep = json.loads((out / "report.json").read_text())
    assert rep["epochs_trained"] == 1 and rep["stop_reason"].startswith("time budget")
    assert len(read_metrics(out / "metrics.csv")) == 1


def test_early_stopping_on_validation_loss(tmp_path, monkeypatch):
    import training.trainer as trainer

    real = trainer.evaluate

    def flat_val_loss(eng, loader, n_classes):  # the real pass, but a validation loss that never improves
        _, cm = real(eng, loader, n_classes)
        return 1.0, cm

    monkeypatch.setattr(trainer, "evaluate", flat_val_loss)
    out = run(tmp_path, "patience", "--epochs", "50", "--patience", "2", "--no-augment")
    rep = json.loads((out / "report.json").read_text())
    assert rep["epochs_trained"] == 3 and rep["stop_reason"].startswith("early stopping")
    assert rep["checkpoint"] == "best (epoch 1)"
    assert [r["best"] for r in read_metrics(out / "metrics.csv")] == [1, 0, 0]


def test_resume_refuses_to_change_the_run(full_run, capsys):
    assert train_cli.main(["--resume", str(full_run), "--lr", "0.1"]) == 2
    assert "cannot change lr when resuming" in capsys.readouterr().err
    assert train_cli.main([*RUN_ARGS, "--out", str(full_run), "--epochs", "1"]) == 2  # no clobbering
    assert "already holds a run" in capsys.readouterr().err


def _folder_source(root: Path) -> Path:
    """Three custom command words, 12 takes each, as a user would record them."""
    return write_tone_words(root, ["lights", "music", "stop"], [f"take{i:02d}" for i in range(12)], 200.0)


def test_trains_on_a_folder_of_custom_words(tmp_path):
    words = _folder_source(tmp_path / "my_words")
    out = tmp_path / "run"
    rc = train_cli.main(["--model", "dscnn", "--data", f"folder:{words}", "--epochs", "2", "--batch-size", "8",
                         "--accum-steps", "2", "--out", str(out), "--no-progress",
                         "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    assert json.loads((out / "class_labels.json").read_text()) == ["lights", "music", "stop"]
    rep = json.loads((out / "report.json").read_text())
    assert rep["n"] > 0 and "gsc12" not in rep  # custom words: no 12-class view
    model, _ = zoo.load_model(out)
    assert model.labels == ("lights", "music", "stop")


@pytest.mark.slow
def test_ddp_two_cpu_processes_on_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(REPO / "train.py"), "--model", "dscnn", "--data", DATA, "--epochs", "2", "--batch-size", "16",
           "--out", str(out), "--no-progress", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x2" in proc.stdout and proc.stdout.count("epoch   1 ") == 1  # one process reports
    assert {"best.safetensors", "last.safetensors", "train_state.safetensors", "metrics.csv", "report.json",
            "confusion.png"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    from kws.data import open_source

    n_train = len(open_source(DATA, labels="35s").split("train"))
    per_rank = -(-n_train // 2)  # DistributedSampler pads to equal shards; whole batches only
    rows = read_metrics(out / "metrics.csv")
    assert len(rows) == 2
    assert all(r["train_samples"] == 2 * (per_rank // 16) * 16 for r in rows)  # all-reduced over both ranks
    rep = json.loads((out / "report.json").read_text())
    assert rep["n"] == len(open_source(DATA, labels="35s").split("test"))  # test clips counted once


# --------------------------------------------------------------------------- every model, every source

GSC_V1_SAMPLE = REPO.parent / "shared" / "data" / "gsc-v1-sample"


@pytest.mark.parametrize("model", zoo.list_models())
def test_every_registered_model_trains_through_train_py(tmp_path, model):
    out = tmp_path / model
    rc = train_cli.main(["--model", model, "--data", DATA, "--epochs", "1", "--batch-size", "32",
                         "--no-progress", "--out", str(out)])
    assert rc == 0
    trained, meta = zoo.load_model(out)
    assert trained.cfg.name == model and meta["training_data"] == DATA
    with torch.no_grad():
        assert torch.isfinite(trained(torch.zeros(2, CLIP_SAMPLES).normal_(0, 0.1))).all()


def test_trains_on_speech_commands_with_the_official_split_lists(tmp_path):
    if not GSC_V1_SAMPLE.is_dir():
        pytest.skip(f"{GSC_V1_SAMPLE} not found (real recordings are read from ../shared/data)")
    out = tmp_path / "gsc"
    rc = train_cli.main(["--model", "dscnn", "--data", f"gsc:{GSC_V1_SAMPLE}", "--epochs", "1", "--batch-size", "32",
                         "--no-progress", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 22  # the clips of testing_list.txt


def test_a_run_from_before_later_settings_loads_with_their_defaults_and_a_cut_config_does_not(tmp_path):
    import yaml

    from training.config import CONFIG_FILE, LATER_SETTINGS, ConfigError, TrainConfig, load_run_config

    values = TrainConfig(model="dscnn").to_dict()
    for name in LATER_SETTINGS:
        values.pop(name)
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(values))
    cfg = load_run_config(tmp_path)
    assert cfg == TrainConfig(model="dscnn")
    values.pop("lr")  # a setting every run has always written: its absence means a damaged file
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="lacks 1 settings"):
        load_run_config(tmp_path)
