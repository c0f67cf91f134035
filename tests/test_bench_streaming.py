"""Stream construction, noise mixing, and the streaming evaluation through the real live engine.

The engine test uses a fake "model" that recognises words by the frequency of a tone, so the
right answers are known: every word is hit, nothing fires on noise, and a model that always
names the next word scores 0 hits and 100 % wrong words.
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.evalsets import EvalSet
from bench.noise import NoiseConfig, build_noisy
from bench.noise import evaluate_model as evaluate_noise
from bench.signals import balanced_pick, keyword_free_stream, noise_bed, noise_from_clips, rms, word_stream
from bench.stats import snr_db
from bench.streaming import StreamingConfig, build_streams, evaluate_model, stream_keywords
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE
from realtime.engine import EngineConfig

WORDS = ("alpha", "bravo", "charlie")
LABELS = WORDS + ("_silence_",)
FREQS = {w: 400.0 + 300.0 * i for i, w in enumerate(WORDS)}


def tone_clip(word: str, amp: float = 0.3) -> np.ndarray:
    """A 1 s "recording" of `word`: its tone from 0.3 s to 0.7 s, silence around it."""
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    x = np.where((t > 0.3) & (t < 0.7), amp * np.sin(2 * np.pi * FREQS[word] * t), 0.0)
    return (x * 32767).astype(np.int16)


def fake_evalset(per_word: int = 6, noise: np.ndarray | None = None) -> EvalSet:
    y = np.repeat(np.arange(len(WORDS)), per_word)
    waves = np.stack([tone_clip(WORDS[k]) for k in y])
    # two silence clips, as a real test split has
    waves = np.concatenate([waves, np.zeros((2, CLIP_SAMPLES), np.int16)])
    y = np.concatenate([y, [LABELS.index("_silence_")] * 2])
    n = np.zeros(0, np.float32) if noise is None else noise
    return EvalSet("fake", "fake", "test", LABELS, waves, y.astype(np.int64), n, "test noise", len(y))


def tone_model(shift: int = 0):
    """predict_fn: one-hot on the word whose tone dominates the window (shifted by `shift`), else silence."""
    def predict(x: np.ndarray) -> np.ndarray:
        spec = np.abs(np.fft.rfft(x, axis=1))
        freqs = np.fft.rfftfreq(x.shape[1], 1.0 / SAMPLE_RATE)
        out = np.zeros((x.shape[0], len(LABELS)), np.float32)
        for b in range(x.shape[0]):
            mags = [spec[b, np.argmin(np.abs(freqs - FREQS[w]))] for w in WORDS]
            k = int(np.argmax(mags))
            if mags[k] > 20.0 * np.median(spec[b]) + 1e-6:
                out[b, (k + shift) % len(WORDS)] = 0.97
                out[b, -1] = 0.03
            else:
                out[b, -1] = 1.0
        return out
    return predict


# ----------------------------------------------------------------------------- stream geometry


def test_word_stream_places_words_at_the_requested_snr_and_spacing():
    rng = np.random.default_rng(0)
    clips = np.stack([tone_clip(w) for w in WORDS * 2])
    s = word_stream(clips, list(WORDS * 2), np.zeros(0, np.float32), snr_db=10.0, noise_rms=0.01, gap_s=2.0,
                    gap_jitter_s=0.3, rng=rng, min_gap_s=1.0, lead_in_s=3.0)
    assert [e.label for e in s.events] == list(WORDS * 2)
    assert s.events[0].start_s >= 3.0 + 1.7 - 1e-9  # lead-in + the shortest gap
    gaps = [b.start_s - a.end_s for a, b in zip(s.events, s.events[1:])]
    assert all(1.7 - 1e-3 <= g <= 2.3 + 1e-3 for g in gaps)
    assert all(e.end_s - e.start_s == pytest.approx(1.0) for e in s.events)
    # power in each word's clip = noise + word at 10 dB above it
    noise_only = s.wave[: int(2.5 * SAMPLE_RATE)]
    pn = rms(noise_only) ** 2
    assert rms(noise_only) == pytest.approx(0.01, rel=0.15)
    for e in s.events:
        seg = s.wave[int(round(e.start_s * SAMPLE_RATE)):int(round(e.end_s * SAMPLE_RATE))]
        measured = 10 * np.log10((rms(seg) ** 2 - pn) / pn)
        assert measured == pytest.approx(10.0, abs=0.7)


def test_word_stream_refuses_gaps_shorter_than_the_matching_window():
    clips = np.stack([tone_clip("alpha")] * 2)
    with pytest.raises(ValueError, match="overlap"):
        word_stream(clips, ["alpha"] * 2, np.zeros(0), snr_db=10, noise_rms=0.01, gap_s=1.0, gap_jitter_s=0.2,
                    rng=np.random.default_rng(0), min_gap_s=1.0)


def test_noise_bed_constant_level_from_a_source_and_pink_fallback():
    rng = np.random.default_rng(0)
    src = np.concatenate([np.random.default_rng(1).standard_normal(SAMPLE_RATE * 5) * 0.5,
                          np.random.default_rng(2).standard_normal(SAMPLE_RATE * 5) * 0.01]).astype(np.float32)
    bed = noise_bed(src, SAMPLE_RATE * 30, 0.02, rng)
    assert bed.shape == (SAMPLE_RATE * 30,) and bed.dtype == np.float32
    # per-segment normalisation: every second has about the same level despite a 34 dB spread in the source
    levels = [rms(bed[i:i + SAMPLE_RATE]) for i in range(0, bed.size, SAMPLE_RATE)]
    assert min(levels) > 0.012 and max(levels) < 0.028
    pink = keyword_free_stream(np.zeros(0), seconds=3.0, noise_rms=0.01, rng=rng)
    assert pink.wave.size == 3 * SAMPLE_RATE and rms(pink.wave) == pytest.approx(0.01, rel=1e-3)
    assert pink.events == ()


def test_noise_from_clips_normalises_and_drops_digital_silence():
    rng = np.random.default_rng(0)
    clips = np.stack([rng.standard_normal(CLIP_SAMPLES) * g for g in (1e-3, 0.5)] + [np.zeros(CLIP_SAMPLES)])
    n = noise_from_clips(clips)
    assert n.size == 2 * CLIP_SAMPLES - int(0.02 * SAMPLE_RATE)
    assert rms(n[:8000]) == pytest.approx(rms(n[-8000:]), rel=0.1)


def test_balanced_pick_cycles_over_labels():
    y = np.array([0] * 50 + [1] * 3 + [2] * 50)
    idx = balanced_pick(y, [0, 1, 2], 9, np.random.default_rng(0))
    assert sorted(np.bincount(y[idx], minlength=3).tolist()) == [3, 3, 3]
    assert len(set(idx.tolist())) == 9
    idx = balanced_pick(y, [1], 10, np.random.default_rng(0))
    assert sorted(idx.tolist()) == [50, 51, 52]  # no more than there are


def test_build_noisy_hits_each_snr_and_skips_silence():
    rng = np.random.default_rng(3)
    ev = fake_evalset(per_word=2, noise=rng.standard_normal(SAMPLE_RATE * 4).astype(np.float32))
    noisy = build_noisy(ev, NoiseConfig(snrs_db=(None, 10.0, 0.0)))
    assert len(noisy.y) == 6  # the two silence clips are left out
    clean = noisy.mixtures[None]
    for snr in (10.0, 0.0):
        for c, m in zip(clean, noisy.mixtures[snr]):
            assert snr_db(c, m - c) == pytest.approx(snr, abs=0.05)


# ----------------------------------------------------------------------------- through the live engine


def quick_cfg(**kw) -> StreamingConfig:
    base = dict(words_per_stream=9, gap_s=2.0, gap_jitter_s=0.2, lead_in_s=4.0, snrs_db=(20.0,),
                reference_snr_db=20.0, free_seconds=40.0, noise_rms=0.01,
                thresholds=(0.3, 0.6, 0.9, 0.99), engine=EngineConfig())
    base.update(kw)
    return StreamingConfig(**base)


def test_streaming_through_the_engine_known_answers():
    ev = fake_evalset()
    cfg = quick_cfg()
    kw = stream_keywords(LABELS, ev.labels, cfg)
    assert kw == WORDS  # "_silence_" can never fire
    streams = build_streams(ev, kw, cfg)
    res = evaluate_model(tone_model(), LABELS, streams, cfg)
    r = res["per_snr"][0]
    assert r["n_words"] == 9
    assert r["hit_rate"] == 1.0 and r["wrong_word_rate"] == 0.0 and r["extra_detections"] == 0
    assert res["false_accepts"] == 0 and res["fa_per_hour"] == 0.0
    assert res["free_stream_short"] is True  # 40 s < 10 min: flagged
    assert res["fa_resolution_per_hour"] == pytest.approx(90.0)
    # the smoothed score of a clear word reaches 0.97 > 0.9 but never 0.99: the sweep sees it
    by_th = {c["threshold"]: c for c in r["curve"]}
    assert by_th[0.9]["hit_rate"] == 1.0 and by_th[0.99]["hit_rate"] == 0.0
    assert r["threshold_at_target_fa"] == pytest.approx(0.3)  # lowest miss at 0 FA/h, ties -> lowest threshold
    assert 0.0 < r["model_ran_fraction"] < 1.0  # the VAD skipped the model between words


def test_streaming_wrong_word_model():
    ev = fake_evalset()
    cfg = quick_cfg(free_seconds=10.0)
    streams = build_streams(ev, WORDS, cfg)
    res = evaluate_model(tone_model(shift=1), LABELS, streams, cfg)
    r = res["per_snr"][0]
    assert r["hit_rate"] == 0.0 and r["wrong_word_rate"] == 1.0 and r["miss_rate"] == 1.0


def test_noise_evaluation_scores_in_data_label_space():
    ev = fake_evalset(per_word=3, noise=np.random.default_rng(0).standard_normal(SAMPLE_RATE * 4).astype(np.float32))
    noisy = build_noisy(ev, NoiseConfig(snrs_db=(None, 20.0)))
    res = evaluate_noise(tone_model(), LABELS, ev.labels, noisy, NoiseConfig(snrs_db=(None, 20.0)))
    accs = {r["snr_db"]: r["accuracy"] for r in res["per_snr"]}
    assert accs[None] == 1.0 and accs[20.0] == 1.0
    res = evaluate_noise(tone_model(shift=1), LABELS, ev.labels, noisy, NoiseConfig(snrs_db=(None,)))
    assert res["per_snr"][0]["accuracy"] == 0.0
