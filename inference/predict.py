"""Predict the keyword in audio files with any backend.

    from inference import predict_audio, predict_files
    label, confidence = predict_audio("yes.wav")                     # the default model on ort-cpu
    for p in predict_files(paths, model="runs/x", backend="ort-int8"):
        print(p.path, p.label, p.confidence)

Files of any sample rate, length and channel count (mono/stereo) go through kws.audio:
resampled to 16 kHz and cut (centred) or zero-padded to one 1 s clip. Loaded backends are
cached per (backend, model, threads), so repeated calls do not re-export or re-load.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from backends.registry import DEFAULT_BACKEND
from kws.audio import AudioError, load_clip
from zoo.checkpoint import default_model


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str | None  # None when the file could not be read (see error)
    confidence: float  # probability of `label`
    top: tuple[tuple[str, float], ...] = ()  # the best few (label, probability), best first
    error: str | None = None


@functools.lru_cache(maxsize=8)
def get_backend(model: str, backend: str = DEFAULT_BACKEND, threads: int | None = None):
    """A loaded backend, cached: the first call may export/quantize (minutes for int8), later calls are free."""
    from backends import create_backend

    return create_backend(backend, model, threads=threads, log=None)


def predict_audio(path: str | Path, model: str | Path | None = None, backend: str = DEFAULT_BACKEND,
                  threads: int | None = None) -> tuple[str, float]:
    """(label, confidence) of one file; AudioError names the file when it cannot be read.
    model None: the shipped model with the best cross-validated real-speech accuracy."""
    p = predict_files([path], model=model, backend=backend, threads=threads, errors="raise")[0]
    assert p.label is not None
    return p.label, p.confidence


def predict_files(paths: Iterable[str | Path], model: str | Path | None = None, backend: str = DEFAULT_BACKEND,
                  batch_size: int = 32, threads: int | None = None, errors: str = "raise",
                  top_k: int = 3, timeout_s: float | None = None) -> list[Prediction]:
    """Predictions for many files, in order, `batch_size` clips per backend call.

    errors="raise": the first unreadable file raises its AudioError (which names it), and a
    clip the model scores as NaN/inf raises backends.InferenceError;
    errors="report": either becomes a Prediction with label None and the error message.
    timeout_s: the deadline of one backend call (default: backends.base.inference_timeout(), 30 s
    or $KWS_INFERENCE_TIMEOUT_S); a call past it is abandoned with backends.InferenceTimeout.
    """
    from backends import InferenceError

    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = [str(p) for p in paths]
    be = get_backend(str(model or default_model()), backend, threads)
    if timeout_s is not None:
        be.timeout_s = float(timeout_s)
    results: list[Prediction | None] = [None] * len(paths)
    for start in range(0, len(paths), batch_size):
        chunk = range(start, min(start + batch_size, len(paths)))
        waves, idx = [], []
        for i in chunk:
            try:
                waves.append(load_clip(paths[i], length=be.frontend.clip_samples))
                idx.append(i)
            except AudioError as e:
                if errors == "raise":
                    raise
                results[i] = Prediction(paths[i], None, 0.0, (), str(e))
        if waves:
            try:
                probs = be.predict(np.stack(waves))
                why = ""
            except InferenceError as e:
                if errors == "raise":
                    if not e.rows:  # the whole call failed (a timeout, a runtime error): its message names the model
                        raise
                    raise type(e)(f"{', '.join(paths[idx[r]] for r in e.rows)}: {e}", e.rows) from None
                # rows to blame (NaN, not probabilities): the others are scored again without them; none
                # (a timeout, a runtime failure, a wrong shape): every clip of the call gets the error
                probs, why = (_rescore(be, waves, e.rows) if e.rows else [None] * len(waves)), str(e)
            for i, pr in zip(idx, probs):
                results[i] = (_prediction(paths[i], pr, be.labels, top_k) if pr is not None else
                              Prediction(paths[i], None, 0.0, (), f"{paths[i]}: {why}"))
    return [r for r in results if r is not None]


def _rescore(be, waves: list[np.ndarray], bad: Sequence[int]) -> list[np.ndarray | None]:
    """The batch without its non-finite rows (None in their place): rows are independent clips."""
    bad_set = set(bad)
    good = [j for j in range(len(waves)) if j not in bad_set]
    probs: list[np.ndarray | None] = [None] * len(waves)
    if good:
        for j, pr in zip(good, be.predict(np.stack([waves[j] for j in good]))):
            probs[j] = pr
    return probs


def _prediction(path: str, probs: np.ndarray, labels: Sequence[str], top_k: int) -> Prediction:
    order = np.argsort(-probs)[:max(1, top_k)]
    top = tuple((labels[j], float(probs[j])) for j in order)
    return Prediction(path, top[0][0], top[0][1], top)


def format_table(preds: Sequence[Prediction]) -> str:
    """A plain-text table: file, label, confidence, runner-up (or the error)."""
    rows = [("file", "label", "confidence", "next best")]
    for p in preds:
        if p.error:
            rows.append((p.path, "ERROR", "", p.error))
        else:
            nxt = ", ".join(f"{lab} {pr:.2f}" for lab, pr in p.top[1:])
            rows.append((p.path, p.label or "", f"{p.confidence:.3f}", nxt))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip() for r in rows]
    lines.insert(1, "-" * max(len(s) for s in lines))
    return "\n".join(lines)
