"""One interface over every runtime a KWS model can run on.

    from backends import create_backend, list_backends
    be = create_backend("ort-cpu", "efficientnet_b0", threads=1)
    probs = be.predict(waves)          # float32 [B, 16000] -> float32 [B, N]

torch and onnxruntime are imported only by the backend module that uses them, so
`list_backends()` works (and says why) on a machine that lacks either.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from backends.base import (BACKENDS, DEFAULT_THREADS, Backend, BackendStatus, BackendUnavailable, InferenceError,
                           ModelFileError, as_batch)

__all__ = ["BACKENDS", "DEFAULT_THREADS", "Backend", "BackendStatus", "BackendUnavailable", "InferenceError",
           "ModelFileError", "as_batch", "backend_class", "create_backend", "list_backends"]

# name -> (module, class): resolved lazily so importing backends imports no runtime
_CLASSES: dict[str, tuple[str, str]] = {
    "torch-cpu": ("backends.torch_backend", "TorchCPUBackend"),
    "torch-cuda": ("backends.torch_backend", "TorchCUDABackend"),
    "ort-cpu": ("backends.ort", "OrtCPUBackend"),
    "ort-cuda": ("backends.ort", "OrtCUDABackend"),
    "ort-directml": ("backends.ort", "OrtDirectMLBackend"),
    "ort-int8": ("backends.ort", "OrtInt8Backend"),
}
assert tuple(_CLASSES) == BACKENDS


def backend_class(name: str) -> type:
    if name not in _CLASSES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, cls = _CLASSES[name]
    return getattr(importlib.import_module(module), cls)


def create_backend(name: str, model: str | Path, threads: int | None = None, **opts) -> Backend:
    """A ready backend. model: zoo name | run folder | .safetensors | .onnx.

    threads: intra-op threads (default DEFAULT_THREADS=1 for ORT, torch's own setting for torch).
    opts: device_id=0 (GPU backends), provider_options={...} (ORT), log=callable|None (exports).
    Raises BackendUnavailable (cannot run here: says what to install), ModelFileError (the model
    file is unusable for this backend), FileNotFoundError/ValueError (bad reference).
    """
    cls = backend_class(name)
    ok, why = cls.availability()
    if not ok:
        raise BackendUnavailable(f"{name}: {why}")
    return cls(model, threads=threads, **opts)


def list_backends() -> list[BackendStatus]:
    """Every backend with whether it can run here and, if not, why and what to do."""
    out = []
    for name in BACKENDS:
        try:
            ok, why = backend_class(name).availability()
        except Exception as e:  # a broken install must still yield a status line, not a crash
            ok, why = False, f"{type(e).__name__}: {e}"
        out.append(BackendStatus(name, ok, why))
    return out
