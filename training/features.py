"""Cached outputs of a frozen backbone, so that training only the head takes minutes on a CPU.

With `freeze_backbone` the frontend and the backbone never change, so what they make of a
clip depends only on the clip and its augmentation. Each training clip is augmented
`cache_views` times, exactly as the trainer would augment it (waveform, then spectrogram),
and passed through frontend + backbone once; validation and test clips get one clean view.
Epoch e then trains the head on view e mod V (training.loader.ViewBatches); mixup still
happens in the loop, on the cached features.

Views are float16 .npy files under <cache>/features/<key>/, one file per view, each written
atomically: a killed build resumes at the view it was on (and the next build sweeps the
temporary it left, under the folder's lock). The key covers everything the
numbers depend on (clips, model and its weights, augmentation settings, noise, seed), so a
run with other settings never reads a stale cache, and runs that share them share it.

A source of several parts (`synth:400+folder:my_words`) is cached part by part, each keyed by
its clips' content: runs that share a part (cross-validation folds, a retrain with one more
hard negative, the few-shot benchmark's configurations) compute its views once.
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
from training.augment import Augmenter
from training.config import TrainConfig

FORMAT = "kws-features/1"
BATCH = 128
# The settings that change what a view holds (mixup acts later, on the cached features).
AUGMENT_FIELDS = ("augment", "p_shift", "shift_s", "p_noise", "noise_snr_db", "p_gain", "gain", "p_gauss",
                  "gauss_std", "p_stretch", "stretch", "p_pitch", "pitch_semitones", "p_specaug", "time_masks",
                  "time_mask_frames", "freq_masks", "freq_mask_bands")


def _batches(waves: np.ndarray, rows: np.ndarray | None):
    """int16 clips BATCH at a time: all of `waves`, or its `rows` (sorted: sequential reads)."""
    n = len(waves) if rows is None else len(rows)
    for i in range(0, n, BATCH):
        yield np.asarray(waves[i:i + BATCH] if rows is None else waves[rows[i:i + BATCH]])


def _digest(model: torch.nn.Module, clips: ClipSet, cfg: TrainConfig, noise: np.ndarray | None,
            views: int, train: bool, rows: np.ndarray | None = None) -> str:
    h = hashlib.sha256()
    # The backbone's class and weights, not the model's name: models that differ only in their
    # head (speech_embedding_mlp / _conv) share one cache.
    named = clips.path is not None and rows is None
    settings = {"format": FORMAT, "backbone": type(model.backbone).__name__, "frontend": model.cfg.frontend.to_dict(),
                "views": views, "train": train, "seed": cfg.seed,
                "augment": {k: getattr(cfg, k) for k in AUGMENT_FIELDS} if train else None,
                "clips": clips.path.name if named else None, "n": len(clips) if rows is None else len(rows)}
    h.update(json.dumps(settings, sort_keys=True, default=list).encode())
    if not named:  # an in-memory clip set, or a part of one: its content is its identity
        for b in _batches(clips.waves, rows):
            h.update(np.ascontiguousarray(b).tobytes())
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
    float16 the cache stores; training.ortrun checks it against eager on the first batch)."""
    if device.type != "cpu":
        return lambda f: model.backbone(f).float().cpu().numpy()
    from training.ortrun import cpu_runner

    return cpu_runner(model.backbone, example)[0]


@torch.no_grad()
def _compute(model: torch.nn.Module, clips: ClipSet, rows: np.ndarray | None, augmenter: Augmenter | None,
             device: torch.device, bar: tqdm) -> np.ndarray:
    """frontend (+ augmentation) + backbone of every clip (or of `rows`), float16, in clip order."""
    from kws.audio import from_int16

    n = len(clips) if rows is None else len(rows)
    out, run, i = None, None, 0
    for batch in _batches(clips.waves, rows):
        x = torch.from_numpy(from_int16(batch))
        x = x.to(device)
        if augmenter is not None:
            x = augmenter.wave(x)
        feats = model.frontend(x)
        if augmenter is not None:
            feats = augmenter.spec(feats)
        run = run or _backbone_runner(model, feats, device)
        z = run(feats).astype(np.float16)
        if out is None:
            out = np.empty((n, *z.shape[1:]), dtype=np.float16)
        out[i:i + len(z)] = z
        i += len(z)
        bar.update(len(z))
    assert out is not None
    return out


def cached_views(model: torch.nn.Module, clips: ClipSet, cfg: TrainConfig, noise: np.ndarray | None,
                 device: torch.device, root: Path, *, train: bool, desc: str,
                 parts: np.ndarray | None = None) -> list[np.ndarray]:
    """The backbone outputs of `clips`: cfg.cache_views augmented views (train) or one clean view.

    parts: the source part of each clip (DataSource.part_of); with more than one part, each
    part is cached on its own and the views are put together in clip order.
    """
    groups = [np.flatnonzero(parts == p) for p in np.unique(parts)] if parts is not None else []
    if len(groups) <= 1:
        return _views_of(model, clips, None, cfg, noise, device, root, train=train, desc=desc)
    pieces = [_views_of(model, clips, rows, cfg, noise, device, root, train=train, desc=f"{desc} part {k + 1}")
              for k, rows in enumerate(groups)]
    out = []
    for v in range(len(pieces[0])):
        full = np.empty((len(clips), *pieces[0][v].shape[1:]), dtype=np.float16)
        for rows, piece in zip(groups, pieces):
            full[rows] = piece[v]
        out.append(full)
    return out


def _views_of(model: torch.nn.Module, clips: ClipSet, rows: np.ndarray | None, cfg: TrainConfig,
              noise: np.ndarray | None, device: torch.device, root: Path, *, train: bool, desc: str
              ) -> list[np.ndarray]:
    views = cfg.cache_views if train and cfg.augment else 1
    key = _digest(model, clips, cfg, noise, views, train, rows)
    # A part's augmentation draws differ from its neighbours' (they would otherwise repeat row
    # for row) and depend on its content only, so every source holding the part shares them.
    salt = 0 if rows is None else int(key[:6], 16)
    n = len(clips) if rows is None else len(rows)
    folder = root / "features" / key
    was_training = model.training
    model.eval()  # BatchNorm statistics and dropout as at inference: the backbone is frozen
    out: list[np.ndarray] = []
    # One builder per key (a second run waits, then reads); under the lock, what a killed
    # builder left behind (temporaries) is stale and swept.
    try:
        with file_lock(folder / ".lock", what="this feature cache"):
            sweep_temps(temp_files(folder))
            with tqdm(total=views * n, desc=f"features {desc}", unit="clip", unit_scale=True,
                      dynamic_ncols=True, disable=not cfg.progress) as bar:
                for v in range(views):
                    path = folder / f"view-{v}.npy"
                    try:
                        arr = np.load(path, mmap_mode="r")
                        if arr.shape[0] == n and arr.dtype == np.float16:
                            out.append(arr)
                            bar.update(n)
                            continue
                    except (OSError, ValueError):
                        pass  # not built yet (files appear only whole, by rename)
                    aug = None
                    if train and cfg.augment:
                        aug = Augmenter(cfg, model.frontend, noise, device,
                                        seed=cfg.seed * 7_919 + 104_729 * (v + 1) + salt)
                    arr = _compute(model, clips, rows, aug, device, bar)
                    with atomic_path(path) as tmp:
                        with open(tmp, "wb") as f:
                            np.save(f, arr)
                    out.append(np.load(path, mmap_mode="r"))
            atomic_write_json(folder / "manifest.json",
                              {"format": FORMAT, "model": model.cfg.name, "clips": n, "views": views, "train": train,
                               "shape": list(out[0].shape), "source": clips.name if rows is None else desc})
    finally:
        model.train(was_training)
    return out


# ----------------------------------------------------------------------------- feature negatives

NEGATIVES_FORMAT = "kws-feature-negatives/1"
NEGATIVES_FILE = "windows.npy"  # float16 [M, W, D]: what the head reads, M windows
NEGATIVES_MANIFEST = "manifest.json"
MAX_NEGATIVE_WINDOWS = 2_000_000  # a bound on what one folder may ask the loader to map


def backbone_key(model: torch.nn.Module) -> str:
    """The frozen backbone's identity (class, frontend and weights): features of another one are
    other numbers, whatever their shape."""
    h = hashlib.sha256(json.dumps({"backbone": type(model.backbone).__name__,
                                   "frontend": model.cfg.frontend.to_dict()}, sort_keys=True, default=list).encode())
    for k, v in model.backbone.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def write_feature_negatives(folder: Path, windows: np.ndarray, model: torch.nn.Module, info: dict) -> Path:
    """Write a feature-negatives folder (the windows first, the manifest last: a folder counts
    only when both are there)."""
    folder.mkdir(parents=True, exist_ok=True)
    w = np.ascontiguousarray(windows, dtype=np.float16)
    with atomic_path(folder / NEGATIVES_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, w)
    atomic_write_json(folder / NEGATIVES_MANIFEST, {"format": NEGATIVES_FORMAT, "backbone": backbone_key(model),
                                                    "shape": list(w.shape), **info})
    return folder


def load_feature_negatives(spec: str, model: torch.nn.Module, row_shape: tuple[int, ...]) -> np.ndarray:
    """The windows of every folder in `spec` (comma-separated), checked against this model's
    backbone and the cached views' row shape; float16 [M, *row_shape]."""
    from kws.fsutil import read_json
    from training.state import RunFileError

    key = backbone_key(model)
    parts = []
    for name in (s.strip() for s in spec.split(",")):
        if not name:
            continue
        folder = Path(name)
        man_path, arr_path = folder / NEGATIVES_MANIFEST, folder / NEGATIVES_FILE
        if not man_path.is_file() or not arr_path.is_file():
            raise RunFileError(f"{folder}: not a feature-negatives folder (needs {NEGATIVES_FILE} and "
                               f"{NEGATIVES_MANIFEST}; python -m bench.mining writes them)")
        man = read_json(man_path, "feature-negatives manifest")
        if not isinstance(man, dict) or man.get("format") != NEGATIVES_FORMAT:
            raise RunFileError(f"{man_path}: not a {NEGATIVES_FORMAT} manifest")
        if man.get("backbone") != key:
            raise RunFileError(f"{folder}: its windows are another backbone's outputs (key {man.get('backbone')!r}, "
                               f"this model's {key!r}); write them again for this model")
        try:
            arr = np.load(arr_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise RunFileError(f"{arr_path}: unreadable ({e})") from None
        if arr.dtype != np.float16 or arr.ndim != 1 + len(row_shape) or tuple(arr.shape[1:]) != tuple(row_shape):
            raise RunFileError(f"{arr_path}: windows of {arr.dtype} {list(arr.shape)}, expected float16 "
                               f"[M, {', '.join(map(str, row_shape))}]")
        if not 0 < arr.shape[0] <= MAX_NEGATIVE_WINDOWS:
            raise RunFileError(f"{arr_path}: {arr.shape[0]} windows (expected 1 to {MAX_NEGATIVE_WINDOWS:,})")
        if not all(np.isfinite(arr[i:i + 65536]).all() for i in range(0, arr.shape[0], 65536)):
            raise RunFileError(f"{arr_path}: holds NaN or infinite values")
        parts.append(arr)
    if not parts:
        raise RunFileError(f"feature_negatives {spec!r}: no folder named")
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
