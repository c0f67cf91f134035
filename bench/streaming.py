"""Streaming evaluation through the live detection engine (`realtime.engine.run_offline`).

Words from the test split are laid end to end over background noise (bench.signals), and
a long keyword-free noise stream measures false accepts. The engine (VAD, EMA, threshold,
cooldown, re-arm) is never re-implemented here: `run_offline(..., trace=True)` runs the
model once per stream and returns the per-hop smoothed scores, and
`ScoreTrace.detections(threshold)` replays the engine's own trigger at every threshold of
the sweep, so the miss-rate vs FA/h curve costs one model pass per stream.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from bench.evalsets import EvalSet
from bench.signals import Stream, balanced_pick, has_usable_noise, keyword_free_stream, word_stream
from bench.stats import OperatingPoint, fa_per_hour, match_detections, threshold_for_fa_rate
from realtime.engine import EngineConfig, ScoreTrace, run_offline, trigger_mask

PredictFn = Callable[[np.ndarray], np.ndarray]

# A fine grid near 1 because a well-trained model's smoothed scores crowd there.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(
    float(t) for t in np.round(np.concatenate([np.arange(0.10, 0.90, 0.05),
                                               [0.90, 0.925, 0.95, 0.965, 0.98, 0.99, 0.995, 0.999]]), 3))
FA_MINUTES_REQUIRED = 10.0  # the least keyword-free audio a false-accept rate is quoted on; shorter runs are flagged


@dataclass(frozen=True)
class StreamingConfig:
    words_per_stream: int = 100  # per SNR: ~5 min of audio each, a hit rate to about +-5 %
    gap_s: float = 2.0  # noise between two words (start of one to end of the previous)
    gap_jitter_s: float = 0.4
    lead_in_s: float = 5.0  # the VAD's noise floor settles before the first word
    snrs_db: tuple[float, ...] = (20.0, 10.0, 0.0)  # the clip-level noise test covers 5 dB too
    reference_snr_db: float = 10.0  # the SNR whose stream gives the headline curve
    free_seconds: float = 600.0
    noise_rms: float = 0.01  # -40 dBFS: a quiet room through a laptop microphone
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    target_fa_per_hour: float = 1.0
    tol_before_s: float = 0.0
    tol_after_s: float = 1.0  # the engine decides on the last second: it may fire up to ~1 s after the word
    batch_size: int = 32  # hops per model call in run_offline (decisions still step hop by hop)
    engine: EngineConfig = field(default_factory=EngineConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reference_snr_db not in self.snrs_db:
            raise ValueError(f"reference SNR {self.reference_snr_db} dB is not among {self.snrs_db}")
        if not self.thresholds or not all(0 < t <= 1 for t in self.thresholds):
            raise ValueError("thresholds must be in (0, 1]")


@dataclass(frozen=True, eq=False)
class StreamSet:
    """The streams built from one eval set for one set of keywords (shared by all models)."""

    dataset: str
    keywords: tuple[str, ...]
    words: dict[float, Stream]  # SNR (dB) -> stream
    free: Stream
    noise_kind: str


def stream_keywords(model_labels: Sequence[str], data_labels: Sequence[str], cfg: StreamingConfig) -> tuple[str, ...]:
    """Words that can fire in the engine (its trigger classes) and exist in the data."""
    mask = trigger_mask(model_labels, cfg.engine.targets)
    can_fire = {lab for lab, m in zip(model_labels, mask) if m}
    return tuple(lab for lab in data_labels if lab in can_fire)


def build_streams(ev: EvalSet, keywords: Sequence[str], cfg: StreamingConfig) -> StreamSet:
    """Word streams at each SNR (the same words in the same order) and one keyword-free stream."""
    keep = [ev.labels.index(k) for k in keywords]
    if not keep:
        raise ValueError(f"{ev.name}: no clip of a word the model can detect")
    rng = np.random.default_rng(cfg.seed)
    idx = balanced_pick(ev.y, keep, cfg.words_per_stream, rng)
    clips = np.asarray(ev.waves[idx])
    words = [ev.labels[int(k)] for k in ev.y[idx]]
    streams = {}
    for snr in cfg.snrs_db:
        # same seed per SNR: identical word order and gaps, only the speech level changes
        streams[float(snr)] = word_stream(clips, words, ev.noise, snr_db=snr, noise_rms=cfg.noise_rms,
                                          gap_s=cfg.gap_s, gap_jitter_s=cfg.gap_jitter_s,
                                          rng=np.random.default_rng(cfg.seed + 1),
                                          min_gap_s=cfg.tol_before_s + cfg.tol_after_s, lead_in_s=cfg.lead_in_s)
    free = keyword_free_stream(ev.noise, seconds=cfg.free_seconds, noise_rms=cfg.noise_rms,
                               rng=np.random.default_rng(cfg.seed + 2))
    kind = ev.noise_kind if has_usable_noise(ev.noise) else "pink noise (synthetic)"
    return StreamSet(ev.name, tuple(keywords), streams, free, kind)


def _detections(trace: ScoreTrace, threshold: float) -> list[tuple[str, float]]:
    return [(d.label, d.time_s) for d in trace.detections(threshold)]


def evaluate_model(predict: PredictFn, labels: Sequence[str], streams: StreamSet, cfg: StreamingConfig,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Hit/wrong-word/FA figures at the engine's default threshold, plus the threshold sweep."""
    t0 = time.perf_counter()
    labels = tuple(labels)

    def run(stream: Stream) -> ScoreTrace:
        if progress is not None:
            progress(f"{stream.duration_s / 60:.1f} min stream")
        _, trace = run_offline(predict, labels, stream.wave, cfg.engine, batch_size=cfg.batch_size, trace=True)
        return trace

    free_trace = run(streams.free)
    free_s = streams.free.duration_s
    fa_counts = {th: len(free_trace.detections(th)) for th in cfg.thresholds}
    default_fa = len(free_trace.detections(cfg.engine.threshold))
    per_snr = []
    for snr, stream in streams.words.items():
        trace = run(stream)
        events = stream.events
        at_default = match_detections(_detections(trace, cfg.engine.threshold), events,
                                      cfg.tol_before_s, cfg.tol_after_s)
        curve = []
        for th in cfg.thresholds:
            m = match_detections(_detections(trace, th), events, cfg.tol_before_s, cfg.tol_after_s)
            curve.append({"threshold": th, "hit_rate": m.hit_rate, "wrong_word_rate": m.wrong_word_rate,
                          "miss_rate": m.miss_rate, "extra_detections": m.extra,
                          "false_accepts": fa_counts[th], "fa_per_hour": fa_per_hour(fa_counts[th], free_s)})
        best = threshold_for_fa_rate([OperatingPoint(c["threshold"], c["miss_rate"], c["fa_per_hour"]) for c in curve],
                                     cfg.target_fa_per_hour)
        per_snr.append({
            "snr_db": snr, "n_words": at_default.n_events, "stream_seconds": round(stream.duration_s, 1),
            "hit_rate": at_default.hit_rate, "wrong_word_rate": at_default.wrong_word_rate,
            "miss_rate": at_default.miss_rate, "extra_detections": at_default.extra,
            "model_ran_fraction": float(trace.voiced.mean()) if trace.voiced.size else 0.0,
            "curve": curve,
            "threshold_at_target_fa": None if best is None else best.threshold,
            "miss_rate_at_target_fa": None if best is None else best.miss_rate,
        })
    return {
        "engine": _engine_dict(cfg.engine),
        "default_threshold": cfg.engine.threshold,
        "keywords": list(streams.keywords),
        "noise": streams.noise_kind,
        "noise_rms": cfg.noise_rms,
        "free_seconds": round(free_s, 1),
        "free_stream_short": free_s < FA_MINUTES_REQUIRED * 60 - 1e-6,
        "fa_resolution_per_hour": fa_per_hour(1, free_s),  # one false accept moves FA/h by this much
        "false_accepts": default_fa,
        "fa_per_hour": fa_per_hour(default_fa, free_s),
        "free_model_ran_fraction": float(free_trace.voiced.mean()) if free_trace.voiced.size else 0.0,
        "target_fa_per_hour": cfg.target_fa_per_hour,
        "reference_snr_db": cfg.reference_snr_db,
        "per_snr": per_snr,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _engine_dict(cfg: EngineConfig) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: v for k, v in d.items() if k in ("hop_s", "window_s", "ema_alpha", "threshold", "cooldown_s",
                                                 "rearm", "targets", "vad")}
