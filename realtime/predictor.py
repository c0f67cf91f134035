"""A model behind a backend, reduced to what the engine and the UI need.

Loading failures (unknown model, missing weights, corrupt file, unavailable backend) become a
:class:`ModelLoadError` whose message says what to do, for the UI and the console alike.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

import backends
from backends.registry import DEFAULT_BACKEND
from realtime.engine import PredictFn, StreamModel


class ModelLoadError(RuntimeError):
    """The model or backend cannot be used; the message is meant for the user."""


@dataclass(frozen=True)
class Predictor:
    predict: PredictFn  # float32 [B, 16000] -> probabilities [B, N]
    labels: tuple[str, ...]
    backend: str  # e.g. "ort-cpu"
    providers: tuple[str, ...]  # what actually runs it, e.g. ("CUDAExecutionProvider", ...)
    device: str  # "cpu", "cuda:0", ...
    model: str  # model name or file
    precision: str | None = None  # what the graph computes in ("int8", or "fp32" when int8 fell back)
    # a fresh stream model (the model's streaming form on the same backend) per call; None: full window only
    open_stream: Callable[[], StreamModel] | None = None
    stream_note: str = ""  # why there is no streaming form, when there is none
    thresholds: dict[str, float] | None = None  # calibrated per-word thresholds from the model's metadata
    thresholds_note: str = ""  # what they were calibrated for
    thresholds_fa_per_hour: float | None = None  # the false-accept rate `thresholds` were fitted for
    # the calibrated curve: (false accepts per hour, per-word thresholds), rate ascending (the sensitivity control)
    operating_points: tuple[tuple[float, dict[str, float]], ...] = ()
    # decision settings the thresholds were fitted at ({"patience", "ema_alpha"}): they do not carry to others
    calibrated_engine: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        prov = self.providers[0] if self.providers else "?"
        prec = f" · {self.precision}" if self.precision else ""
        return f"{self.backend} · {prov} · {self.device}{prec}"


def from_function(predict: PredictFn, labels: Sequence[str], name: str = "custom") -> Predictor:
    """Wrap a plain predict function (tests, experiments) as a Predictor."""
    return Predictor(predict, tuple(labels), name, ("python",), "cpu", name)


def available_backends() -> dict[str, str]:
    """name -> "" when available, else the reason it is not."""
    return {s.name: ("" if s.available else s.reason) for s in backends.list_backends()}


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _open(backend: str, model: str, threads: int, streaming: bool = True) -> Predictor:
    # exports made on first use of a checkpoint are reported on stderr: stdout carries the detections
    be = backends.create_backend(backend, model=model, threads=threads, log=_log_stderr)
    be.warmup()  # the first call allocates; keep it out of the latency figures

    def predict(waves: np.ndarray) -> np.ndarray:
        return be.predict(np.ascontiguousarray(waves, dtype=np.float32))

    calibration = _thresholds(be, model)
    open_stream, note = _stream_factory(model, backend, threads) if streaming else (None, "streaming off")
    return Predictor(predict, tuple(be.labels), be.name, tuple(be.providers), str(be.device), str(be.model_name),
                     be.precision, open_stream, note, **calibration)


def _thresholds(be: Any, model: str) -> dict[str, Any]:
    """The calibration a backend's model carries (checkpoint meta or ONNX metadata), as Predictor fields."""
    try:
        meta = be.model_meta()
        values = meta.word_thresholds()
        points = meta.operating_points()
        engine = meta.calibrated_engine()
        target = (meta.thresholds or {}).get("target_fa_per_hour")
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"{model}: its calibrated thresholds are unreadable ({e}); recalibrate it with "
                             f"`python -m bench calibrate --model {model} --input ROOM.wav`") from None
    ok = isinstance(target, (int, float)) and not isinstance(target, bool) and math.isfinite(target) and target > 0
    target = float(target) if ok else None  # only a label here: an odd value is not worth refusing the model
    return {"thresholds": values or None, "thresholds_note": meta.thresholds_line(), "thresholds_fa_per_hour": target,
            "operating_points": tuple(points), "calibrated_engine": engine}


def _stream_factory(model: str, backend: str, threads: int) -> tuple[Callable[[], StreamModel] | None, str]:
    """A factory of fresh stream models on `backend`, built (exported on first use) now; or None and why."""
    try:
        from backends.streaming import NoStreamingForm, StreamRunner, stream_step
    except ImportError as e:
        return None, f"streaming unavailable ({e})"
    if str(model).lower().endswith(".onnx"):
        return None, "an ONNX file carries only its own graph: the streaming form is exported from a checkpoint"
    try:
        step, spec, labels, name = stream_step(model, backend, threads, log=_log_stderr)
    except NoStreamingForm as e:
        return None, str(e)
    except Exception as e:  # the full-window path still works: say why streaming does not
        return None, f"streaming form unavailable: {type(e).__name__}: {str(e)[:200]}"
    return (lambda: StreamRunner(step, spec, labels, name)), ""


def load_predictor(model: str, backend: str = DEFAULT_BACKEND, threads: int = 1, *,
                   backend_is_default: bool = False, notify: Callable[[str], None] | None = None,
                   streaming: bool = True) -> Predictor:
    """Open `model` (zoo name, run folder, .safetensors or .onnx) with `backend`.

    An unavailable backend the user asked for is an error (explicit beats clever); only when
    the backend was the default do we fall back, and `notify` says so. `streaming`: also build
    the model's streaming form on the same backend (exported on first use), when it has one.
    """
    known = backends.backend_names()
    if backend != "auto" and backend not in known:
        raise ModelLoadError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(known)}")
    onnx = str(model).lower().endswith(".onnx")

    def can_run(b: str) -> bool:
        # checkpoint backends cannot run an .onnx file: offering them one can only fail, and that
        # failure ("torch-cpu runs PyTorch checkpoints") would replace the real one
        return not onnx or backends.backend_spec(b).runs_onnx_files

    if backend == "auto":
        status = available_backends()
        order = [b for b in backends.auto_order() if status.get(b) == "" and can_run(b)]
        if not order:
            raise ModelLoadError("no inference backend is available: " +
                                 "; ".join(f"{k}: {v}" for k, v in status.items()))
        candidates, backend_is_default = order, True
    else:
        fallbacks = [b for b in backends.default_fallbacks(backend) if can_run(b)]
        candidates = [backend] + (fallbacks if backend_is_default else [])
    first_reason = ""
    for i, name in enumerate(candidates):
        try:
            pred = _open(name, model, threads, streaming)
        except backends.BackendUnavailable as e:
            first_reason = first_reason or f"backend {name!r} is unavailable: {e}"
            if i + 1 < len(candidates):
                continue
            raise ModelLoadError(_unavailable_message(name, e)) from None
        except ModelLoadError:
            raise
        except Exception as e:  # a model that won't load: missing/corrupt weights, wrong format, ORT errors
            raise ModelLoadError(f"cannot load model {model!r} with backend {name!r}: {type(e).__name__}: {e}"
                                 + (f" (after {first_reason})" if first_reason else "")) from None
        if i > 0 and notify is not None:
            notify(f"{first_reason}; using {name} instead")
        return pred
    raise AssertionError("unreachable")


def _unavailable_message(name: str, e: BaseException) -> str:
    try:
        ok = [k for k, v in available_backends().items() if v == ""]
    except ModelLoadError:
        ok = []
    alt = f" Available here: {', '.join(ok)}." if ok else ""
    return f"backend {name!r} is unavailable: {e}.{alt}"
