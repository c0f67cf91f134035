"""The streaming detection engine: ring buffer -> energy VAD -> model -> EMA -> threshold/cooldown.

One code path serves the live app and the offline evaluation. :class:`StreamProcessor` holds
all the decision logic and is fed audio in blocks of any size; it cuts the stream into hops
(default 50 ms) and, at the end of each hop, yields the last `window_s` of audio for the model
(:meth:`StreamProcessor.feed`) and turns the model's probabilities into a decision
(:meth:`StreamProcessor.decide`). :class:`DetectionEngine` runs that processor in a worker
thread behind a bounded audio queue; :func:`run_offline` runs it on a whole waveform, batching
only the model calls. Given a model whose rows are independent (any eval-mode network), both
therefore make the same decisions on the same audio.

Decision rules (documented once, here):
- **Who can trigger.** By default every class except the non-word classes: labels that start
  with "_" (``_silence_``, ``_unknown_``, ``_background_noise_``). ``EngineConfig.targets``
  restricts triggering to a subset of words (e.g. a wake word). A detection needs the
  triggering class to be the arg-max of the smoothed scores, so a word never fires while
  ``_unknown_`` or another word is more likely.
- **VAD.** The energy of each hop is compared with an adaptive noise floor; while no hop of
  the last `hangover_s` (default: one window) was voiced, the model is not run and the
  scores decay towards "nothing said" (one-hot ``_silence_``, or all zeros without it).
- **EMA.** ``s_t = alpha * p_t + (1 - alpha) * s_{t-1}``, alpha = 0.7 weighs the newest frame
  (a light smoothing that still reacts within one or two hops); s_0 is "nothing said".
- **Streaming.** Given a stream runner (backends.streaming: a model's streaming form), the
  engine hands it every sample once and asks for the probabilities at each voiced hop's end;
  it computes only what the new audio adds (frames once, one embedding per 80 ms) and, while
  the VAD is closed, skips audio no later answer depends on. Without one, the model runs on
  the last `window_s` of audio at every voiced hop (the full-window path).
- **Threshold, cooldown, re-arm.** A class fires when its smoothed score is >= its threshold
  (`word_thresholds`, calibrated per word, else `threshold`),
  at least `cooldown_s` after the previous detection of any class, and (re-arm) if its score
  has dropped below the threshold since it last fired: one word stays inside the 1 s window
  for up to a second, and without re-arming it would fire twice, 500 ms apart. A model
  calibrated along a curve carries operating points (per-word thresholds for 0.1 ... 10 false
  accepts per hour); the live app's sensitivity swaps all of one point's thresholds in at once
  (:meth:`DetectionEngine.set_word_thresholds`).
- **Patience** (openWakeWord's ``patience``). A class fires only on a hop that ends a run of
  at least `patience` consecutive decided hops on which it was the arg-max and at or above its
  threshold (the firing hop included); a run breaks on the first hop where another class leads
  or the score falls below the threshold. One hop's spike (a cough, a door) then cannot fire,
  at the price of ``(patience - 1) * hop_s`` more latency. Cooldown and re-arm apply as above
  to the hops that pass; a hop held back by them does not end the run, so the next hop of the
  run may fire. The default, 1, is the plain threshold rule. Hops are counted as decided: the
  hops shed under overload are not decisions and neither break nor extend a run.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, overload

import numpy as np

from kws.audio import SAMPLE_RATE, resample

PredictFn = Callable[[np.ndarray], np.ndarray]  # float32 [B, window] -> probabilities [B, N]


class StreamModel(Protocol):
    """What the engine needs of a streaming model (backends.streaming.StreamRunner)."""

    labels: tuple[str, ...]
    spec: Any  # zoo.streaming.StreamSpec: chunk_samples, hop_multiple, memory_samples

    def feed(self, x: np.ndarray) -> None: ...

    def feed_silence(self, n: int) -> None: ...

    def idle(self, end: int) -> None: ...

    def probs(self, end: int) -> np.ndarray: ...
LEVEL_FLOOR_DB = -100.0  # level of digital silence; keeps log energies finite


class EngineError(RuntimeError):
    """A model or configuration problem found while running the engine."""


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class VADConfig:
    """Energy voice-activity detection against an adaptive noise floor (levels in dBFS)."""

    enabled: bool = True
    margin_db: float = 10.0  # a hop is voiced when its level exceeds the floor by this much ...
    min_level_db: float = -55.0  # ... and this absolute level, so dither in digital silence never counts
    init_floor_db: float = -70.0  # start low: the first seconds run the model rather than miss a first word
    floor_rise_s: float = 3.0  # time constant of the floor rising to a louder background (a fan turned on)
    floor_fall_s: float = 0.1  # and of it falling when the room gets quieter (fast, like minimum tracking)
    hangover_s: float | None = None  # keep inferring this long after the last voiced hop; None: one window,
    # because a word is still inside the model's window for that long after it ended

    def __post_init__(self) -> None:
        if self.margin_db < 0 or self.floor_rise_s <= 0 or self.floor_fall_s <= 0:
            raise ValueError(f"invalid VAD settings: {self}")
        if self.hangover_s is not None and self.hangover_s < 0:
            raise ValueError(f"VAD hangover must be >= 0 s, got {self.hangover_s}")


@dataclass(frozen=True)
class EngineConfig:
    """Everything that shapes the decisions; the live app and the bench share it."""

    hop_s: float = 0.050  # one decision per hop: 20 decisions/s
    window_s: float = 1.0  # the model's input: the last second (Speech Commands clips are 1 s)
    ring_s: float = 3.0  # audio history kept by the ring buffer
    ema_alpha: float = 0.7  # weight of the newest frame in the exponential moving average
    threshold: float = 0.6  # smoothed probability needed to fire (every word without its own below)
    word_thresholds: tuple[tuple[str, float], ...] = ()  # (word, threshold) pairs: calibrated per word
    use_model_thresholds: bool = True  # the live app takes word_thresholds from the model's metadata when it
    # has them (calibrated to a false-accept rate); False when the user gave one threshold
    fa_per_hour: float | None = None  # the live app takes the thresholds of the model's calibrated operating
    # point nearest this false-accept rate (--sensitivity); None: its default point
    streaming: bool = True  # the live app runs the model's streaming form when it has one
    cooldown_s: float = 0.5  # minimum time between two detections (of any class)
    rearm: bool = True  # a class fires again only after its score fell below the threshold
    patience: int = 1  # consecutive hops a class must lead at/above its threshold before it fires (1: at once)
    targets: tuple[str, ...] | None = None  # classes allowed to fire; None: every word class
    vad: VADConfig = field(default_factory=VADConfig)
    queue_s: float = 0.5  # audio the worker may lag behind; beyond, the oldest blocks are dropped
    shed_s: float | None = None  # overload: while more audio than this waits, hops are not decided (counted,
    # their audio kept in the window of the next decided hop) so the worker catches up before any audio is
    # dropped; None: a fifth of queue_s
    max_pending_decisions: int = 256  # decisions waiting for a slow consumer (UI); the oldest go first
    max_pending_detections: int = 1024  # detections are rare (<= 1 per cooldown): kept separately, so a
    # consumer that only keeps up with them (a printer, a log) never misses one
    stats_size: int = 4096  # latencies kept for the p50/p95 statistics

    def __post_init__(self) -> None:
        problems = []
        if not self.hop_s > 0:
            problems.append(f"hop_s={self.hop_s} must be > 0")
        if not self.window_s >= self.hop_s:
            problems.append(f"window_s={self.window_s} must be >= hop_s={self.hop_s}")
        if not self.ring_s >= self.window_s + self.hop_s:
            problems.append(f"ring_s={self.ring_s} must hold a window plus a hop")
        if not 0 < self.ema_alpha <= 1:
            problems.append(f"ema_alpha={self.ema_alpha} must be in (0, 1]")
        if not 0 < self.threshold <= 1:
            problems.append(f"threshold={self.threshold} must be in (0, 1]")
        if isinstance(self.word_thresholds, Mapping):
            object.__setattr__(self, "word_thresholds", tuple(self.word_thresholds.items()))
        object.__setattr__(self, "word_thresholds", tuple((str(w), float(t)) for w, t in self.word_thresholds))
        bad = [f"{w}={t}" for w, t in self.word_thresholds if not 0 < t <= 1]
        if bad:
            problems.append(f"word thresholds {', '.join(bad)} must be in (0, 1]")
        if self.cooldown_s < 0:
            problems.append(f"cooldown_s={self.cooldown_s} must be >= 0")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            problems.append(f"patience={self.patience!r} must be a whole number of hops >= 1")
        if self.fa_per_hour is not None:
            if not (isinstance(self.fa_per_hour, (int, float)) and math.isfinite(self.fa_per_hour)
                    and self.fa_per_hour > 0):
                problems.append(f"fa_per_hour={self.fa_per_hour!r} must be a positive number of false accepts/h")
            elif not self.use_model_thresholds:
                problems.append("fa_per_hour picks one of the model's calibrated operating points: it cannot go "
                                "with use_model_thresholds=False (one threshold for every word)")
        if not self.queue_s >= self.hop_s:
            problems.append(f"queue_s={self.queue_s} must hold at least one hop")
        if self.shed_s is not None and not 0 <= self.shed_s < self.queue_s:
            problems.append(f"shed_s={self.shed_s} must be in [0, queue_s={self.queue_s}): shedding hops comes "
                            f"before dropping audio")
        if min(self.max_pending_decisions, self.max_pending_detections, self.stats_size) < 1:
            problems.append("queue and statistics sizes must be >= 1")
        if problems:
            raise ValueError("invalid engine settings: " + "; ".join(problems))
        if self.targets is not None:
            object.__setattr__(self, "targets", tuple(self.targets))  # lists from a CLI stay hashable

    @property
    def hop_samples(self) -> int:
        return max(1, round(self.hop_s * SAMPLE_RATE))

    @property
    def window_samples(self) -> int:
        return round(self.window_s * SAMPLE_RATE)

    @property
    def ring_samples(self) -> int:
        return round(self.ring_s * SAMPLE_RATE)

    @property
    def queue_samples(self) -> int:
        return round(self.queue_s * SAMPLE_RATE)

    @property
    def shed_samples(self) -> int:
        return round((self.queue_s / 5 if self.shed_s is None else self.shed_s) * SAMPLE_RATE)

    @property
    def cooldown_samples(self) -> int:
        return round(self.cooldown_s * SAMPLE_RATE)

    @property
    def hangover_hops(self) -> int:
        h = self.window_s if self.vad.hangover_s is None else self.vad.hangover_s
        return max(1, math.ceil(h / self.hop_s - 1e-9))


def trigger_mask(labels: Sequence[str], targets: Sequence[str] | None = None) -> np.ndarray:
    """Which classes may fire: `targets`, or every label not starting with "_" (non-word classes)."""
    labels = tuple(labels)
    if targets is None:
        mask = np.array([not lab.startswith("_") for lab in labels], dtype=bool)
    else:
        missing = [t for t in targets if t not in labels]
        if missing:
            raise ValueError(f"target word(s) {missing} are not among the model's {len(labels)} labels")
        mask = np.array([lab in targets for lab in labels], dtype=bool)
    if not mask.any():
        raise ValueError(f"no class can trigger a detection (labels: {list(labels)[:8]}...)")
    return mask


def class_thresholds(labels: Sequence[str], cfg: EngineConfig) -> np.ndarray:
    """float64 [N]: each class's threshold, `cfg.threshold` unless `cfg.word_thresholds` names it."""
    labels = tuple(labels)
    th = np.full(len(labels), float(cfg.threshold))
    unknown = [w for w, _ in cfg.word_thresholds if w not in labels]
    if unknown:
        raise ValueError(f"word threshold(s) for {unknown}, which are not among the model's labels")
    for w, t in cfg.word_thresholds:
        th[labels.index(w)] = t
    return th


def idle_scores(labels: Sequence[str]) -> np.ndarray:
    """The score vector for "nothing said": one-hot _silence_ when the model has it, else zeros."""
    v = np.zeros(len(labels), dtype=np.float32)
    if "_silence_" in labels:
        v[list(labels).index("_silence_")] = 1.0
    return v


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Detection:
    label: str
    confidence: float  # smoothed probability of `label` when it fired
    time_s: float  # stream time of the newest sample in the deciding window (the word lies before it)
    index: int  # class index in the model's labels
    hop: int  # hop number (0-based) of the deciding hop
    latency_s: float | None = None  # newest sample entered the engine -> decision (live only)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["latency_ms"] = None if self.latency_s is None else round(self.latency_s * 1e3, 3)
        del d["latency_s"]
        d["confidence"] = round(self.confidence, 4)
        d["time_s"] = round(self.time_s, 4)
        return d


@dataclass(frozen=True, eq=False)
class Decision:
    """What the engine concluded at the end of one hop (the UI draws these)."""

    hop: int
    time_s: float  # stream time of the hop's end
    level_db: float  # energy of the hop, dBFS
    floor_db: float  # VAD noise floor, dBFS
    voiced: bool  # the window holds speech (VAD with hangover); the model ran iff this is True
    smoothed: np.ndarray  # float32 [N] EMA scores after this hop
    probs: np.ndarray | None  # float32 [N] raw model output, None when the VAD skipped the model
    detection: Detection | None
    latency_s: float | None  # newest sample entered the engine -> this decision (live only)
    infer_s: float | None  # time spent in the model for this hop


# ----------------------------------------------------------------------------- building blocks


class RingBuffer:
    """Fixed-size float32 history of the stream; never allocates after construction."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("ring capacity must be >= 1")
        self._buf = np.zeros(capacity, dtype=np.float32)  # zeros: the stream "starts in silence"
        self._head = 0  # index of the next write
        self.total = 0  # samples ever written

    @property
    def capacity(self) -> int:
        return self._buf.size

    def write(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).ravel()
        n = x.size
        self.total += n
        if n >= self.capacity:  # only the newest `capacity` samples can survive
            self._buf[:] = x[-self.capacity :]
            self._head = 0
            return
        end = self._head + n
        if end <= self.capacity:
            self._buf[self._head : end] = x
        else:
            k = self.capacity - self._head
            self._buf[self._head :] = x[:k]
            self._buf[: n - k] = x[k:]
        self._head = end % self.capacity

    def latest(self, n: int) -> np.ndarray:
        """A copy of the newest `n` samples, oldest first."""
        if not 0 < n <= self.capacity:
            raise ValueError(f"cannot read {n} samples from a ring of {self.capacity}")
        start = self._head - n
        if start >= 0:
            return self._buf[start : self._head].copy()
        return np.concatenate((self._buf[start:], self._buf[: self._head]))


class EnergyVAD:
    """Hop energy vs. an adaptive noise floor tracked in dB (fast fall, slow rise).

    The floor follows the quietest recent level: it drops within ~`floor_fall_s` when the room
    gets quieter and creeps up with time constant `floor_rise_s` when it gets louder, so a
    steady new background (fan, traffic) stops counting as speech after a few seconds while a
    one-second word barely moves it.
    """

    def __init__(self, cfg: VADConfig, hop_s: float) -> None:
        self.cfg = cfg
        self.floor_db = cfg.init_floor_db
        self._rise = 1.0 - math.exp(-hop_s / cfg.floor_rise_s)
        self._fall = 1.0 - math.exp(-hop_s / cfg.floor_fall_s)

    @staticmethod
    def level_db(mean_square: float) -> float:
        return max(LEVEL_FLOOR_DB, 10.0 * math.log10(mean_square + 1e-12))

    def update(self, level_db: float) -> bool:
        """Classify one hop by its level (dBFS), then adapt the floor. Returns voiced."""
        voiced = level_db > self.floor_db + self.cfg.margin_db and level_db > self.cfg.min_level_db
        rate = self._fall if level_db < self.floor_db else self._rise
        self.floor_db += rate * (level_db - self.floor_db)
        return voiced


class EMASmoother:
    """s_t = alpha * p_t + (1 - alpha) * s_{t-1}, in float32 so that traces replay bit-exactly."""

    def __init__(self, alpha: float, initial: np.ndarray) -> None:
        self.alpha = np.float32(alpha)
        self._initial = np.asarray(initial, dtype=np.float32).copy()
        self.state = self._initial.copy()

    def update(self, p: np.ndarray) -> np.ndarray:
        self.state = (self.alpha * np.asarray(p, dtype=np.float32)
                      + (np.float32(1.0) - self.alpha) * self.state).astype(np.float32)
        return self.state

    def reset(self) -> None:
        self.state = self._initial.copy()


class Trigger:
    """Threshold + cooldown + re-arm on the smoothed scores (see the module docstring)."""

    def __init__(self, labels: Sequence[str], cfg: EngineConfig) -> None:
        self.labels = tuple(labels)
        self.mask = trigger_mask(self.labels, cfg.targets)
        self.thresholds = class_thresholds(self.labels, cfg)  # replaced whole (one store) when the UI sets one
        self.cooldown = cfg.cooldown_samples
        self.rearm = cfg.rearm
        self.patience = cfg.patience
        self._armed = np.ones(len(self.labels), dtype=bool)
        self._last_end: int | None = None
        self._run_class = -1  # the class that led at/above its threshold on the previous hop, -1: none did
        self._run = 0  # consecutive hops it has done so

    def set_threshold(self, threshold: float) -> None:
        """One threshold for every class (the user's choice overrides calibrated ones)."""
        self.thresholds = np.full(len(self.labels), float(threshold))

    def update(self, smoothed: np.ndarray, end: int, hop: int) -> Detection | None:
        """Decide on one hop whose newest sample is stream sample `end - 1`."""
        th = self.thresholds
        self._armed |= smoothed < th
        k = int(np.argmax(smoothed))
        score = float(smoothed[k])
        ok = score >= th[k]
        # the run is counted for every class, triggering or not: replay_trigger counts it the same way
        self._run = (self._run + 1 if k == self._run_class else 1) if ok else 0
        self._run_class = k if ok else -1
        if not self.mask[k] or not ok or self._run < self.patience:
            return None
        if self.rearm and not self._armed[k]:
            return None
        if self._last_end is not None and end - self._last_end < self.cooldown:
            return None
        self._armed[k] = False
        self._last_end = end
        return Detection(self.labels[k], score, end / SAMPLE_RATE, k, hop)


@dataclass(frozen=True, eq=False)
class HopFrame:
    """A hop ready for the model: its window (None if the VAD skips it) and VAD readings."""

    hop: int
    end: int  # stream index one past the newest sample
    level_db: float
    floor_db: float
    voiced: bool  # the model is needed for this hop
    window: np.ndarray | None  # the model's input; None when the VAD skips it or a streaming model holds the audio
    t_enter: float | None  # clock time when the newest sample entered the engine


class StreamProcessor:
    """The whole decision logic, synchronous and deterministic: feed audio, get decisions."""

    def __init__(self, labels: Sequence[str], cfg: EngineConfig | None = None,
                 stream: StreamModel | None = None) -> None:
        self.cfg = cfg = cfg or EngineConfig()
        self.labels = tuple(labels)
        if len(self.labels) < 2:
            raise ValueError("a detector needs at least two classes")
        self.stream = stream
        if stream is not None:
            check_stream(stream, self.labels, cfg)
        self.ring = RingBuffer(cfg.ring_samples)
        self.vad = EnergyVAD(cfg.vad, cfg.hop_s)
        self.idle = idle_scores(self.labels)
        self.ema = EMASmoother(cfg.ema_alpha, self.idle)
        self.trigger = Trigger(self.labels, cfg)
        self.pos = 0  # stream samples consumed (including skipped gaps)
        self.hop = 0  # hops closed
        self.skipped_samples = 0  # lost in gaps (dropped blocks)
        self.skipped_hops = 0
        self._next_end = cfg.hop_samples
        self._energy = 0.0  # sum of squares of the current hop
        self._since_voiced = cfg.hangover_hops  # start "silent"

    def feed(self, block: np.ndarray, t_enter: float | None = None, start: int | None = None) -> list[HopFrame]:
        """Append audio; returns one frame per hop completed by it.

        `start` is the stream index of the block's first sample when the caller knows it: a
        value beyond the current position means blocks were dropped upstream; the hops that
        fell into the gap are skipped (and counted) so that stream times stay true.
        """
        x = np.asarray(block, dtype=np.float32).ravel()
        if start is not None and start != self.pos:
            if start < self.pos:
                raise ValueError(f"block starts at sample {start}, before the stream position {self.pos}")
            self._skip(start - self.pos)
        frames = []
        hop_n = self.cfg.hop_samples
        i = 0
        while i < x.size:
            take = min(x.size - i, self._next_end - self.pos)
            chunk = x[i : i + take]
            self.ring.write(chunk)
            if self.stream is not None:
                self.stream.feed(chunk)
            self._energy += float(np.dot(chunk, chunk))
            self.pos += take
            i += take
            if self.pos == self._next_end:
                frames.append(self._close_hop(hop_n, t_enter))
        return frames

    def _skip(self, n: int) -> None:
        hop_n = self.cfg.hop_samples
        self.skipped_samples += n
        self.pos += n
        if self.stream is not None:
            self.stream.feed_silence(n)  # the stream model's clock stays the engine's
        if self.pos < self._next_end:  # the gap ends inside the current hop: it just has less audio
            return
        lost = (self.pos - self._next_end) // hop_n + 1  # hop ends that fell into the gap
        self.skipped_hops += lost
        self.hop += lost  # hop k always ends at stream sample (k + 1) * hop
        self._next_end = (self.pos // hop_n + 1) * hop_n
        self._energy = 0.0

    def _close_hop(self, hop_n: int, t_enter: float | None) -> HopFrame:
        level = self.vad.level_db(self._energy / hop_n)
        floor = self.vad.floor_db  # the floor the hop was judged against
        voiced_now = self.vad.update(level)
        self._since_voiced = 0 if voiced_now else self._since_voiced + 1
        voiced = (not self.cfg.vad.enabled) or self._since_voiced < self.cfg.hangover_hops
        window = self.ring.latest(self.cfg.window_samples) if voiced and self.stream is None else None
        frame = HopFrame(self.hop, self.pos, level, floor, voiced, window, t_enter)
        self.hop += 1
        self._next_end += hop_n
        self._energy = 0.0
        return frame

    def decide(self, frame: HopFrame, probs: np.ndarray | None, now: float | None = None,
               infer_s: float | None = None) -> Decision:
        """Smooth and threshold one hop. `probs` [N] is the model output (None iff skipped by the VAD)."""
        if not frame.voiced:
            p = None
            smoothed = self.ema.update(self.idle)
        else:
            if probs is None:
                raise EngineError(f"hop {frame.hop} needs model probabilities")
            p = np.asarray(probs, dtype=np.float32).reshape(-1)
            if p.size != len(self.labels):
                raise EngineError(f"the model returned {p.size} scores for {len(self.labels)} labels")
            if not np.all(np.isfinite(p)):
                raise EngineError(f"the model returned non-finite scores at hop {frame.hop}")
            smoothed = self.ema.update(p)
        det = self.trigger.update(smoothed, frame.end, frame.hop)
        latency = None if (now is None or frame.t_enter is None) else now - frame.t_enter
        if det is not None and latency is not None:
            det = dataclasses.replace(det, latency_s=latency)
        return Decision(frame.hop, frame.end / SAMPLE_RATE, frame.level_db, frame.floor_db, frame.voiced,
                        smoothed.copy(), p, det, latency, infer_s)


    def infer(self, frame: HopFrame, predict_fn: PredictFn | None) -> np.ndarray:
        """The model's probabilities [N] for a voiced hop: from the stream model, else predict_fn on its window."""
        if self.stream is not None:
            return check_probs(self.stream.probs(frame.end)[None], 1, len(self.labels))[0]
        if predict_fn is None:
            raise EngineError("no model: neither a predict function nor a stream model was given")
        return check_probs(predict_fn(frame.window[None, :]), 1, len(self.labels))[0]

    def skip(self, frame: HopFrame) -> None:
        """A hop decided without the model (VAD closed): the stream model may skip the audio no later hop needs."""
        if self.stream is not None:
            self.stream.idle(frame.end)


def check_stream(stream: StreamModel, labels: Sequence[str], cfg: EngineConfig) -> None:
    """A stream model fits this engine: the same labels, and hops ending where it defines answers."""
    if tuple(stream.labels) != tuple(labels):
        raise EngineError("the stream model's labels differ from the engine's")
    m = int(stream.spec.hop_multiple)
    if cfg.hop_samples % m:
        raise EngineError(f"this model's streaming form answers every {m} samples ({m / SAMPLE_RATE * 1e3:g} ms); "
                          f"the hop of {cfg.hop_samples} samples is not a multiple "
                          f"(use {stream_hop_s(m, cfg.hop_s):g} s)")


def stream_hop_s(hop_multiple: int, hop_s: float) -> float:
    """The hop nearest to `hop_s` that a streaming form answering every `hop_multiple` samples allows."""
    n = max(1, round(hop_s * SAMPLE_RATE / hop_multiple)) * hop_multiple
    return n / SAMPLE_RATE


def check_probs(out: Any, batch: int, n_labels: int) -> np.ndarray:
    """Validate a predict_fn result: float [batch, N]."""
    a = np.asarray(out, dtype=np.float32)
    if a.shape != (batch, n_labels):
        raise EngineError(f"predict_fn returned shape {a.shape}, expected ({batch}, {n_labels})")
    return a


# ----------------------------------------------------------------------------- bounded queue


class BoundedQueue:
    """A FIFO of audio blocks bounded by total samples.

    A real-time producer (the sound card) cannot wait, so `put(wait=False)` drops the *oldest*
    blocks to make room: the worker then catches up on the freshest audio, which is what a
    live detector should decide on. A file replayed as fast as possible uses `wait=True` and
    is slowed down instead (no loss). Drops are counted; memory never grows past the bound.
    """

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self._items: collections.deque[tuple[np.ndarray, float | None, int]] = collections.deque()
        self._samples = 0
        self._cond = threading.Condition()
        self._closed = False
        self.dropped_blocks = 0
        self.dropped_samples = 0
        self.high_water = 0  # most samples ever queued at once

    def put(self, block: np.ndarray, t_enter: float | None, start: int, wait: bool = False,
            timeout: float | None = None) -> int:
        """Queue a block; returns how many blocks were dropped to make room."""
        n = block.size
        dropped = 0
        with self._cond:
            if self._closed:
                raise EngineError("the engine's input is closed")
            if wait:
                ok = self._cond.wait_for(lambda: self._samples + n <= self.max_samples or not self._items
                                         or self._closed, timeout)
                if self._closed:
                    raise EngineError("the engine's input is closed")
                if not ok:
                    raise EngineError(f"timed out after {timeout} s waiting for the engine to take audio")
            while self._items and self._samples + n > self.max_samples:
                old, _, _ = self._items.popleft()
                self._samples -= old.size
                dropped += 1
                self.dropped_samples += old.size
            self.dropped_blocks += dropped
            self._items.append((block, t_enter, start))
            self._samples += n
            self.high_water = max(self.high_water, self._samples)
            self._cond.notify_all()
        return dropped

    def get(self, timeout: float | None = None) -> tuple[np.ndarray, float | None, int] | None:
        """The oldest block, or None on timeout / when closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            self._samples -= item[0].size
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def samples(self) -> int:
        return self._samples

    def __len__(self) -> int:
        return len(self._items)


# ----------------------------------------------------------------------------- live engine


@dataclass(frozen=True)
class EngineStats:
    decisions: int
    inferred: int  # decisions for which the model ran (VAD open)
    detections: int
    decisions_per_s: float  # over the last ~2 s of wall time
    stream_s: float  # stream time decided so far
    dropped_blocks: int  # audio blocks dropped because the worker fell behind
    dropped_samples: int
    skipped_hops: int  # hops lost in those gaps
    shed_hops: int  # hops not decided under overload (the model was behind); their audio was kept
    dropped_decisions: int  # decisions a slow consumer never polled
    dropped_detections: int  # detections nobody polled (only if poll_detections is never called)
    queue_samples: int
    queue_high_water: int
    latency_p50_ms: float | None  # newest sample entered -> decision, decisions that ran the model
    latency_p95_ms: float | None
    latency_all_p50_ms: float | None  # ... all decisions (VAD-skipped ones included)
    latency_all_p95_ms: float | None
    infer_p50_ms: float | None
    level_db: float | None  # newest hop level (for a level meter)


def _pct(values: Sequence[float], q: float) -> float | None:
    return None if not values else float(np.percentile(np.asarray(values), q) * 1e3)


class DetectionEngine:
    """Runs a StreamProcessor in a worker thread, fed by a source's callback through a bounded queue.

    `feed()` never blocks a real-time producer. When the model cannot keep up, the worker first
    sheds decisions (hops that need the model are skipped, and counted, while more than
    `shed_s` of audio waits), and only a queue overflowing `queue_s` drops audio. Consumers
    either pass callbacks (called on the worker thread; keep them short) or `poll()` the
    bounded queue of recent decisions.
    """

    def __init__(self, predict_fn: PredictFn | None, labels: Sequence[str], cfg: EngineConfig | None = None, *,
                 on_decision: Callable[[Decision], None] | None = None,
                 on_detection: Callable[[Detection], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter, stream: StreamModel | None = None) -> None:
        self.cfg = cfg or EngineConfig()
        self.labels = tuple(labels)
        self.predict_fn = predict_fn
        self.clock = clock
        self.stream = stream  # the model's streaming form (the streaming path), or None (full-window path)
        self._proc = StreamProcessor(self.labels, self.cfg, stream)
        self._audio = BoundedQueue(self.cfg.queue_samples)
        self._out: collections.deque[Decision] = collections.deque()
        self._dets: collections.deque[Detection] = collections.deque()
        self._out_lock = threading.Lock()
        self._on_decision, self._on_detection, self._on_error = on_decision, on_detection, on_error
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._fed = 0  # samples offered by the source (dropped ones included): the stream clock
        self.error: BaseException | None = None
        # statistics (bounded)
        self._lat_inferred: collections.deque[float] = collections.deque(maxlen=self.cfg.stats_size)
        self._lat_all: collections.deque[float] = collections.deque(maxlen=self.cfg.stats_size)
        self._infer: collections.deque[float] = collections.deque(maxlen=self.cfg.stats_size)
        self._recent: collections.deque[float] = collections.deque(maxlen=256)  # decision clock times
        self.decisions = self.inferred = self.detections = self.dropped_decisions = self.dropped_detections = 0
        self.shed_hops = 0
        self._lossless = False  # set by feed(wait=True): a file replayed as fast as possible loses nothing
        self._last_level: float | None = None
        self._last_time_s = 0.0

    # -- producer side
    def feed(self, block: np.ndarray, t_enter: float | None = None, *, wait: bool = False,
             timeout: float | None = 10.0) -> int:
        """Hand audio to the worker (thread-safe). Returns the number of blocks dropped to make room.

        t_enter: when the block's newest sample entered (default: now). wait=True applies
        back-pressure instead of dropping (for files replayed as fast as possible).
        """
        x = np.array(block, dtype=np.float32, copy=True).ravel()  # the caller may reuse its buffer
        t = self.clock() if t_enter is None else t_enter
        self._lossless = self._lossless or wait  # a producer that waits is slowed down, never shed
        start = self._fed
        self._fed += x.size
        return self._audio.put(x, t, start, wait=wait, timeout=timeout)

    def end_of_stream(self) -> None:
        """No more audio: the worker decides what is queued, then stops."""
        self._audio.close()

    # -- lifecycle
    def start(self) -> "DetectionEngine":
        if self._thread is not None:
            raise EngineError("engine already started")
        self._thread = threading.Thread(target=self._run, name="kws-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._audio.close()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True when it has finished."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def set_threshold(self, threshold: float) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self._proc.trigger.set_threshold(threshold)  # one attribute store: atomic under the GIL

    def set_word_thresholds(self, thresholds: Mapping[str, float]) -> None:
        """Every class's threshold at once (an operating point of the calibrated curve): the named words
        get theirs, the others the configured `threshold`. Validated as EngineConfig.word_thresholds are."""
        cfg = dataclasses.replace(self.cfg, word_thresholds=tuple(dict(thresholds).items()))
        # a new vector, stored in one go: the worker decides each hop on the old thresholds or the new, never a mix
        self._proc.trigger.thresholds = class_thresholds(self.labels, cfg)

    @property
    def threshold(self) -> float:
        """The threshold of the words (the highest, when they have calibrated ones of their own)."""
        trig = self._proc.trigger
        return float(trig.thresholds[trig.mask].max())

    @property
    def thresholds(self) -> np.ndarray:
        """float64 [N]: every class's threshold now."""
        return self._proc.trigger.thresholds.copy()

    # -- consumer side
    def poll(self, max_items: int | None = None) -> list[Decision]:
        """Decisions since the last poll (oldest first); at most `max_pending_decisions` are kept."""
        with self._out_lock:
            n = len(self._out) if max_items is None else min(max_items, len(self._out))
            return [self._out.popleft() for _ in range(n)]

    def poll_detections(self) -> list[Detection]:
        """Detections since the last call (oldest first), independent of :meth:`poll`."""
        with self._out_lock:
            out = list(self._dets)
            self._dets.clear()
            return out

    def stats(self) -> EngineStats:
        now = self.clock()
        recent = [t for t in list(self._recent) if now - t <= 2.0]
        if len(recent) >= 2:
            rate = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)
        else:
            rate = 0.0
        lat_i, lat_a, inf = list(self._lat_inferred), list(self._lat_all), list(self._infer)
        return EngineStats(
            decisions=self.decisions, inferred=self.inferred, detections=self.detections,
            decisions_per_s=rate, stream_s=self._last_time_s,
            dropped_blocks=self._audio.dropped_blocks, dropped_samples=self._audio.dropped_samples,
            skipped_hops=self._proc.skipped_hops, shed_hops=self.shed_hops,
            dropped_decisions=self.dropped_decisions, dropped_detections=self.dropped_detections,
            queue_samples=self._audio.samples, queue_high_water=self._audio.high_water,
            latency_p50_ms=_pct(lat_i, 50), latency_p95_ms=_pct(lat_i, 95),
            latency_all_p50_ms=_pct(lat_a, 50), latency_all_p95_ms=_pct(lat_a, 95),
            infer_p50_ms=_pct(inf, 50), level_db=self._last_level)

    def latencies(self, inferred_only: bool = True) -> list[float]:
        """The recent mic-to-decision latencies in seconds (bounded by cfg.stats_size)."""
        return list(self._lat_inferred if inferred_only else self._lat_all)

    def infer_times(self) -> list[float]:
        """The recent times spent in the model (predict_fn or the stream model) per decided hop, in seconds."""
        return list(self._infer)

    # -- worker
    def _run(self) -> None:
        proc = self._proc
        shed_after = self.cfg.shed_samples
        try:
            while not self._stop.is_set():
                item = self._audio.get(timeout=0.1)
                if item is None:
                    if self._audio.closed and len(self._audio) == 0:
                        break
                    continue
                block, t_enter, start = item
                for frame in proc.feed(block, t_enter, start):
                    probs = infer = None
                    if frame.voiced:
                        if not self._lossless and self._audio.samples > shed_after:
                            # Overload: shed this hop's decision, not audio. Its samples stay in the
                            # ring (and the stream model), for the next hop that is decided.
                            self.shed_hops += 1
                            continue
                        t0 = self.clock()
                        probs = proc.infer(frame, self.predict_fn)
                        infer = self.clock() - t0
                    else:
                        proc.skip(frame)
                    self._emit(proc.decide(frame, probs, self.clock(), infer))
                    if self._stop.is_set():
                        break
        except BaseException as e:  # noqa: BLE001 - reported to the UI/console, never a silent thread death
            self.error = e
            self._audio.close()
            if self._on_error is not None:
                self._on_error(e)

    def _emit(self, d: Decision) -> None:
        self.decisions += 1
        self._last_level = d.level_db
        self._last_time_s = d.time_s
        self._recent.append(self.clock())
        if d.latency_s is not None:
            self._lat_all.append(d.latency_s)
            if d.probs is not None:
                self._lat_inferred.append(d.latency_s)
        if d.infer_s is not None:
            self._infer.append(d.infer_s)
            self.inferred += 1
        with self._out_lock:
            if len(self._out) >= self.cfg.max_pending_decisions:
                self._out.popleft()  # a stalled consumer loses old decisions, not memory
                self.dropped_decisions += 1
            self._out.append(d)
            if d.detection is not None:
                if len(self._dets) >= self.cfg.max_pending_detections:
                    self._dets.popleft()
                    self.dropped_detections += 1
                self._dets.append(d.detection)
        if d.detection is not None:
            self.detections += 1
            if self._on_detection is not None:
                self._on_detection(d.detection)
        if self._on_decision is not None:
            self._on_decision(d)


# ----------------------------------------------------------------------------- offline evaluation


@dataclass(frozen=True, eq=False)
class ScoreTrace:
    """Per-hop smoothed scores of a stream, for threshold sweeps (FA/h vs. miss curves).

    Everything up to the EMA is independent of the threshold, so re-running only the trigger
    over this trace (:meth:`detections`) gives exactly what :func:`run_offline` would detect
    at another threshold, without running the model again.
    """

    labels: tuple[str, ...]
    cfg: EngineConfig
    ends: np.ndarray  # int64 [H]: stream index one past each hop's newest sample
    smoothed: np.ndarray  # float32 [H, N]
    voiced: np.ndarray  # bool [H]: the model ran on this hop

    @property
    def times_s(self) -> np.ndarray:
        return self.ends / SAMPLE_RATE

    def detections(self, threshold: float | None = None, cfg: EngineConfig | None = None, *,
                   thresholds: Mapping[str, float] | None = None) -> list[Detection]:
        """Replay the trigger (thresholds, cooldown, re-arm, targets) over the stored scores.

        threshold: one threshold for every word (calibrated ones dropped: a sweep);
        thresholds: per-word thresholds (the other words keep the config's threshold).
        """
        cfg = cfg or self.cfg
        if threshold is not None:
            cfg = dataclasses.replace(cfg, threshold=threshold, word_thresholds=())
        if thresholds is not None:
            cfg = dataclasses.replace(cfg, word_thresholds=tuple(thresholds.items()))
        return replay_trigger(self.labels, cfg, self.ends, self.smoothed)


def replay_trigger(labels: Sequence[str], cfg: EngineConfig, ends: np.ndarray, smoothed: np.ndarray) -> list[Detection]:
    """What :class:`Trigger` decides hop by hop over `smoothed` [H, N], computed at the hops that can fire.

    A hop can fire only when its arg-max class may trigger, reaches its threshold and has done
    so for `patience` hops in a row (a run length computed for all hops at once); every other
    hop matters only through re-arming (a score below the threshold since the class last
    fired), which is looked up in the sorted hops where that class was below it. Thousands of
    times faster than stepping a Trigger over hours of hops, and the same detections
    (tests/test_thresholds.py compares the two on random traces).
    """
    labels = tuple(labels)
    th = class_thresholds(labels, cfg)
    mask = trigger_mask(labels, cfg.targets)
    S = np.asarray(smoothed)
    if S.shape[0] == 0:
        return []
    top = S.argmax(axis=1)
    score = S[np.arange(S.shape[0]), top]
    ok = score >= th[top]  # the hop's leader is at/above its threshold
    can_fire = mask[top] & ok
    if cfg.patience > 1:
        can_fire &= run_lengths(top, ok) >= cfg.patience
    cooldown = cfg.cooldown_samples
    out: list[Detection] = []
    last_end: int | None = None
    last_fire: dict[int, int] = {}  # class -> hop of its latest detection
    below: dict[int, np.ndarray] = {}  # class -> hops where its score is below its threshold
    for h in np.flatnonzero(can_fire):
        c = int(top[h])
        if cfg.rearm and c in last_fire:
            if c not in below:
                below[c] = np.flatnonzero(S[:, c] < th[c])
            b = below[c]
            i = int(np.searchsorted(b, last_fire[c], side="right"))
            if not (i < b.size and b[i] < h):
                continue  # not re-armed since it last fired
        end = int(ends[h])
        if last_end is not None and end - last_end < cooldown:
            continue
        last_fire[c], last_end = int(h), end
        out.append(Detection(labels[c], float(score[h]), end / SAMPLE_RATE, c, int(h)))
    return out


def run_lengths(top: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """int64 [H]: for each hop, how many hops in a row up to it had the same leader `top` with `ok` (0 if not ok).

    A run starts at an ok hop whose previous hop was not ok or had another leader; each hop's
    run is its distance from the latest start at or before it (a running maximum), plus one.
    """
    top, ok = np.asarray(top), np.asarray(ok, dtype=bool)
    idx = np.arange(top.size)
    cont = np.zeros(top.size, dtype=bool)
    cont[1:] = ok[1:] & ok[:-1] & (top[1:] == top[:-1])
    start = np.maximum.accumulate(np.where(ok & ~cont, idx, 0))
    return np.where(ok, idx - start + 1, 0)


@overload
def run_offline(predict_fn: PredictFn | None, labels: Sequence[str], wave: np.ndarray,
                cfg: EngineConfig | None = ..., *, batch_size: int = ..., trace: Literal[False] = ...,
                sample_rate: int = ..., stream: StreamModel | None = ...) -> list[Detection]: ...


@overload
def run_offline(predict_fn: PredictFn | None, labels: Sequence[str], wave: np.ndarray,
                cfg: EngineConfig | None = ..., *, batch_size: int = ..., trace: Literal[True],
                sample_rate: int = ..., stream: StreamModel | None = ...) -> tuple[list[Detection], ScoreTrace]: ...


def run_offline(predict_fn: PredictFn | None, labels: Sequence[str], wave: np.ndarray,
                cfg: EngineConfig | None = None, *, batch_size: int = 32, trace: bool = False,
                sample_rate: int = SAMPLE_RATE, stream: StreamModel | None = None):
    """Detections on a whole waveform, hop by hop, through the live engine's StreamProcessor.

    batch_size groups up to that many hops' windows into one model call (the VAD, EMA and
    trigger still step hop by hop); with a row-independent model the result equals
    batch_size=1 and the live engine. trace=True also returns the per-hop :class:`ScoreTrace`.
    Memory stays bounded by the batch, whatever the length of `wave`. With `stream` (a stream
    model, fresh or reset) the streaming path decides instead, hop by hop, as the live engine.
    """
    cfg = cfg or EngineConfig()
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    x = np.asarray(wave, dtype=np.float32).ravel()
    if sample_rate != SAMPLE_RATE:
        x = resample(x, sample_rate, SAMPLE_RATE)
    proc = StreamProcessor(labels, cfg, stream)
    n = len(proc.labels)
    dets: list[Detection] = []
    ends: list[int] = []
    scores: list[np.ndarray] = []
    voiced: list[bool] = []
    chunk = batch_size * cfg.hop_samples  # one chunk closes at most batch_size hops
    for i in range(0, x.size, chunk):
        frames = proc.feed(x[i : i + chunk])
        probs: dict[int, np.ndarray] = {}
        todo = [f for f in frames if f.window is not None]
        if todo:
            if predict_fn is None:
                raise EngineError("no model: neither a predict function nor a stream model was given")
            out = check_probs(predict_fn(np.stack([f.window for f in todo])), len(todo), n)
            probs = {f.hop: out[j] for j, f in enumerate(todo)}
        for f in frames:
            if stream is not None:  # in hop order: the stream model answers for the audio up to each hop
                if f.voiced:
                    probs[f.hop] = proc.infer(f, None)
                else:
                    proc.skip(f)
            d = proc.decide(f, probs.get(f.hop))
            if d.detection is not None:
                dets.append(d.detection)
            if trace:
                ends.append(f.end)
                scores.append(d.smoothed)
                voiced.append(f.voiced)
    if not trace:
        return dets
    tr = ScoreTrace(proc.labels, cfg, np.asarray(ends, dtype=np.int64),
                    np.stack(scores) if scores else np.zeros((0, n), np.float32), np.asarray(voiced, dtype=bool))
    return dets, tr
