"""The "Sanity checks" section: figures that contradict themselves become warnings at the top of the report.

Nothing here measures; every check reads the rows of `bench.report.base.Runs` (the JSON) and
returns a warning line per contradiction, worded for the person reading the report:

- accuracy (or streaming hit rate) that rises with noise by more than sampling noise explains;
- a model below chance: less accurate than always giving the most common answer;
- top-1 agreement with fp32 measured on a model whose answers are nearly constant (two graphs
  that both say "unknown" agree; that says nothing about the quantised one's accuracy);
- a 12-class figure on clips that hold none of the 12-class words (there it is not printed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from bench.report.base import Runs, _num, snr_label
from kws.labels import GSC12_LABELS, has_12class_words, to_12class

# A rise with noise is flagged when it exceeds this many standard errors of the accuracy
# (binomial, on the clips scored): a real rise of that size is not sampling noise.
RISE_SIGMAS = 2.0
# Predictions this concentrated on one class make a top-1 agreement figure meaningless.
NEAR_CONSTANT_SHARE = 0.9
REFERENCE_BACKEND = "torch-cpu"  # agreement is measured against the fp32 PyTorch model on the CPU


@dataclass(frozen=True)
class Finding:
    check: str  # "noise", "chance", "constant", "12-class"
    text: str


def _records(runs: Runs, kind: str) -> list[dict]:
    df = runs.df(kind)
    return [] if df.empty else df.to_dict("records")


def _dataset_labels(runs: Runs) -> dict[str, list[str]]:
    return {d["name"]: list(d.get("labels") or []) for d in runs.datasets()}


def rises(points: Sequence[tuple[str, float, int]]) -> tuple[str, float, str, float, float] | None:
    """The largest rise from a cleaner to a noisier level beyond RISE_SIGMAS standard errors.

    points: (level name, value, clips) ordered cleanest first. Returns (from level, from value,
    to level, to value, standard error) or None.
    """
    worst = None
    for j, (to, vj, n) in enumerate(points):
        for frm, vi, _ in points[:j]:
            p = (vi + vj) / 2
            se = math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))
            if vj - vi > RISE_SIGMAS * se and (worst is None or vj - vi > worst[3] - worst[1]):
                worst = (frm, vi, to, vj, se)
    return worst


def check_noise(runs: Runs) -> list[Finding]:
    out = []
    series = []
    for r in _records(runs, "noise"):
        per = [p for p in (r.get("per_snr") if isinstance(r.get("per_snr"), list) else [])
               if _num(p.get("accuracy"))]
        # cleanest first: clean, then the highest SNR
        per.sort(key=lambda p: -math.inf if not _num(p.get("snr_db")) else -p["snr_db"])
        series.append((r, "clip accuracy", [(snr_label(p.get("snr_db")), p["accuracy"], int(p.get("n") or 0))
                                             for p in per]))
    for r in _records(runs, "streaming"):
        per = [p for p in (r.get("per_snr") if isinstance(r.get("per_snr"), list) else [])
               if _num(p.get("hit_rate")) and _num(p.get("snr_db"))]
        per.sort(key=lambda p: -p["snr_db"])
        series.append((r, "streaming hit rate", [(snr_label(p["snr_db"]), p["hit_rate"], int(p.get("n_words") or 0))
                                                  for p in per]))
    for r, what, points in series:
        hit = rises(points)
        if hit is None:
            continue
        frm, vi, to, vj, se = hit
        n = next(k for name, _, k in points if name == to)
        out.append(Finding("noise", f"{r['model']} on {r['dataset']}: {what} rises with noise, {vi:.3f} {frm} -> "
                                    f"{vj:.3f} at {to} (+{vj - vi:.3f}, over {RISE_SIGMAS:g} standard errors "
                                    f"({se:.3f}) on {n} clips). A model does not get better in noise: the cleaner "
                                    "figure is suspect (e.g. a level the model never saw in training, or a "
                                    "bias towards one class that the noise happens to help)."))
    return out


def _by_model(rows: Iterable[dict], key) -> dict[tuple, list[dict]]:
    """Rows grouped by (model, dataset, key(row)): backends that gave the same figure share one warning."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dataset"], key(r)), []).append(r)
    return groups


def _backends(rows: list[dict]) -> str:
    return ", ".join(str(r["backend"]) for r in rows)


def _confusion(r: dict) -> np.ndarray | None:
    cm = r.get("confusion")
    if not isinstance(cm, list) or not cm:
        return None
    cm = np.asarray(cm, dtype=np.int64)
    return cm if cm.ndim == 2 and cm.shape[0] == cm.shape[1] and cm.sum() > 0 else None


def twelve_class_share(cm: np.ndarray, labels: Sequence[str]) -> float | None:
    """Share of the most common 12-class label among the clips: what always answering it scores."""
    if len(labels) != cm.shape[0]:
        return None
    counts: dict[str, int] = {}
    for lab, n in zip(labels, cm.sum(1)):
        counts[to_12class(lab)] = counts.get(to_12class(lab), 0) + int(n)
    return max(counts.values()) / max(sum(counts.values()), 1)


def check_chance(runs: Runs) -> list[Finding]:
    labels = _dataset_labels(runs)
    rows = [r for r in _records(runs, "accuracy") if _confusion(r) is not None]
    out = []
    for (model, ds, _), group in _by_model(rows, lambda r: round(float(r["accuracy"]), 4)).items():
        r = group[0]
        cm = _confusion(r)
        support = cm.sum(1)
        chance = support.max() / support.sum()
        if r["accuracy"] < chance:
            out.append(Finding("chance", f"{model} ({_backends(group)}) on {ds}: accuracy {r['accuracy']:.3f} is "
                                         f"below chance: always answering the most common class scores "
                                         f"{chance:.3f}."))
        acc12 = r.get("accuracy_12class")
        share12 = twelve_class_share(cm, labels.get(ds, [])) if _num(acc12) else None
        if share12 is not None and acc12 < share12 and has_12class_words(present_words(r, labels.get(ds, []))):
            out.append(Finding("chance", f"{model} ({_backends(group)}) on {ds}: 12-class accuracy {acc12:.3f} is "
                                         f"below chance: always giving the most common 12-class answer scores "
                                         f"{share12:.3f}."))
    return out


def check_constant(runs: Runs) -> list[Finding]:
    labels = _dataset_labels(runs)
    rows = [r for r in _records(runs, "accuracy") if _confusion(r) is not None and _num(r.get("top1_agreement"))
            and r.get("backend") != REFERENCE_BACKEND]
    out = []
    for (model, ds, _), group in _by_model(rows, lambda r: round(float(r["top1_agreement"]), 4)).items():
        r = group[0]
        predicted = _confusion(r).sum(0)
        top = int(np.argmax(predicted))
        share = predicted[top] / predicted.sum()
        if share >= NEAR_CONSTANT_SHARE:
            names = labels.get(ds, [])
            word = names[top] if top < len(names) else f"class {top}"
            out.append(Finding("constant", f"{model} ({_backends(group)}) on {ds}: top-1 agreement with fp32 "
                                           f"{r['top1_agreement']:.3f} is measured on a model that answers "
                                           f"'{word}' to {share:.0%} of the clips: two graphs that give the same "
                                           "answer to everything agree, so it says nothing about this backend's "
                                           "accuracy."))
    return out


def present_words(row: dict, labels: Sequence[str]) -> list[str]:
    """The words of the clips a row was scored on (its confusion's non-empty rows)."""
    cm = _confusion(row)
    if cm is None or len(labels) != cm.shape[0]:
        return list(labels)
    return [lab for lab, n in zip(labels, cm.sum(1)) if n > 0]


def twelve_class_valid(row: dict, labels: Sequence[str]) -> bool:
    """Whether a row's 12-class figure is about the 12-class task (its clips hold one of the words)."""
    return has_12class_words(present_words(row, labels))


def check_12class(runs: Runs) -> list[Finding]:
    labels = _dataset_labels(runs)
    rows = [r for r in _records(runs, "accuracy") if _num(r.get("accuracy_12class"))
            and not twelve_class_valid(r, labels.get(r["dataset"], []))]
    return [Finding("12-class", f"{model} ({_backends(group)}) on {ds}: a 12-class accuracy "
                                f"({group[0]['accuracy_12class']:.3f}) is recorded, but these clips hold none of "
                                f"the 12-class words ({', '.join(GSC12_LABELS[:10])}): every clip maps to "
                                "_unknown_, so the figure is meaningless and is not printed.")
            for (model, ds, _), group in _by_model(rows, lambda r: None).items()]


CHECKS = (check_noise, check_chance, check_constant, check_12class)


def sanity_findings(runs: Runs) -> list[Finding]:
    return [f for check in CHECKS for f in check(runs)]


def section(runs: Runs) -> list[str]:
    """One warning line per figure that contradicts itself, or the all-clear."""
    found = sanity_findings(runs)
    if not found:
        lines = [f"No figure below contradicts itself ({len(CHECKS)} checks: accuracy rising with noise, below "
                 "chance, agreement on near-constant predictions, 12-class figures without the 12-class words)."]
    else:
        lines = [f"> **Warning ({f.check})**: {f.text}  " for f in found]
    return ["## Sanity checks", ""] + lines + [""]
