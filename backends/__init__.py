"""One interface over every runtime a KWS model can run on.

    from backends import create_backend, list_backends
    be = create_backend("ort-cpu", "efficientnet_b0", threads=1)
    probs = be.predict(waves)          # float32 [B, 16000] -> float32 [B, N]

Each backend registers itself (backends.registry) in its own module, imported below; adding
one is a new file and one import line. onnxruntime and torch are imported only when a
backend that uses them is built or asked whether it can run, so `list_backends()` works (and
says why) on a machine that lacks either.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from backends.base import (DEFAULT_THREADS, Backend, BackendStatus, BackendUnavailable, InferenceError,
                           InferenceTimeout, ModelFileError, as_batch)
from backends.registry import (DEFAULT_BACKEND, BackendSpec, auto_order, backend_names, backend_spec, bench_order,
                               default_fallbacks, register_backend)

from backends import torch_backend  # noqa: F401,E402  (registers torch-cpu, torch-cuda)
from backends import ort  # noqa: F401,E402  (registers ort-cpu, ort-cuda, ort-directml, ort-int8)

__all__ = ["DEFAULT_BACKEND", "DEFAULT_THREADS", "Backend", "BackendSpec", "BackendStatus", "BackendUnavailable",
           "InferenceError", "InferenceTimeout", "ModelFileError", "as_batch", "auto_order", "backend_class",
           "backend_names", "backend_spec", "bench_order", "create_backend", "default_fallbacks", "list_backends", "register_backend"]


def backend_class(name: str) -> type:
    return backend_spec(name).cls


def create_backend(name: str, model: str | Path, threads: int | None = None, *,
                   log: Callable[[str], None] | None = print, **opts) -> Backend:
    """A ready backend. model: zoo name | run folder | .safetensors | .onnx.

    threads: intra-op threads (default DEFAULT_THREADS=1 for ORT, torch's own setting for torch).
    log: where an ONNX backend reports the export it makes on first use of a checkpoint (None:
    quiet); checkpoint backends export nothing. opts: device_id=0 (GPU backends),
    provider_options={...} (ORT). Raises BackendUnavailable (cannot run here: says what to
    install), ModelFileError (the model file is unusable for this backend),
    FileNotFoundError/ValueError (bad reference).
    """
    spec = backend_spec(name)
    ok, why = spec.cls.availability()
    if not ok:
        raise BackendUnavailable(f"{name}: {why}")
    if spec.artifact == "onnx":
        opts["log"] = log
    return spec.cls(model, threads=threads, **opts)


def list_backends() -> list[BackendStatus]:
    """Every backend with whether it can run here and, if not, why and what to do."""
    out = []
    for name in backend_names():
        try:
            ok, why = backend_class(name).availability()
        except Exception as e:  # a broken install must still yield a status line, not a crash
            ok, why = False, f"{type(e).__name__}: {e}"
        out.append(BackendStatus(name, ok, why))
    return out
