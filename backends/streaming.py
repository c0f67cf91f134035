"""Streaming inference: a model's streaming form (zoo.streaming) run step by step, in PyTorch or ONNX Runtime.

    runner = open_stream("runs/my_run", "ort-cpu")     # or torch-cpu; None-free: raises if no form
    runner.feed(block)                                 # any number of samples, as they arrive
    p = runner.probs(end)                              # probabilities for the stream up to sample `end`
    runner.idle(end)                                   # no answer needed up to `end`: may skip work

The streaming ONNX graph (`export.py REF --streaming`) takes `audio` [1, k * chunk] and the
state tensors and returns `probs` [1, N] and the new state (`new_<name>`), so ONNX Runtime
needs nothing but the file: the spec (chunk, hop multiple, memory, state shapes) is in its
metadata (`stream`). Exports are checked against the PyTorch module on a long signal (decision
parity) and cached in exports/ by the weights' hash, beside the full-window export.
"""
from __future__ import annotations

import collections
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from backends.base import BackendUnavailable, ModelFileError, check_output
from backends.registry import DEFAULT_BACKEND
from zoo.streaming import NoStreamingForm, StreamSpec

if TYPE_CHECKING:
    import torch

    from zoo.model import KWSModel

STREAM_VERSION = "1"  # bump when the streaming graph recipe changes: invalidates cached streaming exports
STREAM_FILE = "model.stream.onnx"
AUDIO_INPUT, PROBS_OUTPUT = "audio", "probs"
PARITY_SECONDS = 12.0
# call sizes in chunks for the parity signal: single steps, the engine's usual few, and catch-ups
PARITY_PATTERN = (1, 1, 3, 2, 1, 7, 1, 40, 1, 2, 3, 1, 1, 64, 1)

StepFn = Callable[[np.ndarray, list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]


class StreamParityError(RuntimeError):
    """The streaming ONNX graph does not give the PyTorch streaming module's answers."""


# ----------------------------------------------------------------------------- the runner


class StreamRunner:
    """Drives a streaming step: whole chunks in, the newest probabilities out, nothing computed twice.

    Positions count samples fed since `reset()`. `probs(end)` runs the step over every chunk
    complete by `end` that it has not run yet, in one call, and returns the output after the
    last of them. `idle(end)` promises that no answer is needed up to `end`: the audio older
    than `end - memory_samples` is then dropped unprocessed, which changes no later answer (the
    state depends only on that much audio: zoo.streaming). A fresh state is warmed up on
    `memory_samples` of silence: the state of a stream that has been silent forever.
    """

    def __init__(self, step: StepFn, spec: StreamSpec, labels: Sequence[str], name: str = "stream") -> None:
        self.step, self.spec, self.labels, self.name = step, spec, tuple(labels), name
        if spec.labels and tuple(spec.labels) != self.labels:
            raise ValueError(f"{name}: the streaming spec's labels differ from the model's")
        self.steps = 0  # step calls since construction (cost figures)
        self.step_seconds = 0.0
        self.chunks_run = 0
        self.chunks_skipped = 0
        zeros = [np.zeros(shape, np.float32) for _, shape in spec.state]
        self._silence_probs, self._silence_state = self._call(np.zeros((1, spec.memory_samples), np.float32), zeros)
        self.reset()

    def reset(self) -> None:
        self._state = [s.copy() for s in self._silence_state]
        self._probs = self._silence_probs.copy()
        self._pending: collections.deque[np.ndarray] = collections.deque()
        self._pending_n = 0
        self.fed = 0  # samples fed since reset
        self.done = 0  # samples consumed (run or skipped), a multiple of the chunk

    def _call(self, audio: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        t0 = time.perf_counter()
        probs, new = self.step(audio, state)
        self.step_seconds += time.perf_counter() - t0
        self.steps += 1
        probs = check_output(np.asarray(probs, np.float32).reshape(1, -1), self.name)[0]
        if probs.size != len(self.labels):
            raise ModelFileError(f"{self.name}: the streaming step returned {probs.size} scores for "
                                 f"{len(self.labels)} labels")
        return probs, new

    def feed(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32).ravel()
        if x.size:
            self._pending.append(x)
            self._pending_n += x.size
            self.fed += x.size

    def feed_silence(self, n: int) -> None:
        """`n` samples of silence (a gap in the input): a long gap costs no more than `memory_samples`."""
        if n <= 0:
            return
        m, c = self.spec.memory_samples, self.spec.chunk_samples
        if n < 2 * m + c:
            self.feed(np.zeros(n, np.float32))
            return
        # at least `memory` samples of silence end before the new `done`: the state there is the silence state
        end = self.fed + n
        done = (end - m) // c * c
        self.chunks_skipped += (done - self.done) // c
        self._state, self._probs = [s.copy() for s in self._silence_state], self._silence_probs.copy()
        self._pending.clear()
        self._pending_n = 0
        self.done = self.fed = done
        self.feed(np.zeros(end - done, np.float32))

    def _take(self, n: int) -> np.ndarray:
        """The oldest `n` pending samples, removed from the queue."""
        out = np.empty(n, np.float32)
        got = 0
        while got < n:
            x = self._pending.popleft()
            k = min(n - got, x.size)
            out[got:got + k] = x[:k]
            if k < x.size:
                self._pending.appendleft(x[k:])
            got += k
        self._pending_n -= n
        return out

    def idle(self, end: int) -> None:
        """No output is needed at or before stream sample `end`."""
        c = self.spec.chunk_samples
        drop = (min(end, self.fed) - self.spec.memory_samples) // c * c - self.done
        if drop > 0:
            self._take(drop)
            self.done += drop
            self.chunks_skipped += drop // c

    def probs(self, end: int) -> np.ndarray:
        """Probabilities [N] for the stream up to sample `end` (after the last chunk complete by then)."""
        c = self.spec.chunk_samples
        if end % self.spec.hop_multiple:
            raise ValueError(f"{self.name}: answers are defined every {self.spec.hop_multiple} samples; "
                             f"{end} is not a multiple (the engine hop must be)")
        if end > self.fed:
            raise ValueError(f"{self.name}: asked for sample {end} but only {self.fed} were fed")
        target = end // c * c
        if target < self.done:
            raise ValueError(f"{self.name}: asked for sample {end}, before the {self.done} already consumed")
        self.idle(target)  # audio no answer from here on depends on
        if target > self.done:
            n = target - self.done
            probs, self._state = self._call(self._take(n)[None], self._state)
            self._probs = probs
            self.done = target
            self.chunks_run += n // c
        return self._probs


class ReferenceStream:
    """The stream-model interface over precomputed outputs: row i = the output after the first i chunks.

    How the non-streaming reference of a form (e.g. zoo.streaming.speech_embedding_reference,
    computed over a whole file at once) goes through the engine's decisions exactly as a runner.
    """

    def __init__(self, table: np.ndarray, spec: StreamSpec, labels: Sequence[str]) -> None:
        self.table, self.spec, self.labels = np.asarray(table, np.float32), spec, tuple(labels)
        self.fed = 0

    def feed(self, x: np.ndarray) -> None:
        self.fed += int(np.asarray(x).size)

    def feed_silence(self, n: int) -> None:
        raise ValueError("a reference table covers one file: it cannot take a gap")

    def idle(self, end: int) -> None:
        pass

    def probs(self, end: int) -> np.ndarray:
        if end % self.spec.hop_multiple:
            raise ValueError(f"answers are defined every {self.spec.hop_multiple} samples, not at {end}")
        return self.table[end // self.spec.chunk_samples]


# ----------------------------------------------------------------------------- steps


class TorchStep:
    """The streaming module in PyTorch (eager), on the CPU or a CUDA device."""

    def __init__(self, module: "torch.nn.Module", device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.module = module.to(device).eval()
        self.device = device

    def __call__(self, audio: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        torch = self.torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(audio).to(self.device),
                              *(torch.from_numpy(s).to(self.device) for s in state))
        return out[0].float().cpu().numpy(), [t.cpu().numpy() for t in out[1:]]


class OrtStep:
    """The streaming ONNX graph in one ONNX Runtime session with an explicit provider."""

    def __init__(self, path: str | Path, provider: str = "CPUExecutionProvider", threads: int = 1,
                 provider_options: dict | None = None) -> None:
        import onnxruntime as ort

        from backends.onnxgraph import session_options

        so = session_options(threads)
        self.path = Path(path)
        if provider not in ort.get_available_providers():
            raise BackendUnavailable(f"{provider} is not in this onnxruntime build")
        providers = [(provider, provider_options)] if provider_options else [provider]
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:
            raise ModelFileError(f"{path}: onnxruntime cannot load this streaming model: {str(e)[:300]}") from None
        got = self.session.get_providers()
        if not got or got[0] != provider:
            raise BackendUnavailable(f"asked for {provider} but the session runs on {got[0] if got else 'nothing'}")
        self.providers = tuple(got)
        self.state_names = [i.name for i in self.session.get_inputs()[1:]]

    def __call__(self, audio: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        from backends.base import inference_timeout, run_bounded
        from backends.onnxgraph import run_options

        feeds = {AUDIO_INPUT: audio, **dict(zip(self.state_names, state))}
        ro = run_options()
        out = run_bounded(lambda: self.session.run(None, feeds, ro), lambda: setattr(ro, "terminate", True),
                          inference_timeout(), str(self.path))
        return out[0], out[1:]


# ----------------------------------------------------------------------------- forms and export


def streaming_form(model: "KWSModel") -> tuple["torch.nn.Module", StreamSpec]:
    """(streaming module, spec) of `model`, with the export graph's frontend arithmetic and folded heads."""
    from backends.export import prepare_for_export
    from zoo.streaming import stream_module

    mod = stream_module(prepare_for_export(model))
    return mod, mod.spec()


def parity_signal(seconds: float = PARITY_SECONDS, seed: int = 0) -> tuple[np.ndarray, str]:
    """Real clips laid end to end with quiet gaps over noise (synthetic speech-like ones without the data)."""
    from backends.clips import get_clips
    from kws.audio import CLIP_SAMPLES, SAMPLE_RATE

    n = int(seconds * SAMPLE_RATE)
    clips = get_clips(max(1, int(seconds / 1.5)), seed=seed)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 3e-3).astype(np.float32)
    pos = SAMPLE_RATE // 2
    for c in clips.waves:
        if pos + CLIP_SAMPLES > n:
            break
        x[pos:pos + CLIP_SAMPLES] += c
        pos += CLIP_SAMPLES + int(rng.integers(SAMPLE_RATE // 10, SAMPLE_RATE // 2))
    return x, clips.source


def run_pattern(step: StepFn, spec: StreamSpec, labels: Sequence[str], wave: np.ndarray,
                pattern: Sequence[int] = PARITY_PATTERN) -> np.ndarray:
    """Probabilities after each call, feeding `wave` in calls of `pattern` chunks (cycled)."""
    runner = StreamRunner(step, spec, labels)
    c = spec.chunk_samples
    out, pos, i = [], 0, 0
    while pos + c <= len(wave):
        k = min(pattern[i % len(pattern)], (len(wave) - pos) // c)
        runner.feed(wave[pos:pos + k * c])
        pos += k * c
        out.append(runner.probs(pos).copy())
        i += 1
    return np.stack(out)


@dataclass(frozen=True)
class StreamParity:
    signal: str
    calls: int
    max_abs_diff: float
    top1_agreement: float

    def line(self) -> str:
        return (f"streaming parity vs the PyTorch streaming module over {self.calls} calls ({self.signal}): "
                f"top-1 agreement {self.top1_agreement:.2%}, max |dprob| {self.max_abs_diff:.2e}")


def export_streaming(model: "KWSModel", path: str | Path, *, checkpoint_meta: dict | None = None,
                     source: str | None = None, opset: int | None = None, parity: bool = True,
                     log: Callable[[str], None] | None = print) -> StreamParity | None:
    """Write the streaming ONNX graph of `model` to `path` (atomically, with its parity record)."""
    import io
    import warnings

    import onnx
    import torch

    from backends.export import (DEFAULT_OPSET, build_metadata, finalize, ort_basic_optimize, parity_passed,
                                 reducemean_to_gap, set_parity)
    from kws.metrics import top1_agreement_probs
    from kws.fsutil import atomic_path

    mod, spec = streaming_form(model)
    names = [n for n, _ in spec.state]
    example = (torch.zeros(1, 3 * spec.chunk_samples), *(torch.zeros(s) for _, s in spec.state))
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python ints
        torch.onnx.export(mod, example, buf, input_names=[AUDIO_INPUT, *names],
                          output_names=[PROBS_OUTPUT, *(f"new_{n}" for n in names)],
                          dynamic_axes={AUDIO_INPUT: {1: "samples"}}, opset_version=opset or DEFAULT_OPSET,
                          do_constant_folding=True, dynamo=False)
    graph = onnx.load_from_string(buf.getvalue())
    reducemean_to_gap(graph)  # the full-window export's rewrite: ORT keeps SE blocks in its blocked layout
    graph = ort_basic_optimize(graph)
    props = build_metadata(model, "stream", opset or DEFAULT_OPSET, checkpoint_meta, source)
    props.update({"input_name": AUDIO_INPUT, "stream": json.dumps(spec.to_dict()), "stream_version": STREAM_VERSION,
                  "output": f"softmax probabilities [1, num_labels] after the last whole chunk, and the new state "
                            f"(new_<state>); audio [1, k * {spec.chunk_samples}] float32 in [-1, 1)"})
    graph = finalize(graph, props)
    report = None
    with atomic_path(path) as tmp:
        tmp.write_bytes(graph.SerializeToString())
        if parity:
            wave, what = parity_signal()
            ref = run_pattern(TorchStep(mod), spec, model.labels, wave)
            got = run_pattern(OrtStep(tmp), spec, model.labels, wave)
            report = StreamParity(what, len(ref), float(np.abs(ref - got).max()), top1_agreement_probs(ref, got))
            if log:
                log(f"{Path(path).name}: {report.line()}")
            if report.top1_agreement < 1.0 or report.max_abs_diff > 1e-3:
                raise StreamParityError(f"{path}: {report.line()}; the export was not written")
            set_parity(graph, {**asdict(report), "passed": True})
            tmp.write_bytes(graph.SerializeToString())
            if not parity_passed({m.key: m.value for m in graph.metadata_props}):
                raise AssertionError("internal: parity record not written")
    return report


def read_stream_info(path: str | Path):
    """(ModelInfo, StreamSpec) of a streaming ONNX file; ModelFileError when it is not one."""
    from backends.meta import read_onnx_info

    info = read_onnx_info(path)
    if info.input_kind != "stream" or "stream" not in info.props:
        raise ModelFileError(f"{path}: not a streaming export (input kind {info.input_kind!r}); make one with "
                             f"`python export.py REF --streaming`")
    try:
        spec = StreamSpec.from_dict(info.json("stream"))
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: unreadable streaming metadata ({e})") from None
    if spec.labels and tuple(spec.labels) != tuple(info.labels):
        raise ModelFileError(f"{path}: its streaming metadata names other labels than the model's")
    return info, spec


def _stream_cached(path: Path) -> bool:
    from backends.export import parity_passed

    if not path.is_file():
        return False
    try:
        info, _ = read_stream_info(path)
    except (ModelFileError, OSError):
        return False
    return info.props.get("stream_version") == STREAM_VERSION and parity_passed(info.props)


def resolve_streaming(ref: str | Path, log: Callable[[str], None] | None = print) -> Path:
    """A zoo name, run folder or checkpoint -> its streaming ONNX export, made once and cached in exports/."""
    from backends.export import exports_dir
    from kws.fsutil import sha256_of
    from kws.fsutil import file_lock, sweep_temps, temp_files
    from zoo import load_checkpoint, resolve_weights
    from zoo.checkpoint import model_name

    if Path(ref).suffix == ".onnx":
        read_stream_info(ref)  # a streaming export is used as is; any other ONNX file is refused, with the fix
        return Path(ref)
    weights = resolve_weights(ref)
    if weights.suffix != ".safetensors":
        raise ModelFileError(f"{weights}: a streaming export is made from a zoo checkpoint (.safetensors)")
    name = model_name(weights)
    folder = exports_dir() / f"{name}-{sha256_of(weights)[:16]}-s{STREAM_VERSION}"
    out = folder / STREAM_FILE
    if _stream_cached(out):
        return out
    with file_lock(folder / ".lock", what="this streaming export cache entry"):
        sweep_temps(temp_files(folder))
        if not _stream_cached(out):
            model, meta = load_checkpoint(weights)
            if log:
                log(f"exporting the streaming form of {weights} -> {out}")
            export_streaming(model, out, checkpoint_meta=meta, source=str(weights), log=log)
    return out


def stream_step(ref: str | Path, backend: str = DEFAULT_BACKEND, threads: int = 1, *, device_id: int = 0,
                log: Callable[[str], None] | None = print) -> tuple[StepFn, StreamSpec, tuple[str, ...], str]:
    """(step, spec, labels, name) of `ref`'s streaming form on `backend`; the step is stateless and can
    serve any number of runners. Each backend class builds its own (`stream_step`): ONNX ones run
    the streaming export, checkpoint ones the torch module. Raises NoStreamingForm when there is none."""
    from backends.registry import backend_spec

    return backend_spec(backend).cls.stream_step(ref, threads, device_id=device_id, log=log)


def open_stream(ref: str | Path, backend: str = DEFAULT_BACKEND, threads: int = 1, *, device_id: int = 0,
                log: Callable[[str], None] | None = print) -> StreamRunner:
    """A fresh StreamRunner of `ref` on `backend` (ort-* run the streaming ONNX export, torch-* the module)."""
    step, spec, labels, name = stream_step(ref, backend, threads, device_id=device_id, log=log)
    return StreamRunner(step, spec, labels, name)


__all__ = ["NoStreamingForm", "OrtStep", "ReferenceStream", "STREAM_VERSION", "StreamParityError", "StreamRunner",
           "TorchStep", "export_streaming", "open_stream", "read_stream_info", "resolve_streaming", "stream_step",
           "streaming_form"]
