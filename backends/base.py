"""The backend interface, its errors, and the input checks every backend shares.

No torch or onnxruntime import here: `list_backends()` and the error types must work on a
machine that has neither, so each runtime is imported only by the module that runs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from kws.frontends import AnyFrontendConfig

BACKENDS: tuple[str, ...] = ("torch-cpu", "torch-cuda", "ort-cpu", "ort-cuda", "ort-directml", "ort-int8")

# One intra-op thread is the live-use default: a 1 s window is scored every hop (tens of ms),
# one thread already runs EfficientNet-B0 in a few ms, and more threads mostly add jitter and
# steal cores from audio capture and the GUI. Batch jobs pass threads=N explicitly.
DEFAULT_THREADS = 1


class BackendUnavailable(RuntimeError):
    """This backend cannot run here; the message says why and what to install or change."""


class ModelFileError(ValueError):
    """A model file that a backend must not run: not ONNX, no frontend metadata, wrong input kind."""


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str  # "ok: ..." details when available, else why not and what to do


@runtime_checkable
class Backend(Protocol):
    """waveforms float32 [B, clip_samples] at 16 kHz -> probabilities float32 [B, N]."""

    name: str  # one of BACKENDS
    device: str  # "cpu", "cuda:0", "dml:0"
    providers: tuple[str, ...]  # what actually runs the graph (ORT providers, or "torch")
    labels: tuple[str, ...]  # output order
    frontend: AnyFrontendConfig  # the input contract the model was trained with
    model_name: str
    threads: int | None  # intra-op threads (None: the runtime's default)

    def warmup(self, batch_size: int = 1, runs: int = 3) -> None: ...

    def predict(self, waves: np.ndarray) -> np.ndarray: ...


def as_batch(waves: np.ndarray, clip_samples: int) -> np.ndarray:
    """[T] or [B, T] -> C-contiguous float32 [B, T]; refuses the wrong clip length.

    Backends never pad or trim silently: a caller that passes 0.5 s clips has a bug that a
    quietly padded prediction would hide. kws.audio.fit_length is the explicit way.
    """
    x = np.asarray(waves)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"expected waveforms [batch, {clip_samples}], got shape {x.shape}")
    if x.shape[1] != clip_samples:
        raise ValueError(f"expected {clip_samples} samples per clip, got {x.shape[1]} "
                         f"(use kws.audio.fit_length to pad or trim)")
    if x.shape[0] == 0:
        raise ValueError("empty batch")
    return np.ascontiguousarray(x, dtype=np.float32)
