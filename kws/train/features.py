"""Cached outputs of a frozen backbone, so that training only the head takes minutes on a CPU.

With `freeze_backbone` the frontend and the backbone never change, so what they make of a
clip depends only on the clip and its augmentation. Each training clip is augmented
`cache_views` times, exactly as the trainer would augment it (waveform, then spectrogram),
and passed through frontend + backbone once; validation and test clips get one clean view.
Epoch e then trains the head on view e mod V (kws.train.loader.ViewBatches); mixup still
happens in the loop, on the cached features.

Views are float16 .npy files under <cache>/features/<key>/, one file per view, each written
atomically: a killed build resumes at the view it was on (and the next build sweeps the
temporary it left, under the folder's lock). The key covers everything the
numbers depend on (clips, model and its weights, augmentation settings, noise, seed), so a
run with other settings never reads a stale cache, and runs that share them share it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kws.data import ClipSet
from kws.fsutil import atomic_path, atomic_write_json, file_lock, sweep_temps, temp_files
from kws.train.augment import Augmenter
from kws.train.config import TrainConfig

FORMAT = "kws-features/1"
BATCH = 128
# The settings that change what a view holds (mixup acts later, on the cached features).
AUGMENT_FIELDS = ("augment", "p_shift", "shift_s", "p_noise", "noise_snr_db", "p_gain", "gain", "p_gauss",
                  "gauss_std", "p_stretch", "stretch", "p_pitch", "pitch_semitones", "p_specaug", "time_masks",
                  "time_mask_frames", "freq_masks", "freq_mask_bands")


def _digest(model: torch.nn.Module, clips: ClipSet, cfg: TrainConfig, noise: np.ndarray | None,
            views: int, train: bool) -> str:
    h = hashlib.sha256()
    # The backbone's class and weights, not the model's name: models that differ only in their
    # head (speech_embedding_mlp / _conv) share one cache.
    settings = {"format": FORMAT, "backbone": type(model.backbone).__name__, "frontend": model.cfg.frontend.to_dict(),
                "views": views, "train": train, "seed": cfg.seed,
                "augment": {k: getattr(cfg, k) for k in AUGMENT_FIELDS} if train else None,
                "clips": clips.path.name if clips.path is not None else None, "n": len(clips)}
    h.update(json.dumps(settings, sort_keys=True, default=list).encode())
    if clips.path is None:  # an in-memory clip set: its content is its identity
        h.update(np.ascontiguousarray(clips.waves).tobytes())
    for k, v in model.backbone.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    if train and noise is not None:
        h.update(np.ascontiguousarray(noise, dtype=np.float32).tobytes())
    return h.hexdigest()[:20]


def _backbone_runner(model: torch.nn.Module, example: torch.Tensor, device: torch.device):
    """features -> backbone outputs. On the CPU through ONNX Runtime: the frozen backbone's
    forward is the cost of a cache build, and ORT runs the speech embedding 2.7x faster than
    eager PyTorch on one thread (outputs equal to 2e-5 of values up to 70, far below the
    float16 the cache stores; kws.train.ortrun checks it against eager on the first batch)."""
    if device.type != "cpu":
        return lambda f: model.backbone(f).float().cpu().numpy()
    from kws.train.ortrun import cpu_runner

    return cpu_runner(model.backbone, example)[0]


@torch.no_grad()
def _compute(model: torch.nn.Module, clips: ClipSet, augmenter: Augmenter | None, device: torch.device,
             bar: tqdm) -> np.ndarray:
    """frontend (+ augmentation) + backbone of every clip, float16, in clip order."""
    from kws.audio import INT16_SCALE

    out, run = None, None
    for i in range(0, len(clips), BATCH):
        x = torch.from_numpy(np.asarray(clips.waves[i:i + BATCH], dtype=np.float32) / np.float32(INT16_SCALE))
        x = x.to(device)
        if augmenter is not None:
            x = augmenter.wave(x)
        feats = model.frontend(x)
        if augmenter is not None:
            feats = augmenter.spec(feats)
        run = run or _backbone_runner(model, feats, device)
        z = run(feats).astype(np.float16)
        if out is None:
            out = np.empty((len(clips), *z.shape[1:]), dtype=np.float16)
        out[i:i + len(z)] = z
        bar.update(len(z))
    assert out is not None
    return out


def cached_views(model: torch.nn.Module, clips: ClipSet, cfg: TrainConfig, noise: np.ndarray | None,
                 device: torch.device, root: Path, *, train: bool, desc: str) -> list[np.ndarray]:
    """The backbone outputs of `clips`: cfg.cache_views augmented views (train) or one clean view."""
    views = cfg.cache_views if train and cfg.augment else 1
    key = _digest(model, clips, cfg, noise, views, train)
    folder = root / "features" / key
    was_training = model.training
    model.eval()  # BatchNorm statistics and dropout as at inference: the backbone is frozen
    out: list[np.ndarray] = []
    # One builder per key (a second run waits, then reads); under the lock, what a killed
    # builder left behind (temporaries) is stale and swept.
    try:
        with file_lock(folder / ".lock", what="this feature cache"):
            sweep_temps(temp_files(folder))
            with tqdm(total=views * len(clips), desc=f"features {desc}", unit="clip", unit_scale=True,
                      dynamic_ncols=True, disable=not cfg.progress) as bar:
                for v in range(views):
                    path = folder / f"view-{v}.npy"
                    try:
                        arr = np.load(path, mmap_mode="r")
                        if arr.shape[0] == len(clips) and arr.dtype == np.float16:
                            out.append(arr)
                            bar.update(len(clips))
                            continue
                    except (OSError, ValueError):
                        pass  # not built yet (files appear only whole, by rename)
                    aug = None
                    if train and cfg.augment:
                        aug = Augmenter(cfg, model.frontend, noise, device, seed=cfg.seed * 7_919 + 104_729 * (v + 1))
                    arr = _compute(model, clips, aug, device, bar)
                    with atomic_path(path) as tmp:
                        with open(tmp, "wb") as f:
                            np.save(f, arr)
                    out.append(np.load(path, mmap_mode="r"))
            atomic_write_json(folder / "manifest.json",
                              {"format": FORMAT, "model": model.cfg.name, "clips": len(clips), "views": views,
                               "train": train, "shape": list(out[0].shape), "source": clips.name})
    finally:
        model.train(was_training)
    return out
