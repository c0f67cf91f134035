"""Resumable training state without pickle: one safetensors file, tensors + JSON metadata.

`train_state.safetensors` holds the model, the optimiser's per-parameter tensors, and every
RNG state (as uint8 tensors); its metadata holds the JSON scalars (epoch, best metric,
early-stop counter, optimiser param groups, scheduler, grad scaler, numpy generator). One
file, written atomically, so a kill can never leave the model and the optimiser from
different epochs.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kws.fsutil import atomic_path

STATE_FILE = "train_state.safetensors"
FORMAT = "kws-train-state/1"


class RunFileError(ValueError):
    """A file of a run folder that cannot be used (cut short, garbled, of another run): names it and the problem."""


def _u8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.uint8).copy())


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global RNGs: python `random`, numpy's legacy global, torch CPU and every CUDA device."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {
        "rng.python": _u8(np.asarray(mt, dtype=np.uint32)),
        "rng.numpy": _u8(np.asarray(keys, dtype=np.uint32)),
        "rng.torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    scalars = {"python": [version, gauss], "numpy": [kind, int(pos), int(has_gauss), float(cached)]}
    return tensors, scalars


def restore_rng(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    version, gauss = scalars["python"]
    mt = tuple(int(v) for v in tensors["rng.python"].numpy().view(np.uint32))
    random.setstate((version, mt, gauss))
    kind, pos, has_gauss, cached = scalars["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().view(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        # A run resumed on fewer (or other) GPUs restores what it can.
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


def _split_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for pid, extra in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(extra)
    # JSON turned tuples (AdamW's betas) into lists; give them back their type.
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_state(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, scaler: torch.amp.GradScaler, augment_state: tuple[torch.Tensor, dict],
               progress: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_t, opt_meta = _split_optimizer(optimizer.state_dict())
    rng_t, rng_meta = capture_rng()
    tensors.update(opt_t)
    tensors.update(rng_t)
    tensors["rng.augment"] = augment_state[0]
    meta = {
        "progress": progress,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_meta,
        "augment_numpy": augment_state[1],
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "state": json.dumps(meta)})


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no training state to resume from (was the run killed before its first epoch ended?)")
    try:
        with safe_open(str(p), framework="pt") as f:
            md = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if md.get("format") == FORMAT else {}
    except Exception as e:  # SafetensorError: cut short, garbled header
        raise RunFileError(f"{p}: unreadable training state, cut short or corrupt ({str(e)[:200]})") from None
    if md.get("format") != FORMAT:
        raise RunFileError(f"{p}: not a {FORMAT} training-state file")
    try:
        meta = json.loads(md["state"])
        if not isinstance(meta, dict) or not isinstance(meta.get("progress"), dict):
            raise ValueError("no progress record")
    except (KeyError, ValueError) as e:
        raise RunFileError(f"{p}: training state without a readable progress record ({e})") from None
    return tensors, meta


def apply_state(tensors: dict[str, torch.Tensor], meta: dict, *, model: torch.nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
                augmenter: Any) -> dict[str, Any]:
    """Put everything back where it was; returns the `progress` dict (epoch, best, counters).

    A state that does not fit (another model's, a hand-edited one) is a RunFileError; the
    caller names the file."""
    try:
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
        scheduler.load_state_dict(meta["scheduler"])
        if meta["scaler"]:
            scaler.load_state_dict(meta["scaler"])
        augmenter.load_state(tensors["rng.augment"], meta["augment_numpy"])
        restore_rng(tensors, meta["rng"])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise RunFileError(f"does not fit this run's model and optimiser ({type(e).__name__}: {first})") from None
    return meta["progress"]
