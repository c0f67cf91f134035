"""Streaming inference: every streaming form against its non-streaming reference, as kws_streaming does.

- speech embedding: the live engine on its streaming runner makes the same decisions on a long
  file as the reference computed over the whole file at once (zoo.streaming.speech_embedding_reference);
- log-mel models: the streaming path makes the same decisions as the full-window engine at the same hop;
- the streaming ONNX exports (`export.py --streaming`) make the same decisions again, on ONNX Runtime;
- the runner's shortcuts (VAD-closed audio dropped, long gaps) change no answer.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import zoo
from backends.clips import get_clips
from backends.streaming import (OrtStep, ReferenceStream, StreamRunner, TorchStep, export_streaming,
                                read_stream_info, streaming_form)
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE
from realtime.engine import DetectionEngine, EngineConfig, EngineError, run_offline
from zoo.streaming import StreamSpec, speech_embedding_reference


def long_file(seconds: float, seed: int = 0, gap_s: float = 5.0) -> np.ndarray:
    """Speech clips (real when ../shared/data is there) over quiet noise, with one long silent gap."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    x = (rng.standard_normal(n) * 2e-3).astype(np.float32)
    clips = get_clips(int(seconds / 1.6), seed=seed).waves
    pos, gap_at = SAMPLE_RATE, n // 2
    for c in clips:
        if gap_at <= pos < gap_at + gap_s * SAMPLE_RATE:
            x[pos:int(pos + gap_s * SAMPLE_RATE)] *= 0.01  # the VAD closes: the runner may skip audio
            pos += int(gap_s * SAMPLE_RATE)
        if pos + CLIP_SAMPLES > n:
            break
        x[pos:pos + CLIP_SAMPLES] += c
        pos += CLIP_SAMPLES + int(rng.integers(SAMPLE_RATE // 8, SAMPLE_RATE // 2))
    return x


def threshold_between(scores: np.ndarray, q: float = 0.9) -> float:
    """A threshold near the q-quantile that no score is close to (a decision there cannot flip on rounding)."""
    v = np.unique(np.round(scores.astype(np.float64), 6))
    i = int(np.clip(np.searchsorted(v, np.quantile(v, q)), 1, len(v) - 1))
    gaps = v[i:] - v[i - 1:-1]
    j = i + int(np.argmax(gaps[:20]))
    return float((v[j] + v[j - 1]) / 2)


def live_decisions(step, spec, labels, wave: np.ndarray, cfg: EngineConfig, block: int = 700):
    """Detections and per-hop smoothed scores of the threaded live engine on a streaming runner."""
    runner = StreamRunner(step, spec, labels)
    eng = DetectionEngine(None, labels, cfg, stream=runner).start()
    for i in range(0, len(wave), block):
        eng.feed(wave[i:i + block], wait=True)
    eng.end_of_stream()
    assert eng.join(60) and eng.error is None
    out = eng.poll(None)
    return eng.poll_detections(), np.stack([d.smoothed for d in out]), runner


def key(dets) -> list[tuple[str, int]]:
    return [(d.label, d.hop) for d in dets]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as the live engine runs: small convolutions on a shared machine spin otherwise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def logmel_model(seed: int):
    """The shipped DS-CNN when the checkout has it (trained: its answers depend on the audio), else a seeded one."""
    try:
        return zoo.load_model("dscnn")[0]
    except FileNotFoundError:
        torch.manual_seed(seed)
        return zoo.create_model("dscnn").eval()


@pytest.fixture(scope="module")
def speech_model():
    torch.manual_seed(0)
    return zoo.create_model("speech_embedding_mlp").eval()  # the pretrained embedding, a seeded random head


def test_speech_embedding_stream_equals_its_reference_on_a_long_file(speech_model, tmp_path):
    model = speech_model
    mod, spec = streaming_form(model)
    wave = long_file(40.0)
    ref = speech_embedding_reference(model, wave)
    cfg0 = EngineConfig(cooldown_s=0.3, max_pending_decisions=10_000)
    _, trace = run_offline(None, model.labels, wave, cfg0, trace=True, stream=ReferenceStream(ref, spec, model.labels))
    words = trace.smoothed[:, :-1][trace.voiced]  # every class but _silence_
    cfg = dataclasses.replace(cfg0, threshold=threshold_between(words.max(1)))
    ref_dets, ref_trace = run_offline(None, model.labels, wave, cfg, trace=True,
                                      stream=ReferenceStream(ref, spec, model.labels))
    assert len(ref_dets) >= 3 and ref_trace.voiced.mean() < 0.95  # a test that can fail: words fire, VAD closes
    dets, smoothed, runner = live_decisions(TorchStep(mod), spec, model.labels, wave, cfg)
    assert key(dets) == key(ref_dets)
    np.testing.assert_allclose(smoothed, ref_trace.smoothed, atol=1e-5)
    assert runner.chunks_skipped > 0 and runner.chunks_run < len(wave) // spec.chunk_samples  # the gap was skipped
    # the streaming ONNX graph, on ONNX Runtime: the same decisions again
    path = tmp_path / "se.stream.onnx"
    export_streaming(model, path, checkpoint_meta={"thresholds": {"values": {"yes": 0.7}}}, source="test", log=None)
    info, got = read_stream_info(path)
    assert got == spec and json.loads(info.props["thresholds"]) == {"values": {"yes": 0.7}}
    ort_dets, ort_trace = run_offline(None, model.labels, wave, cfg, trace=True,
                                      stream=StreamRunner(OrtStep(path), spec, model.labels))
    assert key(ort_dets) == key(ref_dets)
    np.testing.assert_allclose(ort_trace.smoothed, ref_trace.smoothed, atol=1e-5)


def test_logmel_stream_equals_the_full_window_engine(tmp_path):
    model = logmel_model(1)
    mod, spec = streaming_form(model)
    assert spec.exact and spec.hop_multiple == 256
    wave = long_file(24.0, seed=1)

    def window(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(x)), -1).numpy()

    cfg0 = EngineConfig(hop_s=0.048, cooldown_s=0.3, max_pending_decisions=10_000)
    _, trace = run_offline(window, model.labels, wave, cfg0, trace=True)
    words = trace.smoothed[:, [i for i, w in enumerate(model.labels) if not w.startswith("_")]][trace.voiced]
    cfg = dataclasses.replace(cfg0, threshold=threshold_between(words.max(1), 0.5))
    ref_dets, ref_trace = run_offline(window, model.labels, wave, cfg, trace=True)
    assert len(ref_dets) >= 3
    dets, smoothed, runner = live_decisions(TorchStep(mod), spec, model.labels, wave, cfg)
    assert key(dets) == key(ref_dets) and runner.chunks_skipped > 0
    np.testing.assert_allclose(smoothed, ref_trace.smoothed, atol=1e-5)
    path = tmp_path / "dscnn.stream.onnx"
    export_streaming(model, path, source="test", log=None)
    ort_dets = run_offline(None, model.labels, wave, cfg, stream=StreamRunner(OrtStep(path), spec, model.labels))
    assert key(ort_dets) == key(ref_dets)
    # a hop the cached frames cannot serve is refused, with the hop that works
    with pytest.raises(EngineError, match="0.048"):
        DetectionEngine(None, model.labels, EngineConfig(), stream=StreamRunner(TorchStep(mod), spec, model.labels))


def test_a_long_gap_costs_no_more_than_the_memory_and_changes_no_answer(speech_model):
    mod, spec = streaming_form(speech_model)
    step = TorchStep(mod)
    wave = long_file(6.0, seed=2, gap_s=0.0)
    gap = 3 * spec.memory_samples + 777
    a, b = StreamRunner(step, spec, speech_model.labels), StreamRunner(step, spec, speech_model.labels)
    a.feed(wave[:40_000])
    a.feed(np.zeros(gap, np.float32))
    a.feed(wave[40_000:])
    b.feed(wave[:40_000])
    b.feed_silence(gap)
    b.feed(wave[40_000:])
    assert a.fed == b.fed and b._pending_n < 2 * spec.memory_samples + len(wave)  # the gap was never queued
    for end in range(40_000 + gap + 1_280, a.fed, 4_000):
        np.testing.assert_allclose(a.probs(end), b.probs(end), atol=1e-6)
    assert b.chunks_skipped > 2 * spec.memory_samples // spec.chunk_samples


@pytest.mark.parametrize("name", ["speech_embedding_mlp", "dscnn"])
def test_the_state_depends_only_on_the_last_memory_samples(name, speech_model):
    """What lets the runner drop audio while the VAD is closed: audio older than the memory changes no answer.

    A loud burst over very quiet noise: it reaches as far forward as anything can (the speech
    embedding's 80 dB floor looks back 147 frames from every frame the 9 embeddings see).
    """
    model = speech_model if name == "speech_embedding_mlp" else logmel_model(3)
    mod, spec = streaming_form(model)
    m, c = spec.memory_samples, spec.chunk_samples
    n = 3 * m // c * c
    quiet = (np.random.default_rng(4).standard_normal(n) * 1e-5).astype(np.float32)
    burst = (0.9 * np.sin(np.arange(4000) * 0.3)).astype(np.float32)

    def answer(at: int | None) -> np.ndarray:
        x = quiet.copy()
        if at is not None:
            x[n - at: n - at + burst.size] += burst
        r = StreamRunner(TorchStep(mod), spec, model.labels)
        for i in range(0, n, 5 * c):  # step by step: nothing skipped
            r.feed(x[i:i + 5 * c])
            r.probs(min(n, i + 5 * c))
        return r.probs(n)

    base = answer(None)
    np.testing.assert_allclose(answer(m + burst.size), base, atol=1e-6)  # ends where the memory starts: no effect
    reach = {"speech_embedding_mlp": 46_000, "dscnn": 15_000}[name]  # inside it: an effect (the test can fail)
    assert np.abs(answer(reach) - base).max() > 1e-4


def test_the_runner_refuses_answers_it_cannot_give(speech_model):
    mod, spec = streaming_form(speech_model)
    r = StreamRunner(TorchStep(mod), spec, speech_model.labels)
    r.feed(np.zeros(5_000, np.float32))
    with pytest.raises(ValueError, match="only 5000 were fed"):
        r.probs(6_000)
    r.probs(4_000)
    with pytest.raises(ValueError, match="before the"):
        r.probs(1_000)


def test_stream_spec_from_a_file_is_checked():
    spec = StreamSpec("logmel_frames", 256, 256, 16_384, (("window", (1, 16_000)),), True, ("a", "b"))
    assert StreamSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    bad = [{**spec.to_dict(), "chunk_samples": 0}, {**spec.to_dict(), "state": [["x", [10 ** 9]]]},
           {**spec.to_dict(), "form": "other"}, {**spec.to_dict(), "extra": 1}, "not a dict"]
    for d in bad:
        with pytest.raises(ValueError):
            StreamSpec.from_dict(d)


def test_a_streaming_file_is_refused_by_the_full_window_backend(tmp_path):
    from backends.base import ModelFileError
    from backends.ort import OrtCPUBackend

    torch.manual_seed(2)
    path = tmp_path / "m.stream.onnx"
    export_streaming(zoo.create_model("dscnn").eval(), path, source="test", log=None, parity=False)
    with pytest.raises(ModelFileError, match="a streaming export"):
        OrtCPUBackend(path, log=None)


def test_stream_parity_counts_float_ties_as_agreement():
    from kws.metrics import top1_agreement_probs as top1_agreement

    ref = np.array([[0.5, 0.5 - 4e-8, 0.0], [0.7, 0.2, 0.1]])
    assert top1_agreement(ref, np.array([[0.5 - 4e-8, 0.5, 0.0], [0.7, 0.2, 0.1]])) == 1.0  # a tie either way
    assert top1_agreement(ref, np.array([[0.5, 0.5, 0.0], [0.2, 0.7, 0.1]])) == 0.5  # a real flip
