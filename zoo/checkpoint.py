"""Safetensors checkpoints that carry their own ModelConfig; resolving model references."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping

import torch

from kws import safejson
from kws.fsutil import atomic_path
from zoo import wquant
from zoo.meta import LEGACY_KEYS, CheckpointMeta
from zoo.model import KWSModel, ModelConfig, model_dir
from zoo.registry import DEFAULT_BACKBONE, is_model, model_entrypoint

FORMAT = "kws-zoo/1"
BEST, LAST = "best.safetensors", "last.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


def save_checkpoint(model: KWSModel, path: str | Path, meta: CheckpointMeta | dict | None = None,
                    half: bool = False, weight_bits: Mapping[str, int] | None = None) -> Path:
    """Write model weights + config atomically. `half` stores float tensors as fp16 (shipping).

    `weight_bits` {name: 8 or 4} stores those conv and linear weights quantized (zoo.wquant), for
    shipping a model whose fp16 file is over the size limit; `load_checkpoint` turns them back
    into floats (weight-only storage: the model still computes in float).

    `meta` is written through the one schema, zoo.meta.CheckpointMeta: a dict may use its field
    names (or the legacy names it reads), and a key it does not know is an error, not a silent
    extra that no reader looks at.
    """
    from safetensors.torch import save_file

    if isinstance(meta, dict):
        unknown = sorted(set(meta) - CheckpointMeta.field_names() - set(LEGACY_KEYS))
        if unknown:
            raise ValueError(f"{path}: checkpoint metadata keys {unknown} are not in zoo.meta.CheckpointMeta")
        meta = CheckpointMeta.from_dict(meta)

    model = getattr(model, "module", model)  # unwrap DDP
    installed = model.package_weights()
    bits = dict(weight_bits or {})
    state = model.state_dict()
    bad = sorted(k for k in bits if k not in state or not wquant.storable(state[k]))
    if bad:
        raise ValueError(f"{path}: weight_bits names {bad[:3]}, not conv or linear weights of {model.cfg.name}")
    sd = {}
    for k, v in state.items():
        v = v.detach().cpu()
        if k in installed and torch.equal(v, installed[k]):
            continue  # still exactly as the installed package has it: read from there when loading
        if k in bits:
            sd.update(wquant.encode(k, v, bits[k]))
            continue
        if half and v.is_floating_point():
            v = v.half()
        sd[k] = v.contiguous()
    metadata = {"format": FORMAT, "config": model.cfg.to_json(),
                "meta": json.dumps(meta.to_dict() if meta is not None else {}, default=str)}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=metadata)
    return Path(path)


def read_checkpoint(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict]:
    """(config, tensors, meta) of a checkpoint; CheckpointError for anything wrong with the file."""
    p = _checked_path(path)
    tensors: dict[str, torch.Tensor] = {}
    cfg, meta = _read(p, tensors)
    return cfg, tensors, meta


def model_name(path: str | Path) -> str:
    """The zoo model a checkpoint holds, from its header alone (no tensors read; CheckpointError when unreadable)."""
    return read_header(path)[0].name


def read_header(path: str | Path) -> tuple[ModelConfig, dict]:
    """(config, meta) of a checkpoint from its header alone: no tensor is read."""
    return _read(_checked_path(path), None)


def _checked_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    if p.suffix == ".onnx":
        raise CheckpointError(f"{p}: this is an ONNX model, not a zoo checkpoint; open it with an ort-* backend")
    if p.suffix != ".safetensors":
        raise CheckpointError(f"{p}: zoo checkpoints are .safetensors files (pickled checkpoints are never loaded)")
    return p


def _read(p: Path, tensors: dict[str, torch.Tensor] | None) -> tuple[ModelConfig, dict]:
    """The checked (config, meta) of `p`'s header; fills `tensors` too unless it is None."""
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            md = f.metadata() or {}
            if tensors is not None:
                tensors.update({k: f.get_tensor(k) for k in f.keys()})
    except Exception as e:
        raise CheckpointError(f"{p}: not a valid safetensors file ({str(e)[:300]})") from None
    if md.get("format") != FORMAT or "config" not in md:
        raise CheckpointError(f"{p}: safetensors file without kws-zoo metadata (not written by this project's trainer)")
    try:
        cfg = ModelConfig.from_json(md["config"])
    except ValueError as e:
        raise CheckpointError(f"{p}: {e}") from None
    try:
        meta = safejson.loads(md.get("meta", "{}"), "its 'meta' metadata")
    except ValueError as e:
        raise CheckpointError(f"{p}: {e}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p}: its 'meta' metadata must be a JSON object, got {type(meta).__name__}")
    return cfg, meta


def build_from_config(cfg: ModelConfig) -> KWSModel:
    return model_entrypoint(cfg.name)(labels=cfg.labels, frontend=cfg.frontend, **cfg.kwargs)


def load_checkpoint(path: str | Path) -> tuple[KWSModel, dict]:
    cfg, tensors, meta = read_checkpoint(path)
    try:
        model = build_from_config(cfg)
    except (TypeError, ValueError) as e:  # settings that pass the file checks but not the model's own
        raise CheckpointError(f"{path}: cannot build {cfg.name} from its config ({e})") from None
    ref = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(ref[k].shape)})" for k, v in tensors.items()
             if k in ref and v.shape != ref[k].shape]
    if wrong:
        raise CheckpointError(f"{path}: weights do not match {cfg.name}: {len(wrong)} tensors of the wrong shape, "
                              f"e.g. {'; '.join(wrong[:3])}")
    try:
        tensors = wquant.decode(Path(path), tensors, {k: v.shape for k, v in ref.items()})
    except wquant.WeightStorageError as e:
        raise CheckpointError(str(e)) from None
    ints = [k for k, v in tensors.items() if k in ref and ref[k].is_floating_point() and not v.is_floating_point()]
    if ints:  # an integer tensor for a float parameter, without its scales: its values would be wrong
        raise CheckpointError(f"{path}: {len(ints)} float weights are stored as integers without their scales, "
                              f"e.g. {ints[:3]}")
    tensors = {k: v.to(ref[k].dtype) if k in ref else v for k, v in tensors.items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # such a model answers NaN: refuse it here, naming the tensors
        raise CheckpointError(f"{path}: {len(bad)} tensors hold NaN or infinite values, e.g. {bad[:3]}")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k not in model.package_weights()]  # those stay as installed
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match {cfg.name} (missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]})")
    model.eval()
    return model, meta


def resolve_weights(ref: str | Path) -> Path:
    """A zoo name, a run folder, or a .safetensors file -> the checkpoint path."""
    p = Path(ref)
    if p.is_dir():
        for name in (BEST, LAST):
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{p}: run folder holds no {BEST} or {LAST}")
    if p.suffix in (".safetensors", ".onnx", ".pt", ".pth") or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"{p}: weights file not found")
        return p
    name = str(ref)
    if is_model(name):
        shipped = model_dir() / f"{name}.safetensors"
        if not shipped.is_file():
            raise FileNotFoundError(f"no shipped weights for {name!r} (looked for {shipped}); train it with "
                                    f"`python train.py --model {name}` and pass the run folder")
        return shipped
    model_entrypoint(name)  # raises the "unknown model" message
    raise AssertionError("unreachable")


def load_model(ref: str | Path) -> tuple[KWSModel, dict]:
    """Load a trained model from a zoo name (shipped weights), a run folder or a checkpoint file."""
    return load_checkpoint(resolve_weights(ref))


def shipped_models() -> list[str]:
    return sorted(p.stem for p in model_dir().glob("*.safetensors"))




def default_model() -> str:
    """The shipped model with the best cross-validated real-speech accuracy (12-class).

    What predict, live.py and the quick bench use when no model is named. Decided from the
    figures the shipped files carry (zoo/meta.py), so shipping better weights moves the default
    with no code change.
    """
    from zoo.meta import CheckpointMeta

    best, best_acc = DEFAULT_BACKBONE, -1.0  # before any shipped file carries a figure
    for name in shipped_models():
        try:
            acc = CheckpointMeta.from_dict(read_header(model_dir() / f"{name}.safetensors")[1]).accuracy
        except ValueError:
            continue
        value = float((acc.get("acc12") or {}).get("value", -1.0))
        if value > best_acc:
            best, best_acc = name, value
    return best


def untrained_checkpoint(name: str, folder: str | Path, seed: int = 0) -> Path:
    """A seeded random-init checkpoint of `name` in `folder` (made once, then reused).

    For timing, which does not depend on weight values; never for accuracy: its metadata says
    it saw no data, and the bench refuses to score it.
    """
    path = Path(folder) / f"{name}-untrained-seed{seed}.safetensors"
    if not path.is_file():
        torch.manual_seed(seed)
        save_checkpoint(model_entrypoint(name)().eval(), path, CheckpointMeta(training_data="none (random init)"))
    return path


def shipped_or_untrained(name: str, folder: str | Path,
                         make: Callable[[str, Path], Path] | None = None) -> tuple[str, str]:
    """(reference, what it is) for timing `name`: its shipped weights, else an untrained checkpoint.

    `make(name, folder)` builds the untrained one (default `untrained_checkpoint`); a check that
    compares top-1 answers passes its own, with logits spread so that top-1 means something.
    The description starts with "shipped" or "random init", which reports key on.
    """
    if name in shipped_models():
        return name, f"shipped weights zoo/weights/{name}.safetensors"
    path = (make or untrained_checkpoint)(name, Path(folder))
    return str(path), "random init (no shipped weights; timing does not depend on weight values)"
