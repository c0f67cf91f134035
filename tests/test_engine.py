"""The detection engine: building blocks with exact outcomes, live == offline, bounded queues."""
from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
import pytest

from kws.audio import SAMPLE_RATE
from realtime.engine import (BoundedQueue, DetectionEngine, EMASmoother, EnergyVAD, EngineConfig, EngineError,
                             RingBuffer, StreamProcessor, Trigger, VADConfig, idle_scores, run_offline, trigger_mask)
from realtime.predictor import from_function
from realtime.session import LiveSession
from realtime.sources import ReplaySource, StreamResampler

from _live_fakes import LABELS, WORD_S, SlowModel, ToneModel, make_stream

EVENTS = [("yes", 1.0), ("no", 2.5), ("up", 4.0), ("stop", 5.2), ("yes", 6.6)]


def _key(dets):
    return [(d.label, d.time_s, d.hop, d.confidence) for d in dets]


# ----------------------------------------------------------------------------- building blocks


def test_ring_buffer_keeps_the_newest_samples_across_wraps():
    rb = RingBuffer(5)
    rb.write(np.arange(3))
    np.testing.assert_array_equal(rb.latest(5), [0, 0, 0, 1, 2])  # starts as silence
    rb.write(np.arange(3, 7))  # wraps
    np.testing.assert_array_equal(rb.latest(5), [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(rb.latest(2), [5, 6])
    rb.write(np.arange(10, 22))  # longer than the ring
    np.testing.assert_array_equal(rb.latest(5), [17, 18, 19, 20, 21])
    assert rb.total == 3 + 4 + 12
    out = rb.latest(3)
    out[:] = -1  # a copy, not a view into the ring
    np.testing.assert_array_equal(rb.latest(3), [19, 20, 21])
    with pytest.raises(ValueError):
        rb.latest(6)


def test_ema_weighs_the_newest_frame_by_alpha():
    ema = EMASmoother(0.7, np.array([1.0, 0.0], np.float32))
    np.testing.assert_allclose(ema.update(np.array([0.0, 1.0])), [0.3, 0.7], rtol=1e-6)
    np.testing.assert_allclose(ema.update(np.array([0.0, 1.0])), [0.09, 0.91], rtol=1e-6)
    np.testing.assert_allclose(ema.update(np.array([1.0, 0.0])), [0.727, 0.273], rtol=1e-6)
    assert ema.state.dtype == np.float32
    ema.reset()
    np.testing.assert_array_equal(ema.state, [1.0, 0.0])


def test_idle_scores_and_trigger_mask():
    np.testing.assert_array_equal(idle_scores(LABELS), [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(idle_scores(("a", "b")), [0, 0])
    np.testing.assert_array_equal(trigger_mask(LABELS), [False, False, True, True, True, True])
    np.testing.assert_array_equal(trigger_mask(LABELS, ("no",)), [False, False, False, True, False, False])
    with pytest.raises(ValueError, match="not among"):
        trigger_mask(LABELS, ("maybe",))


def _scores(label: str, p: float) -> np.ndarray:
    v = np.zeros(len(LABELS), np.float32)
    v[LABELS.index(label)] = p
    v[LABELS.index("_unknown_")] = 1 - p
    return v


HOP = EngineConfig().hop_samples


def test_trigger_threshold_is_inclusive_and_needs_the_argmax():
    trig = Trigger(LABELS, EngineConfig(threshold=0.6))
    assert trig.update(_scores("yes", 0.59), HOP, 0) is None
    det = trig.update(_scores("yes", 0.6), 2 * HOP, 1)
    assert det is not None and det.label == "yes" and det.time_s == 2 * HOP / SAMPLE_RATE and det.hop == 1
    trig = Trigger(LABELS, EngineConfig(threshold=0.3))
    v = _scores("yes", 0.4)  # above the threshold, but _unknown_ (0.6) is more likely
    assert trig.update(v, HOP, 0) is None
    # a non-word class never fires, however confident
    assert trig.update(_scores("yes", 0.0), 2 * HOP, 1) is None


def test_cooldown_is_exactly_500_ms_between_any_two_detections():
    cfg = EngineConfig(threshold=0.5, cooldown_s=0.5, rearm=False)
    trig = Trigger(LABELS, cfg)
    assert trig.update(_scores("yes", 0.9), 10 * HOP, 9).label == "yes"
    # another word 450 ms later: suppressed; 500 ms later (exactly the cooldown): fires
    assert trig.update(_scores("no", 0.9), 19 * HOP, 18) is None
    assert trig.update(_scores("no", 0.9), 20 * HOP, 19).label == "no"
    assert trig.update(_scores("no", 0.9), 21 * HOP, 20) is None


def test_rearm_one_word_held_in_the_window_fires_once():
    cfg = EngineConfig(threshold=0.5, cooldown_s=0.5)
    trig = Trigger(LABELS, cfg)
    fired = [trig.update(_scores("yes", 0.9), (h + 1) * HOP, h) for h in range(30)]  # 1.5 s above threshold
    assert [d.hop for d in fired if d] == [0]
    assert trig.update(_scores("yes", 0.4), 31 * HOP, 30) is None  # dips below: re-armed
    assert trig.update(_scores("yes", 0.9), 32 * HOP, 31).label == "yes"
    # without re-arming the same held word fires every cooldown
    trig = Trigger(LABELS, dataclasses.replace(cfg, rearm=False))
    fired = [trig.update(_scores("yes", 0.9), (h + 1) * HOP, h) for h in range(30)]
    assert [d.hop for d in fired if d] == [0, 10, 20]


def test_vad_noise_floor_adapts_with_the_configured_time_constants():
    cfg = VADConfig(margin_db=10.0, min_level_db=-55.0, init_floor_db=-70.0, floor_rise_s=3.0, floor_fall_s=0.1)
    vad = EnergyVAD(cfg, hop_s=0.05)
    assert vad.update(-100.0) is False  # digital silence
    assert vad.floor_db < -70.0  # the floor follows the room down
    vad = EnergyVAD(cfg, hop_s=0.05)
    # a steady background 30 dB above the initial floor: voiced while floor < -50 dB, i.e. for
    # hops k with 30 * exp(-k * 0.05 / 3) > 10  <=>  k < 60 ln 3 = 65.9 -> exactly 66 hops (3.3 s)
    voiced = [vad.update(-40.0) for _ in range(200)]
    assert voiced[:66] == [True] * 66 and not any(voiced[66:])
    # quiet again: the floor falls with the 0.1 s constant (within 1 dB of -70 after 0.5 s)
    for _ in range(10):
        vad.update(-70.0)
    assert vad.floor_db == pytest.approx(-70.0, abs=1.0)
    assert vad.update(-45.0) is True  # a word 25 dB above the quiet room
    # the absolute gate: 20 dB above a -90 dB floor is still below -55 dBFS
    vad = EnergyVAD(dataclasses.replace(cfg, init_floor_db=-90.0), 0.05)
    assert vad.update(-60.0) is False


def test_vad_gates_the_model_and_decays_to_silence():
    model = ToneModel()
    cfg = EngineConfig()
    x = make_stream([("yes", 2.0)], 5.0)
    dets, tr = run_offline(model, LABELS, x, cfg, trace=True)
    assert [d.label for d in dets] == ["yes"]
    # the model runs only while the window may hold speech: from the word's onset (<= 1 hop
    # late, as the Hann onset is quiet) to one window after its last voiced hop
    assert model.rows == int(tr.voiced.sum()) < len(tr.ends)
    first = int(np.argmax(tr.voiced))
    assert 2.0 <= tr.times_s[first] <= 2.0 + 0.1
    assert not tr.voiced[: first].any()
    # in silence the smoothed scores are "nothing said"
    np.testing.assert_allclose(tr.smoothed[-1], idle_scores(LABELS), atol=1e-6)
    model = ToneModel()
    assert run_offline(model, LABELS, make_stream([], 3.0)) == [] and model.calls == 0
    # VAD off: every hop runs the model
    model = ToneModel()
    run_offline(model, LABELS, x, dataclasses.replace(cfg, vad=VADConfig(enabled=False)))
    assert model.rows == 100


def test_config_validation():
    with pytest.raises(ValueError, match="ema_alpha"):
        EngineConfig(ema_alpha=0.0)
    with pytest.raises(ValueError, match="window_s"):
        EngineConfig(window_s=0.01)
    with pytest.raises(ValueError, match="threshold"):
        EngineConfig(threshold=1.5)
    assert EngineConfig(targets=["yes"]).targets == ("yes",)
    assert EngineConfig().hangover_hops == 20
    cfg = EngineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.threshold = 0.1  # type: ignore[misc]


def test_engine_rejects_a_model_with_the_wrong_output():
    bad = lambda w: np.ones((w.shape[0], 3), np.float32) / 3  # noqa: E731 - 3 scores for 6 labels
    with pytest.raises(EngineError, match="shape"):
        run_offline(bad, LABELS, make_stream([("yes", 0.2)], 1.0))
    eng = DetectionEngine(bad, LABELS).start()
    eng.feed(make_stream([("yes", 0.2)], 1.0))
    eng.end_of_stream()
    assert eng.join(5)
    assert isinstance(eng.error, EngineError)


# ----------------------------------------------------------------------------- streams of known words


def test_offline_detects_known_words_at_the_right_times():
    x = make_stream(EVENTS, 8.0)
    dets = run_offline(ToneModel(), LABELS, x)
    assert [d.label for d in dets] == [w for w, _ in EVENTS]
    for d, (_, onset) in zip(dets, EVENTS):
        # decided once the word is (half) inside the window, before it has fully passed
        assert onset < d.time_s <= onset + WORD_S + 0.25, (d, onset)
        assert d.confidence >= EngineConfig().threshold


def test_offline_result_does_not_depend_on_the_batch_size_or_sample_rate():
    x = make_stream(EVENTS, 8.0)
    ref = _key(run_offline(ToneModel(), LABELS, x, batch_size=1))
    for b in (7, 32, 200):
        assert _key(run_offline(ToneModel(), LABELS, x, batch_size=b)) == ref
    from kws.audio import resample

    x8k = resample(x, SAMPLE_RATE, 8000)
    assert [d.label for d in run_offline(ToneModel(), LABELS, x8k, sample_rate=8000)] == [w for w, _ in EVENTS]


def test_threshold_sweep_from_the_trace_equals_rerunning():
    x = make_stream(EVENTS, 8.0)
    dets, tr = run_offline(ToneModel(), LABELS, x, trace=True)
    assert _key(tr.detections()) == _key(dets)
    assert tr.smoothed.shape == (160, len(LABELS)) and tr.times_s[0] == pytest.approx(0.05)
    for th in (0.2, 0.5, 0.7, 0.75, 0.9):
        cfg = EngineConfig(threshold=th)
        assert _key(tr.detections(th)) == _key(run_offline(ToneModel(), LABELS, x, cfg))
    top = float(tr.smoothed[:, 2:].max())  # the best word score anywhere in the stream
    assert len(tr.detections(top)) >= 1 and tr.detections(min(1.0, top + 1e-4)) == []


def test_targets_restrict_who_fires():
    x = make_stream(EVENTS, 8.0)
    dets = run_offline(ToneModel(), LABELS, x, EngineConfig(targets=("yes",)))
    assert [d.label for d in dets] == ["yes", "yes"]


@pytest.mark.parametrize("realtime", [False, True])
def test_live_engine_makes_the_same_decisions_as_offline(realtime):
    x = make_stream(EVENTS, 8.0 if not realtime else 3.2)
    offline = run_offline(ToneModel(), LABELS, x)
    # replayed through the threaded engine, in blocks of a different size than the hop
    src = ReplaySource(wave=x, realtime=realtime, block_s=0.032, speed=1.0)
    session = LiveSession(from_function(ToneModel(), LABELS), src)
    session.start()
    assert session.wait(timeout=30)
    live = session.poll_detections()
    stats = session.stats()
    assert _key(live) == _key(offline)
    assert stats.dropped_blocks == 0 and stats.decisions == round(x.size / HOP)
    assert all(d.latency_s is not None and d.latency_s >= 0 for d in live)
    if realtime:  # mic-to-decision latency was measured for every model-run decision
        assert stats.latency_p95_ms is not None and stats.latency_p95_ms < 1000
        assert 10 < stats.decisions_per_s < 40  # ~20; loose: the test machine is shared


def test_engine_poll_is_bounded_and_keeps_the_newest_decisions():
    cfg = EngineConfig(max_pending_decisions=10)
    eng = DetectionEngine(ToneModel(), LABELS, cfg).start()
    for i in range(0, SAMPLE_RATE * 3, HOP):
        eng.feed(np.zeros(HOP, np.float32), wait=True)
    eng.end_of_stream()
    assert eng.join(10)
    got = eng.poll()
    assert [d.hop for d in got] == list(range(50, 60))
    assert eng.stats().dropped_decisions == 50


# ----------------------------------------------------------------------------- bounded queues


def test_bounded_queue_drops_the_oldest_blocks_and_counts_them():
    q = BoundedQueue(max_samples=300)
    for i in range(5):
        q.put(np.full(100, i, np.float32), None, i * 100)
    assert len(q) == 3 and q.samples == 300 and q.high_water == 300
    assert q.dropped_blocks == 2 and q.dropped_samples == 200
    assert [q.get(0)[2] for _ in range(3)] == [200, 300, 400]  # the freshest audio survives
    assert q.get(timeout=0.01) is None
    q.close()
    with pytest.raises(EngineError, match="closed"):
        q.put(np.zeros(10, np.float32), None, 0)


def test_bounded_queue_wait_applies_back_pressure_instead_of_dropping():
    q = BoundedQueue(max_samples=200)
    q.put(np.zeros(100, np.float32), None, 0)
    q.put(np.zeros(100, np.float32), None, 100)
    with pytest.raises(EngineError, match="timed out"):
        q.put(np.zeros(100, np.float32), None, 200, wait=True, timeout=0.05)
    assert q.dropped_blocks == 0


def test_engine_falls_behind_drops_frames_and_memory_stays_bounded():
    """One model call longer than the whole queue (shedding hops cannot help while it runs): audio is
    dropped (counted), never queued without limit."""
    model = SlowModel(delay_s=0.08)
    cfg = EngineConfig(hop_s=0.01, queue_s=0.05, vad=VADConfig(enabled=False))
    eng = DetectionEngine(model, LABELS, cfg).start()
    n_hops = 150
    block = np.zeros(cfg.hop_samples, np.float32)
    for _ in range(n_hops):  # a sound card delivering one hop every 10 ms
        eng.feed(block)
        time.sleep(0.01)
    eng.end_of_stream()
    assert eng.join(10) and eng.error is None
    s = eng.stats()
    assert s.dropped_blocks > 20 and s.dropped_samples == s.dropped_blocks * cfg.hop_samples
    assert s.queue_high_water <= cfg.queue_samples  # never more than 50 ms of audio waiting
    # every hop is either decided or counted as skipped: the stream clock stays true
    assert s.decisions + s.skipped_hops + s.shed_hops == n_hops
    assert s.stream_s == pytest.approx(n_hops * cfg.hop_s)
    assert model.calls == s.decisions


def test_gaps_skip_hops_and_keep_stream_time():
    proc = StreamProcessor(LABELS, EngineConfig())
    frames = proc.feed(np.zeros(HOP, np.float32), start=0)
    assert [f.hop for f in frames] == [0]
    frames = proc.feed(np.zeros(HOP, np.float32), start=4 * HOP)  # hops 1-3 dropped upstream
    assert [(f.hop, f.end) for f in frames] == [(4, 5 * HOP)]
    assert proc.skipped_hops == 3 and proc.skipped_samples == 3 * HOP
    with pytest.raises(ValueError, match="before"):
        proc.feed(np.zeros(10, np.float32), start=0)


def test_stream_resampler_is_continuous_across_blocks():
    sr = 48_000
    t = np.arange(sr * 2) / sr
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    whole = StreamResampler(sr).process(x)
    rs = StreamResampler(sr)
    blocks = np.concatenate([rs.process(x[i : i + 2400]) for i in range(0, x.size, 2400)])
    assert abs(blocks.size - 2 * SAMPLE_RATE) <= 1
    np.testing.assert_allclose(blocks, whole[: blocks.size], atol=1e-5)
    spec = np.abs(np.fft.rfft(blocks[4000:20000]))
    assert np.argmax(spec) * SAMPLE_RATE / 16000 == pytest.approx(1000, abs=2)
    # an 11.025 kHz device (upsampling, fractional ratio) also comes out at 16 kHz
    y = StreamResampler(11_025).process(np.zeros(11_025, np.float32))
    assert abs(y.size - SAMPLE_RATE) <= 1


# ----------------------------------------------------------------------------- a real backend


def _random_dscnn(tmp_path):
    import torch

    import zoo

    torch.manual_seed(0)
    model = zoo.create_model("dscnn", labels=("_silence_", "_unknown_", "yes", "no", "up", "down"))
    with torch.no_grad():  # non-trivial BN statistics so that scores vary with the input
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    return zoo.save_checkpoint(model, tmp_path / "dscnn_random.safetensors", {"training_data": "none (random init, tests)"})


def test_real_backend_live_equals_offline(tmp_path):
    import backends

    path = _random_dscnn(tmp_path)
    try:
        be = backends.create_backend("torch-cpu", model=str(path), threads=1)
    except backends.BackendUnavailable as e:
        pytest.skip(f"torch-cpu backend unavailable: {e}")
    labels = tuple(be.labels)
    assert len(labels) == 6
    x = make_stream(EVENTS, 4.0, noise_db=-40)
    cfg = EngineConfig(threshold=0.2, vad=VADConfig(enabled=False))  # random weights: fire on anything
    offline, tr = run_offline(be.predict, labels, x, cfg, batch_size=1, trace=True)
    src = ReplaySource(wave=x, realtime=False)
    session = LiveSession(from_function(be.predict, labels), src, cfg)
    session.start()
    assert session.wait(timeout=60)
    live = session.poll_detections()
    assert session.stats().decisions == len(tr.ends) == 80
    assert _key(live) == _key(offline)
    # batching the model calls offline changes nothing beyond float rounding
    batched, tr_b = run_offline(be.predict, labels, x, cfg, batch_size=16, trace=True)
    np.testing.assert_allclose(tr_b.smoothed, tr.smoothed, atol=1e-5)
    assert [(d.label, d.hop) for d in batched] == [(d.label, d.hop) for d in offline]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
