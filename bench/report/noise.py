"""The "Noise robustness" section: clip accuracy with test-split noise mixed in at each SNR.

Its tables (`bench_noise.csv`, and accuracy per SNR one row per model), its Markdown, and its
plot, which sets the clip accuracy beside the streaming hit rate at the same SNRs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from bench.report.base import Plot, Runs, _img, _plt, _run_ids, _save, _seq, _sets_text, md_table, snr_label
from bench.report.streaming import streaming_table


def noise_table(runs: Runs) -> pd.DataFrame:
    s = runs.df("noise")
    rows = []
    for r in s.to_dict("records"):
        for p in _seq(r.get("per_snr")):
            rows.append({"model": r["model"], "dataset": r["dataset"], "backend": r.get("backend"),
                         "scored on": r.get("scored_on"), "noise": r.get("noise"), **p,
                         "snr": snr_label(p["snr_db"])})
    return pd.DataFrame(rows)


def noise_summary(runs: Runs) -> pd.DataFrame:
    t = noise_table(runs)
    if t.empty:
        return t
    index = ["model", "dataset", "backend"] + (["scored on"] if t["scored on"].notna().any() else [])
    wide = t.pivot_table(index=index, columns="snr", values="accuracy", sort=False).reset_index()
    order = index + [c for c in ("clean", "20 dB", "10 dB", "5 dB", "0 dB") if c in wide.columns]
    return wide[order + [c for c in wide.columns if c not in order]]


def section(runs: Runs, plots: dict[str, Plot], base: Path) -> list[str]:
    return ["## Noise robustness", "", md_table(noise_summary(runs), 3), "",
            _img(plots, "snr", "accuracy vs SNR", base), ""]


def _snr_order(levels: Iterable[str]) -> list[str]:
    """SNR categories, cleanest first: "clean" has no dB value to place it by."""
    return sorted(set(levels), key=lambda s: -1e9 if s == "clean" else -float(s.split()[0]))


def plot_snr(runs: Runs, out: Path) -> Plot | None:
    plt, sns = _plt()
    from bench.plotting import legend_outside

    t = noise_table(runs)
    st = streaming_table(runs)
    if t.empty and st.empty:
        return None
    panels = [p for p, d in (("clip", t), ("stream", st)) if not d.empty]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.2), squeeze=False)
    models = list(dict.fromkeys([*t.get("model", []), *st.get("model", [])]))
    palette = dict(zip(models, sns.color_palette(n_colors=len(models))))
    for ax, panel in zip(axes[0], panels):
        d = (t if panel == "clip" else st).copy()
        if panel == "stream":
            d["snr"] = [snr_label(v) for v in d.snr_db]
        order = _snr_order(d.snr)
        d["x"] = [order.index(s) for s in d.snr]
        y = "accuracy" if panel == "clip" else "hit_rate"
        sns.lineplot(data=d, x="x", y=y, hue="model", hue_order=models, palette=palette, style="dataset",
                     markers=True, ax=ax)
        ax.set_xticks(range(len(order)), order)
        ax.set_xlabel("SNR (noisier to the right)")
        ax.set_ylim(0, 1.02)
        if panel == "clip":
            ax.set_title("clip accuracy vs SNR", fontsize=11)
        else:
            ax.set_ylabel("hit rate (live engine, default threshold)")
            ax.set_title("streaming hit rate vs SNR", fontsize=11)
    legend_outside(fig, axes[0])
    fig.tight_layout()
    sets = list(dict.fromkeys([*t.get("dataset", []), *st.get("dataset", [])]))
    caption = (f"Left: clip accuracy of each trained model with test-split noise mixed in at each SNR; right: "
               f"the live engine's hit rate on word streams at each SNR; on {_sets_text(runs, sets)}. "
               f"Run {_run_ids(runs)}.")
    return _save(fig, out, caption, runs)
