"""`python -m bench wakeword`: the models measured like a wake-word engine, through the live engine.

    python -m bench wakeword --cv runs/cv/speech_embedding_mlp --synth-only runs/cv/speech_embedding_mlp_synth/all \\
        --shipped dscnn --shipped efficientnet_b0 --clip-form runs/cv/speech_embedding_mlp/fold-1

- **Hits**: the ten core words said by real speakers each model never trained on, laid end to end
  over real background noise (gsc12-dev's `_silence_` clips) at 20, 10 and 0 dB SNR
  (bench.signals.word_stream). Whose clips: `--cv DIR`: each fold model's own held-out fold
  (kws.data.folds: its speakers are in no training split of that model); `--synth-only REF`: a
  model trained on synthetic speech alone, on every real clip; `--shipped NAME`: weights trained
  on gsc12-dev's folder split, on its 14 test speakers.
- **False accepts**: `bench.negatives`, hours of keyword-free audio with speech in it (seed 0).
  Only the ten core words may fire (EngineConfig.targets), so every detection there is a false
  accept. Every FA/h figure comes with the hours of negatives it was counted on; for `--cv` the
  fold models' counts are pooled (hours = folds x stream).
- **DET curve**: miss rate against FA/h as one threshold sweeps for every word (the engine's own
  trigger replayed over its per-hop scores, realtime.engine.replay_trigger).
- **Calibrated thresholds**: per-word thresholds fitted for 0.5 FA/h (bench.calibrate) on a
  second negative stream (seed 1: other sentences, voices, rooms and noise; the same real
  non-keyword clips), then measured on the first one and on the hits: figures on audio the
  thresholds were not fitted on.
- **Path**: each model through the path the live app takes, the streaming one: the speech
  embedding's stream form (scored by its non-streaming reference over the whole file, which
  makes the same decisions: tests/test_streaming.py), a log-mel model's 1 s window at the 48 ms
  hop (its streaming form is that window exactly); `--clip-form` adds a speech-embedding model
  through the full-window path (the 1 s clip form it was trained on, every 50 ms), which with the
  `form_cost` rows (12-class accuracy of both forms on the same held-out clips) says what the
  stream form costs; `--form-cost REF` writes those rows alone (the full-window path over hours
  of negatives takes about 8 ms a hop on one core: far longer than the stream form).

Writes results/wakeword.json; `python -m bench report` draws the DET curves into the bench report.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bench.stats import cluster_bootstrap_interval, fa_per_hour, match_detections
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, from_int16
from kws.labels import GSC12_WORDS, to_12class
from kws.paths import GSC12_DEV, RESULTS, SHARED_DATA
from realtime.engine import EngineConfig, ScoreTrace, run_offline
from backends.registry import DEFAULT_BACKEND

# every 0.005 from 0.3 (scores of a label-smoothed model crowd below 0.97), then logit-spaced to 0.99999
THRESHOLDS: tuple[float, ...] = tuple(sorted({round(float(t), 4) for t in np.arange(0.30, 0.9951, 0.005)}
                                             | {round(float(1 / (1 + np.exp(-z))), 6)
                                                for z in np.linspace(np.log(0.995 / 0.005), np.log(99999), 12)}))


SOURCES_AT = (0.5, 0.9)  # thresholds at which the commonest (said, fired) pairs of false accepts are kept


@dataclass(frozen=True)
class WakewordConfig:
    snrs_db: tuple[float, ...] = (20.0, 10.0, 0.0)
    noise_rms: float = 0.01  # -40 dBFS noise bed under the words
    gap_s: float = 2.0
    gap_jitter_s: float = 0.4
    lead_in_s: float = 5.0
    tol_after_s: float = 1.0
    hours: float = 2.0  # of negatives: the calibration stream, and the test stream of a model without folds
    fold_hours: float = 0.5  # the test stream of each cross-validation fold (its speakers' real words)
    calib_seed: int = 1
    target_fa_per_hour: float = 0.5
    report_fa_per_hour: tuple[float, ...] = (0.5, 2.0)  # hit rates read off the DET curve at these
    # decision rules measured side by side: (name, EMA alpha, patience); the first is the engine's default
    rules: tuple[tuple[str, float, int], ...] = (("ema 0.7", 0.7, 1), ("ema 0.7, patience 2", 0.7, 2),
                                                 ("ema 0.7, patience 3", 0.7, 3), ("ema 0.5, patience 2", 0.5, 2),
                                                 ("no ema, patience 3", 1.0, 3))
    thresholds: tuple[float, ...] = THRESHOLDS
    keywords: tuple[str, ...] = GSC12_WORDS
    seed: int = 0
    threads: int = 1
    backend: str = DEFAULT_BACKEND

    def engine(self, hop_s: float = 0.05, ema_alpha: float = 0.7, patience: int = 1) -> EngineConfig:
        return EngineConfig(hop_s=hop_s, targets=self.keywords, ema_alpha=ema_alpha, patience=patience)


@dataclass(frozen=True)
class HeldOut:
    waves: np.ndarray  # int16 [N, 16000]
    words: tuple[str, ...]
    speakers: tuple[str, ...]
    what: str

    def keywords(self, keywords: Sequence[str]) -> "HeldOut":
        keep = [i for i, w in enumerate(self.words) if w in keywords]
        return HeldOut(np.asarray(self.waves[keep]), tuple(self.words[i] for i in keep),
                       tuple(self.speakers[i] for i in keep), self.what)


@dataclass(frozen=True)
class Entry:
    """One model to measure: its weights (several: cross-validation folds), whose clips it never heard, its path."""

    label: str
    refs: tuple[str, ...]
    protocol: str  # "fold" | "all real" | "held-out split"
    path: str = "streaming"  # "streaming" | "window"


# ----------------------------------------------------------------------------- held-out clips


def _clipset(cs, idx: Sequence[int], what: str) -> HeldOut:
    idx = np.asarray(idx, dtype=np.int64)
    return HeldOut(np.asarray(cs.waves[idx]), tuple(cs.words[i] for i in idx),
                   tuple(cs.speakers[i] or f"clip:{cs.files[i]}" for i in idx), what)


def fold_clips(run: str | Path) -> HeldOut:
    """The test clips of a cross-validation run's fold, recorded parts only (speakers it never trained on)."""
    import yaml

    from kws.data import open_source

    cfg = yaml.safe_load((Path(run) / "config.yaml").read_text())
    if not cfg.get("fold") or cfg["fold"] == "all":
        raise ValueError(f"{run}: not a cross-validation fold (its config has fold {cfg.get('fold')!r})")
    src = open_source(cfg["data"], labels=cfg.get("labels", "35s"), seed=cfg.get("seed", 0), fold=cfg["fold"])
    test, part = src.split("test"), src.part_of("test")
    keep = [i for i, j in enumerate(part) if j >= 0 and src.parts[j].recorded]
    return _clipset(test, keep, f"fold {cfg['fold']} test speakers of {cfg['data']}")


def all_real_clips(sets: Sequence[str] = ("gsc12-dev", "gsc-v1-sample")) -> HeldOut:
    from kws.data import SHORTCUTS, open_source

    parts = []
    for name in sets:
        spec = SHORTCUTS[name]
        if not Path(spec.partition(":")[2]).is_dir():
            continue
        src = open_source(spec, labels="35s")
        for s in ("train", "validation", "test"):
            cs = src.split(s)
            parts.append(_clipset(cs, range(len(cs)), name))
    if not parts:
        raise FileNotFoundError(f"no real speech under {SHARED_DATA}")
    return HeldOut(np.concatenate([p.waves for p in parts]), sum((p.words for p in parts), ()),
                   sum((p.speakers for p in parts), ()), "every clip of " + " and ".join(sets))


def held_out_split() -> HeldOut:
    from kws.data import open_source

    cs = open_source(f"folder:{GSC12_DEV}", labels="35s").split("test")
    return _clipset(cs, range(len(cs)), "gsc12-dev folder split (seed 0): the 14 test speakers")


# ----------------------------------------------------------------------------- scoring


class Scorer:
    """Per-hop scores of one model on any wave, through its live path; shares embeddings between heads."""

    shared: dict[tuple[str, str], np.ndarray] = {}  # (stream name, backbone key) -> stream embeddings

    def __init__(self, ref: str, path: str, cfg: WakewordConfig) -> None:
        import zoo

        self.ref, self.path, self.cfg = ref, path, cfg
        self.model, _ = zoo.load_model(ref)
        self.labels = tuple(self.model.labels)
        self.kind = self.model.cfg.frontend.kind
        if path == "streaming" and self.kind == "logmel":
            self.engine = cfg.engine(0.048)  # the streaming form's hop: the 1 s window exactly, every 3 frames
        else:
            self.engine = cfg.engine(0.05)
        self._pred: Any = None

    def describe(self) -> str:
        if self.path == "window":
            return f"full-window path ({self.kind} 1 s clip form every {self.engine.hop_s * 1e3:g} ms)"
        if self.kind == "speech_mel":
            return "streaming path (stream form, scored by its non-streaming reference)"
        return f"streaming path (the 1 s window over cached frames every {self.engine.hop_s * 1e3:g} ms)"

    def traces(self, wave: np.ndarray, share: str | None = None) -> dict[str, ScoreTrace]:
        """Per-hop scores under every rule of the config; `share` names a stream every model scores
        (its embeddings are computed once)."""
        if self.path == "streaming" and self.kind == "speech_mel":
            from backends.streaming import ReferenceStream, streaming_form
            from zoo.streaming import speech_embedding_reference, speech_embedding_stream_embeddings

            emb = None
            if share is not None:
                from training.features import backbone_key

                key = (share, backbone_key(self.model))  # frozen-backbone heads share the embedding
                if key not in Scorer.shared:
                    Scorer.shared[key] = speech_embedding_stream_embeddings(self.model, wave)
                emb = Scorer.shared[key]
            table = speech_embedding_reference(self.model, wave, embeddings=emb)
            _, spec = streaming_form(self.model)
            out = {}
            for name, alpha, patience in self.cfg.rules:
                eng = dataclasses.replace(self.engine, ema_alpha=alpha, patience=patience)
                stream = ReferenceStream(table, spec, self.labels)
                out[name] = run_offline(None, self.labels, wave, eng, trace=True, stream=stream)[1]
            return out
        if self._pred is None:
            from realtime.predictor import load_predictor

            self._pred = load_predictor(self.ref, self.cfg.backend, self.cfg.threads, streaming=False)
        out = {}
        for name, alpha, patience in self.cfg.rules:  # the model runs once per rule: only the first is cheap
            eng = dataclasses.replace(self.engine, ema_alpha=alpha, patience=patience)
            out[name] = run_offline(self._pred.predict, self.labels, wave, eng, batch_size=32, trace=True)[1]
            if self.path == "window" or self.kind != "speech_mel":
                break  # log-mel and full-window models: the default rule only (each rule is a full rerun)
        return out


def positive_streams(clips: HeldOut, noise: np.ndarray, cfg: WakewordConfig) -> dict[float, Any]:
    from bench.signals import word_stream

    out = {}
    for snr in cfg.snrs_db:
        out[float(snr)] = word_stream(clips.waves, clips.words, noise, snr_db=snr, noise_rms=cfg.noise_rms,
                                      gap_s=cfg.gap_s, gap_jitter_s=cfg.gap_jitter_s,
                                      rng=np.random.default_rng(cfg.seed + 1), min_gap_s=cfg.tol_after_s,
                                      lead_in_s=cfg.lead_in_s)
    return out


def sweep(trace: ScoreTrace, thresholds: Sequence[float]) -> list[list[tuple[str, float]]]:
    return [[(d.label, d.time_s) for d in trace.detections(t)] for t in thresholds]


def _said(t: float, starts: np.ndarray, events: Sequence[dict], tol_s: float) -> dict | None:
    """The utterance a detection at stream time `t` fell in (or up to `tol_s` after), if any."""
    k = int(np.searchsorted(starts, t, side="right")) - 1
    return events[k] if k >= 0 and t <= events[k]["end_s"] + tol_s else None


def fa_parts(times: Sequence[float], events: Sequence[dict], tol_s: float = 1.0) -> dict[str, int]:
    """Where false accepts fell: in (or just after) an utterance of each kind (a real word, a sentence, an
    Asterisk prompt ...), or between them."""
    starts = np.array([e["start_s"] for e in events])
    out = {"real": 0, "sentence": 0, "between": 0}
    for t in times:
        e = _said(t, starts, events, tol_s)
        k = "between" if e is None else e["kind"]
        out[k] = out.get(k, 0) + 1
    return out


def fa_sources(dets: Sequence[tuple[str, float]], events: Sequence[dict], tol_s: float = 1.0,
               most: int = 12) -> list[tuple[str, str, int]]:
    """The commonest (what was said, word fired, count): a real word by name, else "sentence" or "nothing"."""
    from collections import Counter

    starts = np.array([e["start_s"] for e in events])
    pairs: Counter[tuple[str, str]] = Counter()
    for label, t in dets:
        e = _said(t, starts, events, tol_s)
        pairs[("nothing" if e is None else e.get("word") or e["kind"], label)] += 1
    return [(said, fired, n) for (said, fired), n in pairs.most_common(most)]


@dataclass
class ModelRun:
    """One model's traces under each rule: hits per SNR, its test negatives, the calibration stream."""

    ref: str
    clips: HeldOut
    words: dict[float, Any]  # SNR -> Stream
    hit_traces: dict[str, dict[float, ScoreTrace]]  # rule -> SNR -> trace
    neg: dict[str, ScoreTrace]  # rule -> trace
    calib: dict[str, ScoreTrace]
    neg_events: Sequence[dict]
    neg_hours: float
    neg_summary: dict[str, Any]
    describe: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_model(ref: str, path: str, clips: HeldOut, noise: np.ndarray, neg: Any, calib: Any,
              cfg: WakewordConfig, log: Callable[[str], None]) -> ModelRun:
    t0 = time.perf_counter()
    sc = Scorer(ref, path, cfg)
    streams = positive_streams(clips, noise, cfg)
    traces: dict[str, dict[float, ScoreTrace]] = {}
    for snr, st in streams.items():
        log(f"  {ref}: {len(st.events)} words at {snr:g} dB ({st.duration_s / 60:.1f} min)")
        for rule, tr in sc.traces(st.wave).items():
            traces.setdefault(rule, {})[snr] = tr
    log(f"  {ref}: negatives ({neg.hours:.2f} h, {neg.folder.name}) and calibration stream ({calib.hours:.2f} h)")
    neg_tr = sc.traces(neg.wave, share=neg.folder.name)
    calib_tr = sc.traces(calib.wave, share=calib.folder.name)
    return ModelRun(ref, clips, streams, traces, neg_tr, calib_tr, neg.events, neg.hours, neg.summary(),
                    sc.describe(), time.perf_counter() - t0)


def _fa_kinds(events: Sequence[dict]) -> dict[str, int]:
    return {k: 0 for k in sorted({e["kind"] for e in events} | {"real", "sentence", "between"})}


def summarize(entry: Entry, runs: list[ModelRun], cfg: WakewordConfig, rule: str | None = None) -> dict[str, Any]:
    """Pooled DET curve, the operating points, and the calibrated thresholds' figures, under one rule.

    Each run is scored on its own test negatives (a fold model on its fold's), pooled: the hours
    are the sum of the runs' hours."""
    from bench.calibrate import fit_thresholds

    rule = rule or cfg.rules[0][0]
    ths = list(cfg.thresholds)
    model_hours = sum(r.neg_hours for r in runs)
    calib_hours = runs[0].calib[rule].ends[-1] / SAMPLE_RATE / 3600 if len(runs[0].calib[rule].ends) else 0.0
    kinds = _fa_kinds([e for r in runs for e in r.neg_events])
    fa = np.zeros(len(ths), np.int64)
    fa_in = [dict(kinds) for _ in ths]  # which negatives fired, per threshold
    hits = {snr: np.zeros(len(ths), np.int64) for snr in cfg.snrs_db}
    wrong = {snr: np.zeros(len(ths), np.int64) for snr in cfg.snrs_db}
    n_words = {snr: 0 for snr in cfg.snrs_db}
    for r in runs:
        for i, dets in enumerate(sweep(r.neg[rule], ths)):
            fa[i] += len(dets)
            for k, v in fa_parts([t for _, t in dets], r.neg_events).items():
                fa_in[i][k] = fa_in[i].get(k, 0) + v
        for snr in cfg.snrs_db:
            events = r.words[snr].events
            n_words[snr] += len(events)
            for i, dets in enumerate(sweep(r.hit_traces[rule][snr], ths)):
                m = match_detections(dets, events, 0.0, cfg.tol_after_s)
                hits[snr][i] += m.hits
                wrong[snr][i] += m.wrong_words
    sources = {}  # what set the false accepts off, at the thresholds the report names
    for t in SOURCES_AT:
        pairs: dict[tuple[str, str], int] = {}
        for r in runs:
            for a, b, n in fa_sources([(d.label, d.time_s) for d in r.neg[rule].detections(t)], r.neg_events, most=10**6):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        top = sorted(pairs.items(), key=lambda kv: -kv[1])[:12]
        sources[str(t)] = [{"said": a, "fired": b, "false_accepts": n} for (a, b), n in top]
    curve = [{"threshold": t, "false_accepts": int(fa[i]), "fa_per_hour": fa_per_hour(int(fa[i]), model_hours * 3600),
              "false_accepts_in": fa_in[i],
              "miss_rate": {str(s): 1 - hits[s][i] / n_words[s] for s in cfg.snrs_db},
              "wrong_word_rate": {str(s): wrong[s][i] / n_words[s] for s in cfg.snrs_db}} for i, t in enumerate(ths)]

    def operating_point(s: float, limit: float) -> dict[str, Any] | None:
        ok = [c for c in curve if c["fa_per_hour"] <= limit]
        best = min(ok, key=lambda c: (c["miss_rate"][str(s)], c["threshold"])) if ok else None
        if best is None:
            return None
        hit, spk = [], []
        for r in runs:  # the words' outcomes at that threshold, for an interval over speakers
            m = match_detections([(d.label, d.time_s) for d in r.hit_traces[rule][s].detections(best["threshold"])],
                                 r.words[s].events, 0.0, cfg.tol_after_s)
            hit += [o == "hit" for o in m.outcomes]
            spk += list(r.clips.speakers)
        fa_dets = [d for r in runs for d in r.neg[rule].detections(best["threshold"])]  # what fired at it
        return {"threshold": best["threshold"], "detected": 1 - best["miss_rate"][str(s)],
                "false_accepts_in": best["false_accepts_in"],
                "false_accept_words": {w: sum(d.label == w for d in fa_dets) for w in sorted({d.label for d in fa_dets})},
                "detected_ci95_speakers": cluster_bootstrap_interval(hit, spk),
                "fa_per_hour": best["fa_per_hour"], "false_accepts": best["false_accepts"],
                "negative_hours": round(model_hours, 3)}

    at_target = {str(s): p for s in cfg.snrs_db if (p := operating_point(s, cfg.target_fa_per_hour)) is not None}
    at_rates = {str(lim): {str(s): operating_point(s, lim) for s in cfg.snrs_db} for lim in cfg.report_fa_per_hour}
    # calibrated: fitted on the calibration stream, measured on the evaluation negatives and the hits
    cal_rows, cal_fa, cal_hits, fa_where = [], 0, {s: 0 for s in cfg.snrs_db}, dict(kinds)
    per_speaker: dict[float, list[tuple[bool, str]]] = {s: [] for s in cfg.snrs_db}
    for r in runs:
        cal = fit_thresholds(r.calib[rule], calib_hours, cfg.target_fa_per_hour, fitted_on="bench.negatives role "
                             f"calib, seed {cfg.calib_seed} ({calib_hours:.2f} h)")
        dets = r.neg[rule].detections(thresholds=cal.values)
        cal_fa += len(dets)
        for k, v in fa_parts([d.time_s for d in dets], r.neg_events).items():
            fa_where[k] = fa_where.get(k, 0) + v
        row = {"ref": r.ref, "thresholds": {w: round(t, 4) for w, t in cal.values.items()},
               "fit": {w: {"peaks": f.peaks, "how": f.how, "beta": f.beta} for w, f in cal.words.items()},
               "in_sample_false_accepts": cal.false_accepts, "false_accepts": len(dets),
               "negative_hours": round(r.neg_hours, 3),
               "false_accept_words": sorted({d.label for d in dets}), "detected": {}}
        for s in cfg.snrs_db:
            events = r.words[s].events
            m = match_detections([(d.label, d.time_s) for d in r.hit_traces[rule][s].detections(thresholds=cal.values)],
                                 events, 0.0, cfg.tol_after_s)
            cal_hits[s] += m.hits
            row["detected"][str(s)] = m.hit_rate
            per_speaker[s] += list(zip((o == "hit" for o in m.outcomes), r.clips.speakers))  # events follow the clips
        cal_rows.append(row)
    calibrated = {"target_fa_per_hour": cfg.target_fa_per_hour, "fitted_on_hours": round(calib_hours, 3),
                  "false_accepts": cal_fa, "negative_hours": round(model_hours, 3),
                  "fa_per_hour": fa_per_hour(cal_fa, model_hours * 3600), "false_accepts_in": fa_where,
                  "detected": {}, "per_model": cal_rows}
    for s in cfg.snrs_db:
        ok = [h for h, _ in per_speaker[s]]
        calibrated["detected"][str(s)] = {
            "rate": cal_hits[s] / n_words[s], "words": n_words[s],
            "ci95_speakers": cluster_bootstrap_interval(ok, [sp for _, sp in per_speaker[s]])}
    first = runs[0]
    return {"kind": "model", "label": entry.label, "protocol": entry.protocol, "refs": list(entry.refs),
            "rule": rule, "path": first.describe, "engine": _engine(runs, cfg, rule), "keywords": list(cfg.keywords),
            "positives": {str(s): {"words": n_words[s],
                                   "stream_seconds": round(sum(r.words[s].duration_s for r in runs), 1)}
                          for s in cfg.snrs_db},
            "held_out": sorted({r.clips.what for r in runs}),
            "speakers": len({sp for r in runs for sp in r.clips.keywords(cfg.keywords).speakers}),
            "negative_hours": round(model_hours, 3), "negative_streams": len(runs),
            "negatives": [r.neg_summary for r in runs],
            "curve": curve, "at_target": at_target, "at_fa_per_hour": at_rates, "calibrated": calibrated,
            "false_accept_sources": sources, "seconds": round(sum(r.seconds for r in runs), 1)}


def compare_rules(entry: Entry, runs: list[ModelRun], cfg: WakewordConfig) -> tuple[str, list[dict[str, Any]]]:
    """Every measured rule's operating points and calibrated figures; the winner is the rule with the most
    hits (mean over SNRs) at the calibrated thresholds, among rules whose calibrated FA/h meets the target on
    the calibration stream itself (the thresholds are fitted there; the test negatives decide nothing)."""
    rules = [r[0] for r in cfg.rules if r[0] in runs[0].neg]
    out = []
    for rule in rules:
        row = summarize(entry, runs, cfg, rule)
        cal = row["calibrated"]
        out.append({"kind": "rule", "label": entry.label, "rule": rule, "engine": row["engine"],
                    "at_fa_per_hour": {lim: {s: None if p is None else {k: p[k] for k in
                                             ("threshold", "detected", "detected_ci95_speakers", "fa_per_hour",
                                              "false_accepts")} for s, p in v.items()}
                                       for lim, v in row["at_fa_per_hour"].items()},
                    "calibrated": {k: cal[k] for k in ("fa_per_hour", "false_accepts", "negative_hours", "detected")},
                    "calibrated_hits_mean": float(np.mean([v["rate"] for v in cal["detected"].values()])),
                    "negative_hours": row["negative_hours"]})
    best = max(out, key=lambda r: r["calibrated_hits_mean"])["rule"] if out else cfg.rules[0][0]
    return best, out


def _engine(runs: list[ModelRun], cfg: WakewordConfig, rule: str) -> dict[str, Any]:
    e = runs[0].neg[rule].cfg
    return {"hop_s": e.hop_s, "ema_alpha": e.ema_alpha, "patience": e.patience, "cooldown_s": e.cooldown_s,
            "vad": e.vad.enabled,
            "rearm": e.rearm, "targets": list(e.targets or ()), "tol_after_s": cfg.tol_after_s,
            "noise_rms": cfg.noise_rms, "gap_s": cfg.gap_s}


# ----------------------------------------------------------------------------- what the stream form costs


def form_cost(ref: str, clips: HeldOut, noise: np.ndarray, cfg: WakewordConfig) -> list[dict[str, Any]]:
    """12-class accuracy of the speech embedding's 1 s clip form and its stream form on the same held-out clips.

    The clips are laid 3 s apart (clean: digital silence between them; else over the noise bed at
    each SNR). The clip form reads each clip's 1 s (noise included) centred in zeros, as in
    training; the stream form is read at the chunk whose 9 embeddings are centred on the clip.
    """
    import torch

    import zoo
    from bench.signals import noise_bed
    from zoo.streaming import SpeechEmbeddingStream, speech_embedding_reference

    model, _ = zoo.load_model(ref)
    step = SpeechEmbeddingStream(model)
    rng = np.random.default_rng(cfg.seed + 7)
    spacing = 3 * SAMPLE_RATE
    n = len(clips.words)
    starts = SAMPLE_RATE * 2 + spacing * np.arange(n)
    total = int(starts[-1] + CLIP_SAMPLES + 2 * SAMPLE_RATE)
    truth = [to_12class(w) for w in clips.words]
    rows = []
    for snr in (None, *cfg.snrs_db):
        x = np.zeros(total) if snr is None else noise_bed(noise, total, cfg.noise_rms, rng).astype(np.float64)
        for c, s0 in zip(clips.waves, starts):
            c = from_int16(c).astype(np.float64)
            p = float(np.mean(c * c))
            gain = 1.0 if snr is None else np.sqrt(cfg.noise_rms ** 2 * 10 ** (snr / 10) / max(p, 1e-12))
            x[s0:s0 + CLIP_SAMPLES] += gain * c
        x = (x / max(1.0, float(np.abs(x).max()))).astype(np.float32)
        windows = np.stack([x[s0:s0 + CLIP_SAMPLES] for s0 in starts])
        with torch.inference_mode():
            clip_probs = np.concatenate([torch.softmax(model(torch.from_numpy(windows[i:i + 128])), -1).numpy()
                                         for i in range(0, n, 128)])
        table = speech_embedding_reference(model, x)
        # after i chunks the 9 embeddings span frames 8i-136 .. 8i+3 (stream frames), centred at sample 1280 i - 11960
        first = stream_centre(step, 0)
        rows_i = np.round((starts + CLIP_SAMPLES // 2 - first) / step.chunk).astype(np.int64)
        rows_i = np.clip(rows_i, 0, len(table) - 1)
        stream_probs = table[rows_i]
        ok_clip = np.array([to_12class(model.labels[k]) == t for k, t in zip(clip_probs.argmax(1), truth)])
        ok_stream = np.array([to_12class(model.labels[k]) == t for k, t in zip(stream_probs.argmax(1), truth)])
        spk = list(clips.speakers)
        diff = _paired_speaker_ci(ok_stream.astype(float) - ok_clip.astype(float), spk)
        rows.append({"kind": "form_cost", "ref": ref, "snr_db": snr, "clips": n, "what": clips.what,
                     "speakers": len(set(spk)),
                     "clip_form": float(ok_clip.mean()), "clip_form_ci95": cluster_bootstrap_interval(ok_clip, spk),
                     "stream_form": float(ok_stream.mean()),
                     "stream_form_ci95": cluster_bootstrap_interval(ok_stream, spk),
                     "difference": float(ok_stream.mean() - ok_clip.mean()), "difference_ci95": diff})
    return rows


def stream_centre(step: Any, i: int) -> float:
    """The stream sample at the centre of what the head reads after i chunks (zoo.streaming's definition)."""
    c = step.cfg
    newest = i - 1 + step.first_embedding
    first = c.window_step * (newest - step.n_windows + 1)  # first frame of the oldest embedding
    last = c.window_step * newest + c.window_frames - 1
    centre_frame = (first + last) / 2
    return c.hop_length * centre_frame - step.tail + c.win_length / 2  # frame f holds [160 f - 240, 160 f + 160)


def _paired_speaker_ci(d: np.ndarray, speakers: Sequence[str], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of a mean paired difference, resampling whole speakers."""
    _, inv = np.unique(np.asarray(speakers), return_inverse=True)
    tot = np.bincount(inv, weights=d)
    cnt = np.bincount(inv).astype(np.float64)
    draw = np.random.default_rng(seed).integers(0, len(cnt), size=(reps, len(cnt)))
    vals = tot[draw].sum(1) / cnt[draw].sum(1)
    lo, hi = np.quantile(vals, [0.025, 0.975])
    return (float(lo), float(hi))


# ----------------------------------------------------------------------------- CLI


def entries_from_args(a: argparse.Namespace) -> list[Entry]:
    out = []
    for d in a.cv or []:
        folds = sorted(str(p) for p in Path(d).glob("fold-*") if (p / "best.safetensors").is_file())
        if not folds:
            raise SystemExit(f"{d}: no trained fold-* runs")
        out.append(Entry(f"{Path(d).name} (cv, {len(folds)} folds)", tuple(folds), "fold"))
    for r in a.synth_only or []:
        out.append(Entry(f"{Path(r).parent.name if Path(r).name == 'all' else Path(r).stem} (synthetic only)", (r,),
                         "all real"))
    for n in a.shipped or []:
        out.append(Entry(f"{n} (shipped)", (n,), "held-out split"))
    for r in a.clip_form or []:
        out.append(Entry(f"{Path(r).parent.name}/{Path(r).name} (1 s clip form, full window)", (r,), "fold", "window"))
    return out


def test_negatives(entry: Entry, ref: str, cfg: WakewordConfig) -> Any:
    """The test-role negatives a model is scored on: a fold model's hold its fold's speakers' real words (voices
    it never heard); any other model's hold no real word (every real speaker is in its training data)."""
    import yaml

    from bench.negatives import NegativesConfig

    if entry.protocol == "fold":
        run = yaml.safe_load((Path(ref) / "config.yaml").read_text())
        return NegativesConfig(hours=cfg.fold_hours, role="test", fold=run["fold"], data=run["data"], seed=cfg.seed)
    return NegativesConfig(hours=cfg.hours, role="test", real_sets=(), seed=cfg.seed)


def held_out_for(entry: Entry, ref: str) -> HeldOut:
    if entry.protocol == "fold":
        return fold_clips(ref)
    if entry.protocol == "all real":
        return all_real_clips()
    return held_out_split()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench wakeword", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cv", action="append", help="a cross-validation folder (its fold-* runs; each scored on its fold)")
    p.add_argument("--synth-only", action="append", help="a model trained without real speech (scored on every clip)")
    p.add_argument("--shipped", action="append", help="shipped weights trained on gsc12-dev's folder split")
    p.add_argument("--clip-form", action="append", help="a speech-embedding fold run, also through the full-window "
                   "path, with the form_cost rows")
    p.add_argument("--form-cost", action="append", help="a speech-embedding fold run: only the form_cost rows "
                   "(its clip form against its stream form on its held-out clips), without the full-window DET")
    p.add_argument("--hours", type=float, default=WakewordConfig.hours, help="the calibration stream, and the test "
                   "stream of a model without folds (default 2)")
    p.add_argument("--fold-hours", type=float, default=WakewordConfig.fold_hours, help="each fold's test stream "
                   "(default 0.5: 2.5 h over five folds)")
    p.add_argument("--out", type=Path, default=RESULTS / "wakeword.json")
    a = p.parse_args(argv)
    from bench.negatives import NegativesConfig, load_negatives, real_noise
    from kws.runinfo import write_results

    cfg = WakewordConfig(hours=a.hours, fold_hours=a.fold_hours)
    import torch

    torch.set_num_threads(cfg.threads)  # the stream forms and references run in torch; ORT gets cfg.threads too
    entries = entries_from_args(a)
    if not entries:
        if not a.form_cost:
            p.error("name at least one model (--cv, --synth-only, --shipped, --clip-form, --form-cost)")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    calib = load_negatives(NegativesConfig(hours=cfg.hours, role="calib", seed=cfg.calib_seed))
    noise = real_noise(NegativesConfig())  # the test role's noise clips: none of them in training or calibration
    rows: list[dict[str, Any]] = [{"kind": "negatives", "role": "threshold calibration", **calib.summary()}]
    seen_streams: set[str] = set()
    t0 = time.perf_counter()
    for e in entries:
        log(f"== {e.label}: {len(e.refs)} model(s), {e.protocol}, {e.path} path")
        runs = []
        for ref in e.refs:
            clips = held_out_for(e, ref)
            neg = load_negatives(test_negatives(e, ref, cfg))
            if neg.folder.name not in seen_streams:
                seen_streams.add(neg.folder.name)
                rows.append({"kind": "negatives", "role": "false accepts", "for": ref, **neg.summary()})
            runs.append(run_model(ref, e.path, clips.keywords(cfg.keywords), noise, neg, calib, cfg, log))
        best, compared = compare_rules(e, runs, cfg)
        row = summarize(e, runs, cfg, best)
        row["rules_compared"] = [r["rule"] for r in compared]
        rows.append(row)
        rows += compared
        log(f"  rule kept: {best}")
        for s, v in row["at_target"].items():
            log(f"  {s} dB: {100 * v['detected']:.1f} % detected at {v['fa_per_hour']:.2f} FA/h "
                f"({v['negative_hours']:.1f} h), threshold {v['threshold']:.4f}")
        c = row["calibrated"]
        log(f"  calibrated: {c['fa_per_hour']:.2f} FA/h ({c['negative_hours']:.1f} h); detected "
            + ", ".join(f"{s} dB {100 * v['rate']:.1f} %" for s, v in c["detected"].items()))
        if e.path == "window":
            for ref in e.refs:
                rows += form_cost(ref, held_out_for(e, ref), noise, cfg)
    for ref in a.form_cost or []:
        log(f"== {ref}: clip form against stream form on its held-out clips")
        rows += form_cost(ref, fold_clips(ref), noise, cfg)
    command = shlex.join(["python", "-m", "bench", "wakeword", *(argv if argv is not None else sys.argv[1:])])
    write_results(a.out, rows, command=command, config=dataclasses.asdict(cfg), protocol=__doc__.split("\n\n")[2],
                  seconds=round(time.perf_counter() - t0, 1))
    print(f"results: {a.out}")
    return 0
