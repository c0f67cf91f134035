"""A running detector: one source feeding one engine. Shared by the headless CLI and the GUI."""
from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any, Callable, Mapping, Sequence

from kws.audio import SAMPLE_RATE
from realtime.engine import (Decision, Detection, DetectionEngine, EngineConfig, EngineStats, StreamModel,
                             stream_hop_s)
from realtime.predictor import Predictor
from realtime.sources import Source, SourceError


def nearest_operating_point(points: Sequence[tuple[float, Mapping[str, float]]], fa_per_hour: float) -> int:
    """The index of the operating point whose false-accept rate is nearest `fa_per_hour` on a log scale
    (the curve is spaced in ratios: 0.1, 0.2, 0.5, 1 ... per hour); between two, the stricter one."""
    if not points:
        raise ValueError("no operating points to choose from")
    if not (isinstance(fa_per_hour, (int, float)) and math.isfinite(fa_per_hour) and fa_per_hour > 0):
        raise ValueError(f"a sensitivity is a positive number of false accepts per hour, got {fa_per_hour!r}")
    return min(range(len(points)), key=lambda i: (abs(math.log(points[i][0] / fa_per_hour)), points[i][0]))


def operating_point(predictor: Predictor, fa_per_hour: float) -> tuple[int, float, dict[str, float]]:
    """(index, false accepts per hour, thresholds of the model's words) of the predictor's operating point
    nearest `fa_per_hour`; ValueError, worded for the user, when the model has none."""
    points = predictor.operating_points
    if not points:
        raise ValueError(f"sensitivity {fa_per_hour:g} false accepts/h: {predictor.model} has no calibrated "
                         f"operating points to choose from (python -m bench calibrate writes them)")
    i = nearest_operating_point(points, fa_per_hour)
    return i, points[i][0], model_words(points[i][1], predictor.labels)


def model_words(thresholds: Mapping[str, float], labels: Sequence[str]) -> dict[str, float]:
    """The thresholds of the words this model has (a calibration may name words of another label set)."""
    return {w: t for w, t in thresholds.items() if w in labels}


def live_config(cfg: EngineConfig, predictor: Predictor) -> tuple[EngineConfig, StreamModel | None, list[str]]:
    """The settings a session runs with: the model's calibrated thresholds (unless the user set one: its
    default point, or the operating point nearest `cfg.fa_per_hour`) with the patience and EMA they were
    fitted at, its streaming form (unless turned off) at a hop it allows; and a note on each choice.
    ValueError when a sensitivity is asked of a model without operating points."""
    notes = []
    if cfg.fa_per_hour is not None:
        _, fa, words = operating_point(predictor, cfg.fa_per_hour)
        cfg = _calibrated(cfg, words, predictor.calibrated_engine, notes)
        notes.insert(0, f"thresholds: the operating point for {fa:g} false accepts/h (asked {cfg.fa_per_hour:g}); "
                        f"{predictor.thresholds_note}")
    elif cfg.use_model_thresholds and not cfg.word_thresholds and predictor.thresholds:
        cfg = _calibrated(cfg, model_words(predictor.thresholds, predictor.labels), predictor.calibrated_engine,
                          notes)
        notes.insert(0, f"thresholds: {predictor.thresholds_note}")
    else:
        notes.append(f"threshold: {cfg.threshold:g} for every word"
                     + ("" if cfg.use_model_thresholds or not predictor.thresholds else " (--threshold given)"))
    stream = None
    if cfg.streaming and predictor.open_stream is not None:
        stream = predictor.open_stream()
        m = int(stream.spec.hop_multiple)
        if cfg.hop_samples % m:
            hop = stream_hop_s(m, cfg.hop_s)
            notes.append(f"streaming path: hop {hop * 1e3:g} ms (this model's streaming form answers every "
                         f"{m / SAMPLE_RATE * 1e3:g} ms)")
            cfg = dataclasses.replace(cfg, hop_s=hop)
        else:
            notes.append("streaming path")
    else:
        why = "turned off" if not cfg.streaming else (predictor.stream_note or "no streaming form")
        notes.append(f"full-window path ({why})")
    return cfg, stream, notes


def _calibrated(cfg: EngineConfig, words: dict[str, float], engine: Mapping[str, Any],
                notes: list[str]) -> EngineConfig:
    """`cfg` with the calibrated thresholds and the decision settings they were fitted at: thresholds
    fitted at one patience or EMA do not hold their false-accept rate at another."""
    changed = {k: v for k, v in engine.items() if k in ("patience", "ema_alpha") and getattr(cfg, k) != v}
    if changed:
        notes.append("as calibrated: " + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in sorted(changed.items())))
    return dataclasses.replace(cfg, word_thresholds=tuple(sorted(words.items())), **changed)


class LiveSession:
    """Wire a source into a DetectionEngine and watch both for failures.

    Real-time sources never wait: when the model falls behind, the engine drops the oldest
    audio and counts it. A file replayed as fast as possible waits instead, so nothing is lost.
    """

    def __init__(self, predictor: Predictor, source: Source, cfg: EngineConfig | None = None, *,
                 on_detection: Callable[[Detection], None] | None = None,
                 on_decision: Callable[[Decision], None] | None = None) -> None:
        self.predictor = predictor
        self.source = source
        cfg, stream, self.notes = live_config(cfg or EngineConfig(), predictor)
        self.engine = DetectionEngine(predictor.predict, predictor.labels, cfg, on_detection=on_detection,
                                      on_decision=on_decision, stream=stream)
        self._source_done = threading.Event()

    def start(self) -> None:
        """Start the worker, then the source. A SourceError (no device, ...) leaves nothing running."""
        self.engine.start()
        try:
            self.source.start(self._sink, on_end=self._on_end)
        except BaseException:
            self.engine.stop()
            raise

    def _sink(self, block, t_enter: float) -> None:
        self.engine.feed(block, t_enter, wait=not self.source.realtime, timeout=None)

    def _on_end(self) -> None:
        self._source_done.set()
        self.engine.end_of_stream()

    @property
    def finished(self) -> bool:
        """The source has ended and every queued hop has been decided (or the engine failed)."""
        return (self._source_done.is_set() and not self.engine.running) or self.engine.error is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the source ends and the engine has drained; True if finished."""
        if not self._source_done.wait(timeout):
            return False
        return self.engine.join(timeout)

    def check(self) -> str | None:
        """The first problem of the engine or the source, worded for the user, or None."""
        if self.engine.error is not None:
            e = self.engine.error
            return f"inference failed: {type(e).__name__}: {e}"
        return self.source.check()

    def poll(self) -> list[Decision]:
        return self.engine.poll()

    def poll_detections(self) -> list[Detection]:
        return self.engine.poll_detections()

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def set_threshold(self, threshold: float) -> None:
        self.engine.set_threshold(threshold)

    def set_word_thresholds(self, thresholds: Mapping[str, float]) -> None:
        self.engine.set_word_thresholds(thresholds)

    def stop(self) -> None:
        self.source.stop()
        self.engine.stop()


__all__ = ["LiveSession", "SourceError"]
