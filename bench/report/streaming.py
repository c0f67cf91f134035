"""The "Streaming" section: the live detection engine on word streams and a keyword-free stream.

Its tables (hits, wrong words and false accepts per SNR; the threshold sweep as `bench_curves.csv`),
its Markdown with the false-accept resolution of the stream, and its plot: miss rate against
false accepts per hour across thresholds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.base import Plot, Runs, _img, _num, _plt, _run_ids, _save, _seq, _sets_text, flatten, md_table


def streaming_table(runs: Runs) -> pd.DataFrame:
    s = runs.df("streaming")
    rows = []
    for r in s.to_dict("records"):
        head = flatten({k: v for k, v in r.items() if k not in ("per_snr", "engine")})
        for p in _seq(r.get("per_snr")):
            rows.append({**head, **flatten(p)})
    return pd.DataFrame(rows)


def curve_table(runs: Runs) -> pd.DataFrame:
    """The miss-rate vs FA/h sweep, one row per (model, dataset, SNR, threshold)."""
    rows = []
    for r in runs.df("streaming").to_dict("records"):
        for p in _seq(r.get("per_snr")):
            for c in _seq(p.get("curve")):
                rows.append({"model": r["model"], "dataset": r["dataset"], "snr_db": p["snr_db"], **c})
    return pd.DataFrame(rows)


def streaming_summary(runs: Runs) -> pd.DataFrame:
    rows = []
    for r in runs.df("streaming").to_dict("records"):
        for p in _seq(r.get("per_snr")):
            rows.append({"model": r["model"], "dataset": r["dataset"], "backend": r.get("backend"),
                         "SNR dB": p["snr_db"], "words": p["n_words"], "hit rate": p["hit_rate"],
                         "wrong-word rate": p["wrong_word_rate"], "extra dets": p["extra_detections"],
                         f"FA/h @ {r['default_threshold']:g}": r["fa_per_hour"],
                         "thr @ 1 FA/h": p.get("threshold_at_target_fa"),
                         "miss @ 1 FA/h": p.get("miss_rate_at_target_fa"),
                         "FA minutes": r["free_seconds"] / 60, "model ran": p.get("model_ran_fraction")})
    return pd.DataFrame(rows)


def section(runs: Runs, plots: dict[str, Plot], base: Path) -> list[str]:
    L = ["## Streaming (live detection engine)", "",
         "Words from the test split, spaced by the configured gap over background noise, and a keyword-free "
         "noise stream, all run through `realtime.engine.run_offline` (VAD, EMA, threshold, cooldown of the "
         "live app). The threshold sweep replays the engine's own trigger over its per-hop scores.", "",
         md_table(streaming_summary(runs)), "", _img(plots, "miss_fa", "miss rate vs false accepts per hour", base), ""]
    st = runs.df("streaming")
    if "free_seconds" in st:
        st = st[st.free_seconds.notna()]
    if not st.empty:
        r0 = st.iloc[0]
        L.append(f"One false accept on the {r0['free_seconds'] / 60:.0f}-minute keyword-free stream is "
                 f"{r0['fa_resolution_per_hour']:.1f} FA/h, so \"1 FA/h\" here means *no* false accept observed."
                 + (" **The keyword-free stream is shorter than 10 minutes (quick mode).**"
                    if bool(r0.get("free_stream_short")) else ""))
        L.append("")
    return L


def plot_miss_fa(runs: Runs, out: Path) -> Plot | None:
    plt, sns = _plt()
    from bench.plotting import legend_outside, log_axis_with_zero

    c = curve_table(runs)
    s = runs.df("streaming")
    if c.empty:
        return None
    ref = {(r["model"], r["dataset"]): r.get("reference_snr_db") for r in s.to_dict("records")}
    target = {(r["model"], r["dataset"]): r.get("target_fa_per_hour") for r in s.to_dict("records")}
    c = c[[ref.get((m, d)) == snr for m, d, snr in zip(c.model, c.dataset, c.snr_db)]].copy()
    if c.empty:
        return None
    sets = list(dict.fromkeys(c.dataset))
    models = list(dict.fromkeys(c.model))
    palette = dict(zip(models, sns.color_palette(n_colors=len(models))))
    goal = next((v for v in target.values() if _num(v)), 1.0)
    fig, axes = plt.subplots(1, len(sets), figsize=(5.4 * len(sets), 4.2), squeeze=False, sharey=True)
    for ax, ds in zip(axes[0], sets):
        d = c[c.dataset == ds].sort_values("threshold").copy()
        zero_at = log_axis_with_zero(ax, c.fa_per_hour, floor=goal)
        d["x"] = np.where(d.fa_per_hour > 0, d.fa_per_hour, zero_at)  # 0 FA/h at its own tick
        sns.lineplot(data=d, x="x", y="miss_rate", hue="model", hue_order=models, palette=palette, marker="o",
                     sort=False, estimator=None, ax=ax)
        log_axis_with_zero(ax, c.fa_per_hour, floor=goal)  # seaborn resets the ticks
        ax.axvline(goal, color="grey", ls="--", lw=1, label=f"{goal:g} FA/h target")
        ax.set_xlabel("false accepts per hour (log; 0 left of the break)")
        ax.set_ylabel("miss rate")
        snr = d.snr_db.iloc[0]
        ax.set_title(f"{ds}, words at {snr:g} dB", fontsize=11)
    legend_outside(fig, axes[0])
    fig.suptitle("miss rate vs false accepts per hour across thresholds", fontsize=12)
    fig.tight_layout()
    free = s.free_seconds.dropna() if "free_seconds" in s else pd.Series(dtype=float)
    minutes = f"{free.iloc[0] / 60:g}-minute" if len(free) else "keyword-free"
    caption = (f"Miss rate against false accepts per hour of the live engine as its threshold sweeps, words at "
               f"the reference SNR and a {minutes} keyword-free stream, on {_sets_text(runs, sets)}; 0 FA/h has "
               f"its own tick left of the dotted break. Run {_run_ids(runs)}.")
    return _save(fig, out, caption, runs)
