"""Per-word detection thresholds calibrated to a false-accept rate, and the command that fits them.

    python -m bench calibrate --model REF --input room.wav     # your room or microphone: a calibrated copy
    python -m bench calibrate --model REF --negatives           # the built-in keyword-free stream (2 h)

A model's scores on keyword-free audio give, for each word, the peaks of its excursions: the
highest smoothed score of each stretch where the word was the engine's arg-max above the
lowest score considered (`base`), i.e. its would-be false accepts. A word's threshold is where
its rate of peaks falls to its share of the target (`target / words` per hour). Hours of
audio seldom hold that few, so the rate is extrapolated past the highest peaks with an
exponential tail fitted to the top ones in logit space (peaks over threshold: the excesses of
the top k over the k-th are exponential with mean `beta`), and the threshold is
`u + beta * ln(k / (share * hours))` back on the probability scale. A word with fewer than
`tail_peaks` peaks has too few to fit its own tail: its rate is taken as its share of all
words' peaks (add-one-half smoothed) times the pooled tail, so a word that seldom peaked gets
a lower threshold, but never one below where the pooled evidence ends. Where the audio holds
more peaks than a word's share allows, the threshold is placed above the last one that must
go. Thresholds are clipped to [t_min, t_max], then replayed through the engine's own trigger
(cooldown, re-arm) over the same audio; the false accepts that remain are reported with the
hours they were counted on.

A recording of your room is short: it can show that a threshold is too low, never that a
lower one is safe at 0.5 per hour. So `--input` keeps, for each word, the higher of the
model's thresholds and those fitted on the recording (`--replace` keeps the recording's).
The result is a calibrated copy of the model (a checkpoint whose metadata holds the
thresholds; an ONNX file's metadata, for .onnx models) that `live.py --weights` (or `--onnx`)
uses by default.

Beside the target's thresholds, the copy carries the same fit at 0.1, 0.2, 0.5, 1, 2, 5 and
10 false accepts per hour (its operating points), which `live.py --sensitivity` and the app's
Sensitivity slider choose from. With `--input`, each is the higher of the model's point at
that rate and the recording's, as the target's are; a model calibrated at one rate only then
keeps none.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from realtime.engine import EngineConfig, ScoreTrace, replay_trigger, trigger_mask
from backends.registry import DEFAULT_BACKEND

if TYPE_CHECKING:
    from zoo.meta import CheckpointMeta

DEFAULT_TARGET = 0.5  # false accepts per hour, all words together (openWakeWord's aim)
# the operating points written beside it: the live app's sensitivity control moves along these
OPERATING_POINTS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
T_MIN, T_MAX = 0.5, 0.9999  # a threshold below 0.5 would let a word fire with most of the probability elsewhere
BASE = 0.3  # peaks are collected from here: more of them, a better-measured tail
TAIL_PEAKS = 10
DEFAULT_BETA = 1.0  # logit units: the tail slope when no peaks at all were seen


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def trigger_words(trace: ScoreTrace) -> list[str]:
    mask = trigger_mask(trace.labels, trace.cfg.targets)
    return [w for w, m in zip(trace.labels, mask) if m]


def peaks(trace: ScoreTrace, word: str, base: float = BASE) -> np.ndarray:
    """The would-be false accepts of `word` from `base` up: each one's highest score while it was the arg-max,
    highest first. A detection at any threshold t >= base happens on one of these excursions iff its
    peak is >= t (up to the cooldown shared with other words, which the final replay accounts for)."""
    c = trace.labels.index(word)
    cfg = dataclasses.replace(trace.cfg, targets=(word,), threshold=base, word_thresholds=())
    S = trace.smoothed
    dets = replay_trigger(trace.labels, cfg, trace.ends, S)
    below = np.flatnonzero(S[:, c] < base)
    top = S.argmax(axis=1) == c
    out = []
    for d in dets:
        i = int(np.searchsorted(below, d.hop, side="right"))
        stop = int(below[i]) if i < below.size else S.shape[0]
        seg = slice(d.hop, stop)
        out.append(float(S[seg, c][top[seg]].max()))
    return np.sort(np.asarray(out, dtype=np.float64))[::-1]


def tail_threshold(p: np.ndarray, allowed: float, tail_peaks: int,
                   beta: float | None) -> tuple[float, str, float | None]:
    """The score above which `allowed` of the peaks `p` (highest first) are expected: (threshold, how, beta)."""
    if p.size <= allowed:
        return 0.0, "floor", None
    if allowed >= 1:  # enough audio to count: just above the last peak that must go
        return float(np.nextafter(p[int(math.floor(allowed))], 1.0)), "count", None
    z = logit(p[:tail_peaks])
    b = _beta(z) if beta is None else beta
    b = DEFAULT_BETA if b is None else b
    return sigmoid(float(z[-1] + b * math.log(z.size / allowed))), "tail", round(b, 4)


@dataclass(frozen=True)
class WordFit:
    threshold: float
    peaks: int  # would-be false accepts (excursions from `base` up) on the fitting audio
    how: str  # "floor": within budget anyway; "count": above the last peak that must go; "tail": extrapolated;
    # "pooled (...)": too few peaks of its own, its share of all words' peaks
    beta: float | None = None
    top_peaks: tuple[float, ...] = ()


@dataclass(frozen=True)
class Calibration:
    values: dict[str, float]
    target_fa_per_hour: float
    negative_hours: float
    fitted_on: str
    false_accepts: int  # with these thresholds, replayed over the fitting audio
    words: dict[str, WordFit] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    method: str = "per-word peaks over threshold, exponential tail in logit space (bench.calibrate)"

    def to_meta(self, operating_points: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """The `thresholds` entry of a checkpoint's metadata (zoo.meta.CheckpointMeta); with
        `operating_points` (:func:`fit_operating_points`), the curve the live app's sensitivity moves along."""
        meta = {"values": {w: round(t, 6) for w, t in self.values.items()},
                "target_fa_per_hour": self.target_fa_per_hour, "negative_hours": round(self.negative_hours, 3),
                "fitted_on": self.fitted_on, "in_sample_false_accepts": self.false_accepts, "method": self.method,
                "engine": self.engine,
                "words": {w: {"peaks": f.peaks, "how": f.how, "beta": f.beta} for w, f in self.words.items()}}
        if operating_points:
            meta["operating_points"] = [{"fa_per_hour": float(p["fa_per_hour"]), "values": dict(p["values"])}
                                        for p in operating_points]
        return meta


def engine_summary(cfg: EngineConfig) -> dict[str, Any]:
    """The settings the scores depend on (thresholds fitted at one hop or EMA do not carry to another)."""
    return {"hop_s": cfg.hop_s, "ema_alpha": cfg.ema_alpha, "cooldown_s": cfg.cooldown_s, "rearm": cfg.rearm,
            "patience": cfg.patience, "vad": cfg.vad.enabled, "targets": list(cfg.targets) if cfg.targets else None}


def fit_thresholds(trace: ScoreTrace, hours: float, target_fa_per_hour: float = DEFAULT_TARGET, *,
                   fitted_on: str = "", t_min: float = T_MIN, t_max: float = T_MAX, base: float = BASE,
                   tail_peaks: int = TAIL_PEAKS) -> Calibration:
    """Per-word thresholds for `target_fa_per_hour` (all words together) from keyword-free `trace`."""
    if hours <= 0 or target_fa_per_hour <= 0:
        raise ValueError("calibration needs a positive duration and target")
    words = trigger_words(trace)
    share = target_fa_per_hour / len(words) * hours  # false accepts each word may have on this audio
    all_peaks = {w: peaks(trace, w, base) for w in words}
    pooled = np.sort(np.concatenate([*all_peaks.values(), np.zeros(0)]))[::-1]
    total = pooled.size
    fits = {}
    for w, p in all_peaks.items():
        if p.size >= tail_peaks:  # its own tail
            t, how, beta = tail_threshold(p, share, tail_peaks, None)
        else:  # its smoothed share of the pooled peaks: rate_w = frac * rate_pooled
            frac = (p.size + 0.5) / (total + 0.5 * len(words))
            t, how, beta = tail_threshold(pooled, share / frac, tail_peaks, None)
            how = f"pooled ({how})"
            if p.size and share < 1:  # never under its own highest peak
                t = max(t, float(np.nextafter(p[0], 1.0)))
        fits[w] = WordFit(min(max(t, t_min), t_max), int(p.size), how, beta, tuple(p[:5].round(4)))
    values = {w: f.threshold for w, f in fits.items()}
    fa = len(trace.detections(thresholds=values))
    return Calibration(values, target_fa_per_hour, hours, fitted_on, fa, fits, engine_summary(trace.cfg))


def fit_operating_points(trace: ScoreTrace, hours: float, targets: Sequence[float] = OPERATING_POINTS,
                         **kw: Any) -> list[dict[str, Any]]:
    """The calibrated curve: :func:`fit_thresholds` (with `kw`) at each false-accept rate of `targets`, as
    [{"fa_per_hour": f, "values": {word: threshold}}, ...] by rate, ascending (the metadata's format).

    A looser target never gets a higher threshold than a stricter one: where the fits cross (a word's tail
    extrapolated at one rate, its peaks counted at the next), the stricter point takes the higher, so moving
    the live app's sensitivity one way only ever lowers thresholds, and no point accepts more than its fit.
    """
    rates = sorted(float(t) for t in targets)
    if not rates or len(set(rates)) != len(rates) or not all(math.isfinite(t) and t > 0 for t in rates):
        raise ValueError(f"operating points need distinct positive false-accept rates, got {list(targets)}")
    fits = [fit_thresholds(trace, hours, t, **kw).values for t in rates]
    for i in range(len(fits) - 2, -1, -1):  # from the loosest point down: each at least as strict as the next
        fits[i] = {w: max(t, fits[i + 1].get(w, 0.0)) for w, t in fits[i].items()}
    return [{"fa_per_hour": t, "values": {w: round(v, 6) for w, v in f.items()}} for t, f in zip(rates, fits)]


def combine_points(model_points: Sequence[tuple[float, dict[str, float]]], model_values: Mapping[str, float],
                   room: Sequence[Mapping[str, Any]], replace: bool) -> list[dict[str, Any]]:
    """A room's operating points against the model's, as :func:`combine` does the default point: at each rate
    the higher of the two. A short recording cannot show that a threshold is safe, so a rate the model has no
    point for is dropped, and a model calibrated at one point only keeps none; a model with no thresholds at
    all (or `replace`) takes the room's."""
    if replace or not (model_points or model_values):
        return [dict(p) for p in room]
    by_rate = dict(model_points)
    return [{"fa_per_hour": p["fa_per_hour"], "values": combine(by_rate[p["fa_per_hour"]], p["values"], False)}
            for p in room if p["fa_per_hour"] in by_rate]


def _beta(z: np.ndarray) -> float | None:
    """Mean excess of the top logits over the lowest of them (exponential-tail MLE); None for < 3."""
    if z.size < 3:
        return None
    return max(float(np.mean(z[:-1] - z[-1])), 0.05)


def combine(model: dict[str, float], room: dict[str, float], replace: bool) -> dict[str, float]:
    """A room's thresholds against the model's: the higher of each (a short recording only raises them)."""
    if replace or not model:
        return dict(room)
    return {w: max(room.get(w, 0.0), model.get(w, 0.0)) for w in sorted(set(model) | set(room))}


# ----------------------------------------------------------------------------- scoring a recording


def score_audio(ref: str, wave: np.ndarray, cfg: EngineConfig, backend: str = DEFAULT_BACKEND, threads: int = 1
                ) -> tuple[ScoreTrace, str]:
    """The live app's per-hop scores on `wave`: the model's streaming path when it has one (its hop)."""
    from realtime.engine import run_offline
    from realtime.predictor import load_predictor
    from realtime.session import live_config

    pred = load_predictor(ref, backend, threads)
    cfg, stream, notes = live_config(dataclasses.replace(cfg, use_model_thresholds=False), pred)
    _, trace = run_offline(pred.predict, pred.labels, wave, cfg, trace=True, stream=stream)
    return trace, "; ".join(n for n in notes if not n.startswith("threshold"))


def read_recording(path: Path) -> np.ndarray:
    """A whole recording of any length at 16 kHz mono (read in blocks: hours of audio are fine)."""
    from kws.audio import stream_audio

    return np.concatenate([b for b in stream_audio(path)]).astype(np.float32)


def model_meta(ref: str) -> CheckpointMeta:
    """The model's metadata as far as calibration is concerned (an ONNX file carries only its thresholds)."""
    from zoo.meta import CheckpointMeta

    if str(ref).endswith(".onnx"):
        from backends.meta import read_onnx_info

        props = read_onnx_info(ref).props
        return CheckpointMeta(thresholds=json.loads(props.get("thresholds", "{}")))
    from zoo import read_header, resolve_weights

    return CheckpointMeta.from_dict(read_header(resolve_weights(ref))[1])


def model_thresholds(ref: str) -> dict[str, float]:
    return model_meta(ref).word_thresholds()


def write_calibrated(ref: str, out: Path, thresholds: dict[str, Any]) -> Path:
    """A copy of the model with `thresholds` in its metadata: a checkpoint, or an ONNX file for .onnx."""
    if str(ref).endswith(".onnx"):
        import onnx

        from backends.onnxgraph import save_model

        m = onnx.load(str(ref))
        kept = [(p.key, p.value) for p in m.metadata_props if p.key != "thresholds"]
        del m.metadata_props[:]
        for k, v in [*kept, ("thresholds", json.dumps(thresholds))]:
            m.metadata_props.add(key=k, value=v)
        return save_model(m, out)
    import zoo
    from zoo.checkpoint import read_checkpoint
    from zoo.wquant import stored_bits

    path = zoo.resolve_weights(ref)
    model, meta = zoo.load_checkpoint(path)
    _, tensors, _ = read_checkpoint(path)
    # stored as the source was: fp16, and quantized weights where it had them (a shipped file keeps its size)
    half = any(t.dtype.is_floating_point and t.element_size() == 2 for t in tensors.values())
    meta = {**meta, "thresholds": thresholds, "source_checkpoint": meta.get("source_checkpoint") or str(path)}
    return zoo.save_checkpoint(model, out, meta, half=half, weight_bits=stored_bits(tensors))


def calibrate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench calibrate", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="zoo name, run folder, .safetensors or .onnx")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, help="a recording of the room or microphone with none of the words in it")
    src.add_argument("--negatives", action="store_true", help="the built-in keyword-free stream "
                     "(bench.negatives, calibration seed 1)")
    p.add_argument("--hours", type=float, default=2.0, help="with --negatives: its length (default 2)")
    p.add_argument("--target", type=float, default=DEFAULT_TARGET, help="false accepts per hour, all words (0.5)")
    p.add_argument("--replace", action="store_true", help="with --input: the recording's thresholds alone, not the "
                   "higher of them and the model's")
    p.add_argument("--out", type=Path, help="the calibrated copy (default: next to the recording, or "
                   "runs/calibrated/<model>.safetensors)")
    p.add_argument("--backend", default=DEFAULT_BACKEND)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from kws.audio import AudioError, SAMPLE_RATE

    a = calibrate_parser().parse_args(argv)
    try:
        if a.negatives:
            from bench.negatives import NegativesConfig, load_negatives

            neg = load_negatives(NegativesConfig(hours=a.hours, seed=1))
            wave, what = neg.wave, f"bench.negatives {a.hours:g} h, seed 1 ({neg.folder.name})"
        else:
            wave, what = read_recording(a.input), str(a.input)
        hours = wave.size / SAMPLE_RATE / 3600
        trace, path = score_audio(a.model, wave, EngineConfig(), a.backend)
        fitted_on = f"{what} through the {path}"
        cal = fit_thresholds(trace, hours, a.target, fitted_on=fitted_on)
        old = model_meta(a.model)
        before, before_points = old.word_thresholds(), old.operating_points()
        values = combine(before, cal.values, a.replace or a.negatives)
        points = combine_points(before_points, before, fit_operating_points(trace, hours, fitted_on=fitted_on),
                                a.replace or a.negatives)
        meta = {**cal.to_meta(points), "values": {w: round(t, 6) for w, t in values.items()}}
        if before and not (a.replace or a.negatives):
            meta["combined_with"] = {"model": before, "rule": "the higher of the model's and the recording's"}
        name = Path(str(a.model)).stem if Path(str(a.model)).exists() else str(a.model)
        suffix = ".onnx" if str(a.model).endswith(".onnx") else ".safetensors"
        out = a.out or ((a.input.parent / f"{name}.{a.input.stem}{suffix}") if a.input else
                        Path("runs") / "calibrated" / f"{name}{suffix}")
        write_calibrated(a.model, out, meta)
    except (FileNotFoundError, AudioError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    fa = len(trace.detections(thresholds=values))
    print(f"fitted on {what}: {hours * 60:.1f} min; target {a.target:g} false accepts/h over {len(values)} words")
    for w in sorted(values):
        f = cal.words.get(w)
        extra = f" ({f.peaks} peaks >= {BASE}, {f.how})" if f else ""
        print(f"  {w:<10s} {values[w]:.4f}{extra}")
    print(f"false accepts with these thresholds on this audio: {fa} ({fa / hours:.2f}/h over {hours:.2f} h)")
    if points:
        print(f"operating points (live.py --sensitivity, the app's Sensitivity slider): "
              f"{', '.join(format(p['fa_per_hour'], 'g') for p in points)} false accepts/h")
    else:
        print("no operating points: the model was calibrated at one rate only, and a recording cannot lower "
              "thresholds at others (--replace keeps the recording's)")
    print(f"calibrated model: {out}\nuse it: python live.py --{'onnx' if suffix == '.onnx' else 'weights'} {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
