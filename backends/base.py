"""The backend interface, its errors, and the input checks every backend shares.

No runtime is imported here: `list_backends()` and the error types must work on a machine
that lacks onnxruntime or a GPU build, so each runtime is imported only by the backend that
runs it, when it is built. (The frontend settings a backend reports are torch-free to name,
`kws.frontends` is imported for type checking only.)
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from backends.registry import BackendSpec
    from kws.frontends import AnyFrontendConfig
    from zoo.meta import CheckpointMeta

FeaturesFn = Callable[[np.ndarray], np.ndarray]  # log-mel features [B, C, M, F] -> probabilities [B, N]

# One intra-op thread is the live-use default: a 1 s window is scored every hop (tens of ms),
# one thread already runs EfficientNet-B0 in a few ms, and more threads mostly add jitter and
# steal cores from audio capture and the GUI. Batch jobs pass threads=N explicitly.
DEFAULT_THREADS = 1

# The longest one runtime call may take before it is abandoned (InferenceTimeout): a batch of 32
# clips through the largest zoo model takes a few seconds on one loaded core; a hostile graph could
# take hours. $KWS_INFERENCE_TIMEOUT_S overrides it; a backend's `timeout_s` attribute, per backend.
DEFAULT_TIMEOUT_S = 30.0
TIMEOUT_ENV = "KWS_INFERENCE_TIMEOUT_S"

T = TypeVar("T")


class BackendUnavailable(RuntimeError):
    """This backend cannot run here; the message says why and what to install or change."""


class ModelFileError(ValueError):
    """A model file that a backend must not run: not ONNX, no frontend metadata, wrong input kind."""


class InferenceError(RuntimeError):
    """The model computed no answer: NaN or infinite scores, outputs outside the contract, or a
    runtime failure. `rows`: the batch rows affected when only some are (else empty)."""

    def __init__(self, message: str, rows: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.rows = rows


class InferenceTimeout(InferenceError):
    """One runtime call ran past its deadline: the runtime was told to stop and the call abandoned."""


def inference_timeout(default: float = DEFAULT_TIMEOUT_S) -> float | None:
    """The per-call deadline in seconds: $KWS_INFERENCE_TIMEOUT_S when set (0 or less: none), else `default`."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    return value if value > 0 else None


def _settle(done: threading.Event, seconds: float = 2.0) -> None:
    """Wait a little for a terminated run to stop: a run that honours the flag stops at its next node,
    which gives its core back, and an interpreter that exits while ORT still runs aborts the process."""
    try:
        done.wait(seconds)
    except BaseException:  # noqa: BLE001 - a second Ctrl-C: stop waiting
        pass


def run_bounded(call: Callable[[], T], terminate: Callable[[], None], timeout_s: float | None, what: str) -> T:
    """`call()` in a worker thread, waited for at most `timeout_s` seconds.

    Past the deadline `terminate()` asks the runtime to stop (ONNX Runtime checks its
    RunOptions.terminate flag between nodes) and InferenceTimeout is raised; the worker is a
    daemon thread, so a call that ignores the flag cannot keep the process alive. The wait is
    interruptible: Ctrl-C terminates the call and propagates. A failure inside the runtime is an
    InferenceError naming `what` (a failing Reshape, an allocation it cannot make).
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["out"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            box["err"] = e
        finally:
            done.set()

    worker = threading.Thread(target=work, name="kws-inference", daemon=True)
    worker.start()
    try:
        finished = done.wait(timeout_s)
    except BaseException:  # KeyboardInterrupt, SystemExit: stop the runtime, then let it propagate
        terminate()
        _settle(done)
        raise
    if not finished:
        terminate()
        _settle(done)
        raise InferenceTimeout(f"{what}: inference did not finish within {timeout_s:g} s and was abandoned "
                               f"(the model is too slow for its input, or loops; ${TIMEOUT_ENV} sets the limit)")
    if "err" in box:
        e = box["err"]
        if isinstance(e, InferenceError):
            raise e
        raise InferenceError(f"{what}: the runtime failed on this input ({type(e).__name__}: "
                             f"{str(e).strip()[:300]})") from None
    return box["out"]


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str  # "ok: ..." details when available, else why not and what to do


@runtime_checkable
class Backend(Protocol):
    """waveforms float32 [B, clip_samples] at 16 kHz -> probabilities float32 [B, N].

    Everything a caller (prediction, the live app, the bench) uses is here, so none of them
    needs to ask a backend what it has.
    """

    spec: ClassVar[BackendSpec]  # its registry entry (backends.registry)
    name: str  # spec.name
    device: str  # "cpu", "cuda:0", "dml:0"
    providers: tuple[str, ...]  # what actually runs the graph (ORT providers, or "torch")
    labels: tuple[str, ...]  # output order
    frontend: AnyFrontendConfig  # the input contract the model was trained with
    model_name: str
    threads: int | None  # intra-op threads (None: the runtime's default)
    model_file: Path  # the file it runs: the ONNX graph, or the checkpoint
    precision: str  # what the loaded graph computes: "fp32", or "int8" (an int8 backend may serve fp32)
    quantization: dict[str, Any]  # the int8 selection's report carried by the model file; {} when none

    def warmup(self, batch_size: int = 1, runs: int = 3) -> None: ...

    def predict(self, waves: np.ndarray) -> np.ndarray: ...

    def model_meta(self) -> CheckpointMeta:
        """The checkpoint's metadata the model file carries (calibrated thresholds and figures)."""
        ...

    def features_predictor(self, model_ref: str | Path) -> tuple[FeaturesFn | None, str]:
        """The same network without its frontend, on the same runtime and device; (None, why) if none."""
        ...

    @classmethod
    def stream_step(cls, ref: str | Path, threads: int = 1, *, device_id: int = 0,
                    log: Callable[[str], None] | None = print) -> tuple[Any, Any, tuple[str, ...], str]:
        """(step, spec, labels, name) of `ref`'s streaming form on this backend (backends.streaming)."""
        ...


class BackendBase:
    """What every backend class shares: the input checks on the way in (as_batch) and the output
    check on the way out (check_output), around the runtime call each subclass implements (`_run`).
    No backend overrides `predict`, so no runtime can hand out a NaN probability."""

    frontend: AnyFrontendConfig
    model_name: str
    precision: str = "fp32"
    quantization: dict[str, Any] = {}  # never mutated: a backend with a report sets its own
    timeout_s: float | None = None  # per-call deadline (None: inference_timeout(); 0 or less: none)

    def call_timeout(self) -> float | None:
        """The deadline of one runtime call, in seconds (None: unbounded)."""
        t = inference_timeout() if self.timeout_s is None else self.timeout_s
        return t if t is not None and t > 0 else None

    def warmup(self, batch_size: int = 1, runs: int = 3) -> None:
        x = np.zeros((batch_size, self.frontend.clip_samples), np.float32)
        for _ in range(runs):
            self.predict(x)

    def predict(self, waves: np.ndarray) -> np.ndarray:
        x = as_batch(waves, self.frontend.clip_samples)
        return check_output(self._run(x), self._output_name(), len(self.labels), len(x))

    def _output_name(self) -> str:
        """What an InferenceError names: the model file when there is one, else the model."""
        return str(getattr(self, "model_file", "") or self.model_name)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """float32 [B, clip_samples] (checked, C-contiguous) -> probabilities [B, N] from the runtime."""
        raise NotImplementedError

    def features_predictor(self, model_ref: str | Path) -> tuple[FeaturesFn | None, str]:
        return None, f"{self.name} has no features-in entry point"

    @classmethod
    def stream_step(cls, ref: str | Path, threads: int = 1, *, device_id: int = 0,
                    log: Callable[[str], None] | None = print) -> tuple[Any, Any, tuple[str, ...], str]:
        from zoo.streaming import NoStreamingForm

        raise NoStreamingForm(f"{cls.name} has no streaming path")


PROB_TOLERANCE = 1e-3  # how far a row of probabilities may sum from 1 (float32 softmax: ~1e-6)


def check_output(probs: np.ndarray, model_name: str, n_labels: int | None = None,
                 batch: int | None = None) -> np.ndarray:
    """The model's probabilities, checked against the output contract, or InferenceError.

    The contract: float [batch, n_labels], finite, each value in [0, 1], each row summing to 1
    (within PROB_TOLERANCE). A wrong shape or type fails the whole call; rows that break it
    (NaN, a confidence of 1e30, negative scores, logits) are named in `rows`, so the other clips
    of a batch can still be answered. A NaN is not a low confidence: argmax of NaNs picks a label
    at random and the JSON of it is invalid, so it must stop here rather than reach a user.
    """
    if not isinstance(probs, np.ndarray):
        raise InferenceError(f"{model_name}: the model's output is {type(probs).__name__}, not an array")
    if not np.issubdtype(probs.dtype, np.floating):
        raise InferenceError(f"{model_name}: the model's output is {probs.dtype}, not float probabilities")
    want = f"[{batch if batch is not None else 'batch'}, {n_labels if n_labels is not None else 'labels'}]"
    if (probs.ndim != 2 or (batch is not None and probs.shape[0] != batch)
            or (n_labels is not None and probs.shape[1] != n_labels)):
        raise InferenceError(f"{model_name}: the model's output has shape {list(probs.shape)}, expected {want} "
                             f"(one score per label)")
    ok = np.isfinite(probs).all(axis=1)
    if not ok.all():
        rows = tuple(int(i) for i in np.flatnonzero(~ok))
        raise InferenceError(f"{model_name}: the model computed NaN or infinite scores for {len(rows)} of "
                             f"{len(ok)} clips (batch rows {list(rows[:8])}); the input is outside what it "
                             f"can score", rows)
    p64 = probs.astype(np.float64)
    ok = (p64 >= 0).all(axis=1) & (p64 <= 1 + 1e-6).all(axis=1) & (np.abs(p64.sum(axis=1) - 1) <= PROB_TOLERANCE)
    if not ok.all():
        rows = tuple(int(i) for i in np.flatnonzero(~ok))
        r = rows[0]
        raise InferenceError(f"{model_name}: the model's scores are not probabilities for {len(rows)} of {len(ok)} "
                             f"clips (batch rows {list(rows[:8])}; row {r}: min {p64[r].min():.3g}, max "
                             f"{p64[r].max():.3g}, sum {p64[r].sum():.6g}; expected values in [0, 1] summing to 1)",
                             rows)
    return probs


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
