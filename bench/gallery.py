"""The signal gallery: per class, one real clip as the model sees it, and as the trainer augments it.

For each class of a data set's split, one clip (seeded pick) in three views: the waveform, its
spectrum, and the model's own features (`model.frontend(wave)`, [B, C, M, F]: the axes are
labelled from that shape, so any frontend draws). Under them, the same three views of one
augmented version, made by the trainer's own `training.augment.Augmenter` with the
`TrainConfig` defaults: its waveform augmentations before the frontend and its spectrogram
augmentations after it, each drawn with its configured probability, as in a training batch.
Mixup is left out: it blends two clips of a batch, which a per-class picture cannot show.

One PNG per class in results/gallery/, each carrying its command, commit, date and data in its
PNG text (read by `python -m bench index`). A picture, not a measurement.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.report import RESULTS
from kws.audio import from_int16

GALLERY_DIR = RESULTS / "gallery"
DEFAULT_MODEL = "efficientnet_b0"


def default_data() -> str:
    """gsc12-dev (real speech) when it is on disk, else the synthetic set."""
    from kws.data.source import available_shortcuts

    return "gsc12-dev" if "gsc12-dev" in available_shortcuts() else "synth"


@dataclass(frozen=True)
class GalleryConfig:
    data: str = field(default_factory=default_data)  # a kws.data spec
    model: str = DEFAULT_MODEL  # zoo name, run folder or checkpoint: only its frontend matters
    split: str = "test"
    seed: int = 0  # picks the clips and seeds the Augmenter
    classes: tuple[str, ...] = ()  # () = every class the split holds
    out: Path = GALLERY_DIR


@dataclass(frozen=True)
class Views:
    """The arrays drawn for a batch of clips: waveforms [B, T], features [B, C, M, F]."""

    wave: np.ndarray
    feats: np.ndarray
    wave_aug: np.ndarray
    feats_aug: np.ndarray


def load_frontend_model(ref: str, labels: Sequence[str]):
    """The model whose frontend the gallery draws: trained weights when there are any, else a fresh
    instance (the frontend has no weights, so its features are the same)."""
    import zoo

    if zoo.is_model(ref) and ref not in zoo.shipped_models():
        return zoo.create_model(ref, labels=tuple(labels)).eval(), "no trained weights: features only"
    model, _ = zoo.load_model(ref)
    return model.float().eval(), "trained weights"


def make_views(model, waves: np.ndarray, noise: np.ndarray | None, seed: int) -> Views:
    """Features through `model.frontend`, and one augmented version through the trainer's Augmenter."""
    import torch

    from training.augment import Augmenter
    from training.config import TrainConfig

    aug = Augmenter(TrainConfig(), model.frontend, noise, torch.device("cpu"), seed=seed)
    x = torch.from_numpy(np.asarray(waves, dtype=np.float32))
    with torch.no_grad():
        feats = model.frontend(x)
        x_aug = aug.wave(x)  # the trainer's order: waveform augmentations, frontend, spectrogram ones
        feats_aug = aug.spec(model.frontend(x_aug))
    return Views(x.numpy(), feats.numpy(), x_aug.numpy(), feats_aug.numpy())


SPECTRUM_FRAME = 512  # 32 ms at 16 kHz: Welch averaging over these frames smooths the clip's spectrum


def spectrum_db(wave: np.ndarray, sample_rate: int, frame: int = SPECTRUM_FRAME) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in Hz, the clip's power spectrum in dB re full scale: Welch, Hann, 50 % overlap)."""
    w = np.hanning(frame)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(wave, np.float64), frame)[:: frame // 2]
    power = (np.abs(np.fft.rfft(frames * w, axis=1)) ** 2).mean(0) / (w.sum() / 2) ** 2
    return np.fft.rfftfreq(frame, 1.0 / sample_rate), 10 * np.log10(np.maximum(power, 1e-14))


def _file_name(i: int, label: str) -> str:
    return f"{i:02d}_{re.sub(r'[^A-Za-z0-9_-]+', '', label.strip('_')) or 'class'}.png"


def draw_class(label: str, clip: str, views: Views, k: int, sample_rate: int, title_note: str):
    """The 2 x 3 figure of clip k: waveform, spectrum, features; clean above, augmented below."""
    from bench.report import _plt

    plt, _ = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(12.5, 5.8), gridspec_kw={"width_ratios": [1.1, 1.0, 1.2]},
                             layout="constrained")
    t = np.arange(views.wave.shape[1]) / sample_rate
    c, m, f = views.feats.shape[1:]
    lim = max(np.abs(views.wave[k]).max(), np.abs(views.wave_aug[k]).max(), 1e-3) * 1.05
    top_db = max(spectrum_db(w, sample_rate)[1].max() for w in (views.wave[k], views.wave_aug[k])) + 5
    vmin = min(views.feats[k, 0].min(), views.feats_aug[k, 0].min())
    vmax = max(views.feats[k, 0].max(), views.feats_aug[k, 0].max())
    for row, (wave, feats, name) in enumerate(((views.wave[k], views.feats[k], "clip"),
                                               (views.wave_aug[k], views.feats_aug[k], "augmented"))):
        a_w, a_s, a_f = axes[row]
        a_w.plot(t, wave, lw=0.5, color="#3b6ea8")
        a_w.set_ylim(-lim, lim)
        a_w.set_xlim(0, t[-1])
        a_w.set_ylabel(f"{name}\namplitude")
        hz, db = spectrum_db(wave, sample_rate)
        a_s.plot(hz / 1000, db, lw=0.9, color="#a83b3b")
        a_s.set_xlim(0, hz[-1] / 1000)
        a_s.set_ylim(max(top_db - 95, -140), top_db)  # the same scale above and below
        a_s.set_ylabel("dB (full scale)")
        im = a_f.imshow(feats[0], origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
                        interpolation="nearest")
        a_f.set_ylabel(f"band (of {m})")
        a_f.grid(False)
        if row == 0:
            a_w.set_title("waveform", fontsize=10)
            a_s.set_title("spectrum (whole clip, Welch)", fontsize=10)
            a_f.set_title(f"model features [{c}, {m}, {f}]" + (f", channel 1 of {c}" if c > 1 else ""),
                          fontsize=10)
        else:
            a_w.set_xlabel("time (s)")
            a_s.set_xlabel("frequency (kHz)")
            a_f.set_xlabel(f"frame (of {f})")
    fig.colorbar(im, ax=axes[:, 2].tolist(), shrink=0.85, label="feature value")
    fig.suptitle(f"'{label}': {clip}\n{title_note}", fontsize=10)
    return fig


def build_gallery(cfg: GalleryConfig, command: str = "python -m bench gallery") -> list[Path]:
    """Write one PNG per class; returns their paths."""
    from kws.data import open_source
    from kws.fsutil import atomic_path
    from kws.runinfo import git_info

    src = open_source(cfg.data, seed=cfg.seed)
    cs = src.split(cfg.split)
    labels = tuple(cs.labels)
    y = np.asarray(cs.y)
    wanted = list(cfg.classes) or [lab for lab in labels if (y == labels.index(lab)).any()]
    unknown = [c for c in wanted if c not in labels or not (y == labels.index(c)).any()]
    if unknown:
        raise ValueError(f"{cfg.data} ({cfg.split}): no clips of {', '.join(unknown)}")
    rng = np.random.default_rng(cfg.seed)
    picks = [int(rng.choice(np.flatnonzero(y == labels.index(c)))) for c in wanted]
    model, weights = load_frontend_model(cfg.model, labels)
    waves = from_int16(cs.waves[np.asarray(picks)])
    views = make_views(model, waves, src.noise, cfg.seed)
    sr = model.cfg.frontend.sample_rate
    git = git_info()
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    note = (f"features: the {cfg.model} frontend ({weights}); below: augmented by training.augment.Augmenter "
            f"(TrainConfig defaults, seed {cfg.seed}, no mixup)")
    cfg.out.mkdir(parents=True, exist_ok=True)
    paths = []
    from bench.report import _plt

    plt, _ = _plt()
    for k, (label, idx) in enumerate(zip(wanted, picks)):
        clip = Path(cs.files[idx]).name if cs.files[idx] else f"clip {idx}"
        fig = draw_class(label, f"{cfg.data} {cfg.split} / {clip}", views, k, sr, note)
        path = cfg.out / _file_name(labels.index(label), label)
        meta = {"Title": f"signal gallery: {label}", "Software": "python -m bench gallery",
                "Description": (f"One {cfg.data} {cfg.split}-split clip of '{label}' ({clip}): waveform, spectrum and "
                                f"the {cfg.model} frontend's features, above; one augmented version by the "
                                "trainer's Augmenter (TrainConfig defaults, no mixup), below."),
                "Command": command, "Commit": f"{git.get('commit') or '?'}{' (dirty)' if git.get('dirty') else ''}",
                "Creation Time": stamp, "Source": f"{cfg.data} ({cfg.split}), model {cfg.model}"}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight", metadata=meta)
        plt.close(fig)
        paths.append(path)
    return paths
