"""The wake-word section of the bench report: DET curves and false accepts per hour, from results/wakeword.json.

`python -m bench report` adds it when that file is there (bench.wakeword writes it); it also
stands alone as results/wakeword.md. Every FA/h figure is printed with the hours of negatives
it was counted on, and an FA/h of 0 is "none in that many hours", never "zero per hour".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from kws.fsutil import atomic_path, atomic_write_text

WAKEWORD_FILE = "wakeword.json"
PLOT_NAME = "det_curves.png"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _ci(ci: Sequence[float] | None) -> str:
    return "" if not ci else f" ({100 * ci[0]:.0f}-{100 * ci[1]:.0f})"


def _fa(fa_per_hour: float, n: int, hours: float) -> str:
    if n == 0:
        return f"0 in {hours:.1f} h (< {1 / hours:.2f}/h)"
    return f"{fa_per_hour:.2f}/h ({n} in {hours:.1f} h)"


def load(results: Path) -> dict | None:
    path = Path(results) / WAKEWORD_FILE
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    return doc if isinstance(doc, dict) and "results" in doc else None


def det_points(model: dict, snr: str) -> tuple[np.ndarray, np.ndarray]:
    """The DET staircase: for each FA/h reached, the lowest miss rate of a threshold reaching it (lower envelope)."""
    best: dict[float, float] = {}
    for p in model["curve"]:
        x, y = p["fa_per_hour"], p["miss_rate"][snr]
        best[x] = min(y, best.get(x, 1.0))
    xs = np.array(sorted(best))
    ys = np.minimum.accumulate(np.array([best[x] for x in xs]))  # more false accepts never buy more misses
    return xs, ys


CAPTION = ("DET curves: miss rate of the ten core words said by held-out real speakers against false accepts per "
           "hour of keyword-free speech (bench.negatives), as one threshold sweeps; dots: per-word thresholds "
           "calibrated for 0.5 FA/h on a second negative stream; no false accept in H hours is drawn at 0.5/H "
           "(triangle); dashed: the target")


def plot_det(doc: dict, out: Path, source: str) -> Path | None:
    fig = det_figure(doc)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    meta = {"Title": out.stem, "Description": CAPTION, "Software": "python -m bench report", "Source": source,
            "Creation Time": str(doc["metadata"].get("time_utc", "?")),
            "Commit": str((doc["metadata"].get("git") or {}).get("commit", "?"))}
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return out


def det_figure(doc: dict):
    """The DET figure (one panel per SNR), or None when the file holds no model."""
    models = [r for r in doc["results"] if r.get("kind") == "model"]
    if not models:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snrs = list(models[0]["positives"])
    fig, axes = plt.subplots(1, len(snrs), figsize=(5.2 * len(snrs), 4.6), sharey=True, layout="constrained")
    axes = np.atleast_1d(axes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, snr in zip(axes, snrs):
        for k, m in enumerate(models):
            c = colors[k % len(colors)]
            xs, ys = det_points(m, snr)
            floor = 0.5 / m["negative_hours"]  # where "no false accept in these hours" is drawn
            ax.step(np.maximum(xs, floor), ys, where="post", color=c, lw=1.6, label=f"{m['label']}: {m['negative_hours']:g} h of negatives")
            if xs[0] == 0:
                ax.plot([floor], [ys[0]], marker="<", color=c, ms=7)
            cal = m["calibrated"]
            ax.plot([max(cal["fa_per_hour"], floor)], [1 - cal["detected"][snr]["rate"]], "o", color=c, ms=6,
                    markeredgecolor="black")
        target = doc["metadata"].get("config", {}).get("target_fa_per_hour", 0.5)
        ax.axvline(target, color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_xlim(0.1, 3000)
        ax.set_ylim(0, 1)
        ax.set_title(f"hits at {float(snr):g} dB SNR")
        ax.set_xlabel("false accepts per hour")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("miss rate (ten core words, held-out speakers)")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle("Wake-word detection through the live engine", fontsize=12)
    fig.supxlabel("false accepts counted on keyword-free audio with speech in it (bench.negatives)", fontsize=10)
    return fig


def section_lines(doc: dict, plot: Path | None, base: Path) -> list[str]:
    rows = doc["results"]
    meta = doc["metadata"]
    cfg = meta.get("config", {})
    target = cfg.get("target_fa_per_hour", 0.5)
    L = ["## Wake-word detection: DET curves and false accepts per hour", "",
         f"From `{WAKEWORD_FILE}` (`{meta.get('command')}`, commit "
         f"`{str((meta.get('git') or {}).get('commit', '?'))[:10]}`, {meta.get('time_utc')}). "
         f"{' '.join(meta.get('protocol', '').split())}", ""]
    negs = [r for r in rows if r.get("kind") == "negatives"]
    if negs:
        L += ["Negative streams (keyword-free, with speech):", "",
              "| role | hours | speech h (real words / sentences) | utterances (real / sentences) | real speakers | "
              "noise segments |", "|---|---|---|---|---|---|"]
        for n in negs:
            sp, ut = n.get("speech_hours", {}), n.get("utterances", {})
            L.append(f"| {n['role']} | {n['hours']:.2f} | {sp.get('real', 0):.2f} / {sp.get('sentence', 0):.2f} | "
                     f"{ut.get('real', 0)} / {ut.get('sentence', 0)} | {n.get('real_speakers', '?')} | "
                     + ", ".join(f"{k} {v}" for k, v in sorted(n.get("noise_segments", {}).items())) + " |")
        L.append("")
    models = [r for r in rows if r.get("kind") == "model"]
    if models:
        snrs = list(models[0]["positives"])
        head = " | ".join(f"{float(s):g} dB" for s in snrs)
        L += [f"One threshold for every word, the best that keeps false accepts at or under {target:g}/h (read off "
              "the DET curve; the threshold is chosen on the negatives it is scored on):", "",
              f"| model | path | held-out words (speakers) | negatives | {head} | threshold | FA at it |",
              "|---|---|---|---|" + "---|" * len(snrs) + "---|---|"]
        for m in models:
            at = m["at_target"]
            cells = " | ".join(_pct(at[s]["detected"]) + _ci(at[s].get("detected_ci95_speakers")) if s in at
                               else "not reached" for s in snrs)
            a0 = next(iter(at.values()), None)
            th = "–" if a0 is None else f"{a0['threshold']:.3f}"
            fa = "–" if a0 is None else _fa(a0["fa_per_hour"], a0["false_accepts"], a0["negative_hours"])
            if a0 is not None and a0.get("false_accept_words"):
                fa += " (" + ", ".join(f"{w} {n}" for w, n in a0["false_accept_words"].items()) + ")"
            words = m["positives"][snrs[0]]["words"]
            L.append(f"| {m['label']} | {m['path']} | {words} ({m['speakers']}) | {m['negative_hours']:.1f} h | "
                     f"{cells} | {th} | {fa} |")
        L += ["", f"Per-word thresholds calibrated for {target:g} FA/h on the calibration stream, measured on the "
              "negatives and hits they were not fitted on (95 % intervals over speakers):", "",
              f"| model | false accepts (where) | {head} |", "|---|---|" + "---|" * len(snrs)]
        for m in models:
            c = m["calibrated"]
            where = ", ".join(f"{k} {v}" for k, v in c["false_accepts_in"].items() if v)
            cells = " | ".join(_pct(c["detected"][s]["rate"]) + _ci(c["detected"][s].get("ci95_speakers"))
                               for s in snrs)
            L.append(f"| {m['label']} | {_fa(c['fa_per_hour'], c['false_accepts'], c['negative_hours'])}"
                     f"{' (' + where + ')' if where else ''} | {cells} |")
        L.append("")
        L += where_lines(models)
    if plot is not None:
        L += [f"![DET curves]({plot.relative_to(base).as_posix()})", ""]
    cost = [r for r in rows if r.get("kind") == "form_cost"]
    if cost:
        L += ["What the speech embedding's stream form costs against the 1 s clip form it was trained on: 12-class "
              "accuracy on the same held-out clips (clean: silence around them; else over the noise bed), the stream "
              "form read where its 9 embeddings are centred on the clip (95 % intervals over speakers):", "",
              "| model | clips (speakers) | context | clip form | stream form | difference |",
              "|---|---|---|---|---|---|"]
        for r in cost:
            ctx = "silence (clean)" if r["snr_db"] is None else f"noise, {r['snr_db']:g} dB"
            L.append(f"| {r['ref']} | {r['clips']} ({r['speakers']}) | {ctx} | {_pct(r['clip_form'])}"
                     f"{_ci(r['clip_form_ci95'])} | {_pct(r['stream_form'])}{_ci(r['stream_form_ci95'])} | "
                     f"{100 * r['difference']:+.1f} points ({100 * r['difference_ci95'][0]:+.1f} to "
                     f"{100 * r['difference_ci95'][1]:+.1f}) |")
        L.append("")
    return L


WHERE_AT = (0.5, 0.8, 0.9)  # thresholds at which the report says what kind of negative audio fired


def where_lines(models: Sequence[dict]) -> list[str]:
    """Which negatives the false accepts fell in (a real non-keyword word, a sentence, neither) at a few thresholds."""
    rows = []
    for m in models:
        for c in m["curve"]:
            if "false_accepts_in" in c and any(abs(c["threshold"] - t) < 1e-6 for t in WHERE_AT):
                w = c["false_accepts_in"]
                rows.append(f"| {m['label']} | {c['threshold']:g} | {c['fa_per_hour']:.1f} | {w['real']} | "
                            f"{w['sentence']} | {w['between']} |")
    if not rows:
        return []
    out = ["Where the false accepts fall (in or up to 1 s after a real non-keyword word, a synthetic sentence, "
           "or neither), at a few thresholds:", "",
           "| model | threshold | FA/h | real words | sentences | neither |", "|---|---|---|---|---|---|", *rows, ""]
    src = [(m["label"], t, pairs) for m in models for t, pairs in m.get("false_accept_sources", {}).items() if pairs]
    if src:
        out += ["What set them off, commonest first (what was said → the word that fired: count):", "",
                "| model | threshold | said → fired |", "|---|---|---|"]
        out += [f"| {label} | {float(t):g} | " + ", ".join(f"{p['said']} → {p['fired']}: {p['false_accepts']}"
                                                          for p in pairs) + " |" for label, t, pairs in src]
        out.append("")
    return out


def wakeword_section(results: Path, plots_dir: Path, base: Path) -> tuple[list[str], list[Path]]:
    """(Markdown lines, plots) of the section, or nothing when results/wakeword.json is absent."""
    doc = load(results)
    if doc is None:
        return [], []
    source = f"results/{WAKEWORD_FILE}"
    plot = plot_det(doc, Path(plots_dir) / PLOT_NAME, source)
    return section_lines(doc, plot, base), [plot] if plot else []


def write_markdown(results: Path, lines: Sequence[str] | None = None) -> Path | None:
    """results/wakeword.md: the section alone (`lines`: the section already made for the bench report)."""
    results = Path(results)
    if lines is None:
        lines, _ = wakeword_section(results, results / "plots", results)
    if not lines:
        return None
    path = results / "wakeword.md"
    atomic_write_text(path, "\n".join(["# Wake-word detection", "", *lines[2:]]) + "\n")
    return path
