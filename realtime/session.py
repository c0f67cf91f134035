"""A running detector: one source feeding one engine. Shared by the headless CLI and the GUI."""
from __future__ import annotations

import dataclasses
import threading
from typing import Callable

from kws.audio import SAMPLE_RATE
from realtime.engine import (Decision, Detection, DetectionEngine, EngineConfig, EngineStats, StreamModel,
                             stream_hop_s)
from realtime.predictor import Predictor
from realtime.sources import Source, SourceError


def live_config(cfg: EngineConfig, predictor: Predictor) -> tuple[EngineConfig, StreamModel | None, list[str]]:
    """The settings a session runs with: the model's calibrated thresholds (unless the user set one),
    its streaming form (unless turned off) at a hop it allows; and a note on each choice."""
    notes = []
    if cfg.use_model_thresholds and not cfg.word_thresholds and predictor.thresholds:
        words = {w: t for w, t in predictor.thresholds.items() if w in predictor.labels}
        cfg = dataclasses.replace(cfg, word_thresholds=tuple(sorted(words.items())))
        notes.append(f"thresholds: {predictor.thresholds_note}")
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

    def stop(self) -> None:
        self.source.stop()
        self.engine.stop()


__all__ = ["LiveSession", "SourceError"]
