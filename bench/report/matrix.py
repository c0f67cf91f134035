"""The "Accuracy x latency" section: every model x backend at the headline thread setting.

Its table (accuracy, latency percentiles, load, throughput, size, memory; the cells not measured,
grouped by reason; 1 thread against all cores), its Markdown, and its plots: accuracy against
latency with the Pareto front, the latency heatmap and throughput against batch size. The flat
`bench_matrix.csv` comes from here too.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.base import (
    Plot, Runs, _get, _img, _num, _plt, _run_ids, _save, _sets_text, flatten, md_table, primary_dataset,
)
from bench.stats import pareto_front

# The headline uses the fewest threads measured (1): on a small shared machine, timings with every
# core busy collide with the harness and the neighbours (here the same fp32 graph measured 0.83 and
# 1.81 ms at 2 threads, 1.0 and 1.0 ms at 1), and 1 thread is the live app's default. Both settings
# stay in the "Threads" table.
HEADLINE_THREADS = "1 thread"


# ----------------------------------------------------------------------------- tables


def matrix_table(runs: Runs) -> pd.DataFrame:
    """One row per (model, backend, threads, dataset): latency joined with that pair's accuracy."""
    m = runs.df("matrix")
    if m.empty:
        return pd.DataFrame()
    flat = pd.DataFrame([flatten(r) for r in m.to_dict("records")])
    acc = runs.df("accuracy")
    if acc.empty:
        return flat
    a = pd.DataFrame([flatten(r) for r in acc.to_dict("records")]).drop(columns=["kind", "run_id"], errors="ignore")
    return flat.merge(a, on=["model", "backend"], how="left")


def summary_table(runs: Runs, dataset: str | None) -> pd.DataFrame:
    """The headline matrix at the headline thread setting: accuracy on `dataset`, latency, size, memory."""
    m = runs.df("matrix")
    if m.empty:
        return pd.DataFrame()
    acc = runs.df("accuracy")
    rows = []
    for r in m.to_dict("records"):
        if r.get("threads") is not None and not _is_headline(r, m):
            continue
        a = {}
        if not acc.empty and dataset is not None:
            hit = acc[(acc.model == r["model"]) & (acc.backend == r["backend"]) & (acc.dataset == dataset)]
            a = hit.iloc[0].to_dict() if len(hit) else {}
        ok = r.get("status") == "ok"
        rows.append({
            "model": r["model"], "backend": r["backend"], "status": r.get("status"),
            "threads": r.get("threads"),
            "accuracy": a.get("accuracy") if ok else None, "macro F1": a.get("macro_f1") if ok else None,
            "agree fp32": a.get("top1_agreement") if ok else None,
            "p50 ms": _get(r.get("latency"), "p50_ms"), "p90 ms": _get(r.get("latency"), "p90_ms"),
            "p99 ms": _get(r.get("latency"), "p99_ms"),
            "model-only p50 ms": _get(r.get("latency_model_only"), "p50_ms"),
            "load s": r.get("load_s"), "first ms": r.get("first_inference_ms"),
            "clips/s @32": _get(r.get("throughput"), "32", "clips_per_s"),
            "clips/s @64": _get(r.get("throughput"), "64", "clips_per_s"),
            "params": r.get("params"), "MMACs": r["macs"] / 1e6 if _num(r.get("macs")) else None,
            "file MB": (r.get("model_file_bytes") or r.get("weights_bytes")) / 2**20
            if _num(r.get("model_file_bytes") or r.get("weights_bytes")) else None,
            "peak RSS MB": r.get("peak_rss_mb"),
        })
    return pd.DataFrame(rows)


def measured(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows that hold numbers (ok) or a failure worth seeing (error), without the n/a ones."""
    if summary.empty:
        return summary
    return summary[~summary.status.astype(str).str.startswith("n/a")].reset_index(drop=True)


def not_measured(runs: Runs) -> pd.DataFrame:
    """model x backend cells without numbers, grouped by reason (an n/a matrix would be mostly empty)."""
    m = runs.df("matrix")
    if m.empty:
        return pd.DataFrame()
    na = m[m.status.astype(str).str.startswith("n/a")]
    rows = []
    for reason, g in na.groupby(na.status.str[len("n/a: "):], sort=False):
        models = list(dict.fromkeys(g.model))
        backends = list(dict.fromkeys(g.backend))
        rows.append({"reason": reason, "models": ", ".join(models), "backends": ", ".join(backends)})
    return pd.DataFrame(rows)


def _is_headline(r: dict, m: pd.DataFrame) -> bool:
    same = m[(m.model == r["model"]) & (m.backend == r["backend"])]
    threads = [t for t in same.threads.tolist() if _num(t)]
    return not threads or r["threads"] == min(threads)


def threads_table(runs: Runs) -> pd.DataFrame:
    m = runs.df("matrix")
    if m.empty or "latency" not in m:
        return pd.DataFrame()
    ok = m[m.status == "ok"]
    rows = [{"model": r["model"], "backend": r["backend"], "threads": r["threads"],
             "p50 ms": _get(r["latency"], "p50_ms"), "p99 ms": _get(r["latency"], "p99_ms"),
             "runs": _get(r["latency"], "n"), "stopped by": _get(r["latency"], "stopped_by"),
             "model-only p50 ms": _get(r.get("latency_model_only"), "p50_ms"),
             "clips/s @64": _get(r.get("throughput"), "64", "clips_per_s")} for r in ok.to_dict("records")]
    return pd.DataFrame(rows)


def _map(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


# ----------------------------------------------------------------------------- markdown


def section(runs: Runs, plots: dict[str, Plot], base: Path) -> list[str]:
    """The headline table with its plot, the cells not measured, the heatmap, throughput and threads."""
    ds = primary_dataset(runs)
    return ["## Accuracy x latency", "", _img(plots, "accuracy_latency", "accuracy vs latency with the Pareto front",
                                              base),
            f"Headline matrix ({HEADLINE_THREADS}; accuracy on **{ds}**; `agree fp32` = top-1 agreement with the fp32 "
            "PyTorch model; latency = batch-1 waveform-in → probabilities):", "",
            md_table(measured(summary_table(runs, ds))), "", "Not measured (and why):", "",
            md_table(not_measured(runs)), "",
            "### Latency heatmap", "", _img(plots, "latency_heatmap", "latency heatmap", base), "",
            "### Throughput", "", _img(plots, "throughput", "throughput vs batch size", base), "",
            "### Threads: 1 vs all cores", "", md_table(threads_table(runs)), ""]


# ----------------------------------------------------------------------------- plots


def plot_accuracy_latency(runs: Runs, out: Path) -> Plot | None:
    plt, sns = _plt()
    from bench.plotting import legend_outside, place_labels

    s = summary_table(runs, None)
    acc = runs.df("accuracy")
    if s.empty or acc.empty:
        return None
    pts = []
    for ds in [d["name"] for d in runs.datasets()]:
        for r in s[s.status == "ok"].to_dict("records"):
            hit = acc[(acc.model == r["model"]) & (acc.backend == r["backend"]) & (acc.dataset == ds)]
            if len(hit) and _num(r["p50 ms"]):
                pts.append({"dataset": ds, "model": r["model"], "backend": r["backend"], "p50 ms": r["p50 ms"],
                            "accuracy": float(hit.iloc[0]["accuracy"])})
    if not pts:
        return None
    df = pd.DataFrame(pts)
    sets = list(dict.fromkeys(df.dataset))
    models, backends = list(dict.fromkeys(df.model)), list(dict.fromkeys(df.backend))
    fig, axes = plt.subplots(1, len(sets), figsize=(5.6 * len(sets), 4.6), squeeze=False)
    lo, hi = df["p50 ms"].min(), df["p50 ms"].max()
    for ax, ds in zip(axes[0], sets):
        d = df[df.dataset == ds].reset_index(drop=True)
        sns.scatterplot(data=d, x="p50 ms", y="accuracy", hue="model", hue_order=models, style="backend",
                        style_order=backends, s=70, ax=ax)
        front = d[pareto_front(d["p50 ms"], d["accuracy"])].sort_values("p50 ms")
        ax.step(front["p50 ms"], front["accuracy"], where="post", color="black", lw=1.0, ls="--",
                label="Pareto front")
        ax.scatter(front["p50 ms"], front["accuracy"], s=200, facecolors="none", edgecolors="black", lw=1.1)
        _plain_log_x(ax)
        ax.set_xlim(lo / 1.5, hi * 1.5)
        ax.set_ylim(max(0.0, d.accuracy.min() - 0.08), min(1.0, d.accuracy.max() + 0.08))
        ax.set_xlabel(f"batch-1 latency p50 (ms, {HEADLINE_THREADS}, log)")
        ax.set_title(f"{ds}", fontsize=11)
    legend_outside(fig, axes[0])
    fig.suptitle("accuracy vs latency (circled: Pareto front)", fontsize=12)
    fig.tight_layout()
    for ax, ds in zip(axes[0], sets):  # direct labels on the front only: the legend names the rest
        d = df[df.dataset == ds].reset_index(drop=True)
        front = d[pareto_front(d["p50 ms"], d["accuracy"])]
        place_labels(ax, [(r["p50 ms"], r["accuracy"], f"{r['model']} / {r['backend']}")
                          for r in front.to_dict("records")], obstacles=list(zip(d["p50 ms"], d["accuracy"])))
    caption = (f"Top-1 accuracy against batch-1 p50 latency (waveform in, {HEADLINE_THREADS}) of every trained "
               f"model x backend, one panel per data set: {_sets_text(runs, sets)}; the dashed line and circles "
               f"mark the Pareto front. Run {_run_ids(runs)}.")
    return _save(fig, out, caption, runs)


def _plain_log_x(ax) -> None:
    _plain_log(ax.xaxis, ax.set_xscale)


def _plain_log(axis, set_scale=None) -> None:
    """A log axis ticked at 1-2-5 with plain numbers (0.5, 1, 2, 5, 10), not 10^x."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    if set_scale is not None:
        set_scale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def plot_latency_heatmap(runs: Runs, out: Path) -> Plot | None:
    plt, sns = _plt()
    s = summary_table(runs, None)
    if s.empty:
        return None
    grid = s.pivot_table(index="model", columns="backend", values="p50 ms", aggfunc="first", dropna=False)
    backends = list(dict.fromkeys(s.backend))
    models = list(dict.fromkeys(s.model))
    grid = grid.reindex(index=models, columns=backends)
    if grid.isna().all().all():
        return None  # nothing measured: an all-"n/a" picture says less than the table of reasons
    values = grid.astype(float)
    # Latencies span decades (0.3 ms to 40 ms): colour on a log scale, so small models differ too.
    from matplotlib.colors import LogNorm

    finite = values.stack().dropna()
    spans_decades = len(finite) > 1 and finite.min() > 0 and finite.max() / finite.min() >= 10
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if spans_decades else None
    fig, ax = plt.subplots(figsize=(1.25 * len(backends) + 3.2, 0.5 * len(models) + 1.8))
    sns.heatmap(values, annot=True, fmt=".3g", cmap="viridis_r", norm=norm,
                cbar_kws={"label": "p50 ms (log)" if norm is not None else "p50 ms"},
                ax=ax, mask=grid.isna(), linewidths=0.5, linecolor="white", annot_kws={"fontsize": 8})
    for i, mdl in enumerate(models):
        for j, b in enumerate(backends):
            if pd.isna(grid.loc[mdl, b]):
                ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", color="grey", fontsize=8)
    ax.grid(False)  # the style's grid would cross the n/a cells
    if norm is not None:
        _plain_log(ax.collections[0].colorbar.ax.yaxis)
    ax.set_xlabel("backend")
    ax.set_ylabel("")
    ax.tick_params(axis="x", labelrotation=30)
    for t in ax.get_xticklabels():
        t.set_ha("right")
    ax.set_title(f"batch-1 latency p50 (ms), model x backend, {HEADLINE_THREADS}")
    caption = (f"Batch-1 p50 latency (ms, waveform in, {HEADLINE_THREADS}) of every model x backend"
               f"{', colour on a log scale' if norm is not None else ''}; n/a: not measurable here (reasons in the table below). Run {_run_ids(runs)}.")
    return _save(fig, out, caption, runs)


def plot_throughput(runs: Runs, out: Path) -> Plot | None:
    plt, sns = _plt()
    from bench.plotting import legend_outside

    m = runs.df("matrix")
    if m.empty or "throughput" not in m:
        return None
    rows = []
    for r in m[m.status == "ok"].to_dict("records"):
        if not _is_headline(r, m):
            continue
        for b, v in _map(r.get("throughput")).items():
            rows.append({"model": r["model"], "backend": r["backend"], "batch": int(b),
                         "clips/s": v["clips_per_s"]})
    if not rows:
        return None
    df = pd.DataFrame(rows).sort_values("batch")
    backends = list(dict.fromkeys(df.backend))
    cols = min(3, len(backends))
    rows_n = math.ceil(len(backends) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.6 * cols + 0.5, 3.3 * rows_n + 0.5), squeeze=False,
                             sharey=True)
    flat = [ax for row in axes for ax in row]
    models = list(dict.fromkeys(df.model))
    palette = dict(zip(models, sns.color_palette(n_colors=len(models))))
    batches = sorted(df.batch.unique())
    log_y = df["clips/s"].max() / max(df["clips/s"].min(), 1e-9) >= 10  # log where the data spans decades
    for ax, b in zip(flat, backends):  # one panel per backend: 42 lines in one axes do not read
        d = df[df.backend == b]
        sns.lineplot(data=d, x="batch", y="clips/s", hue="model", hue_order=models, palette=palette, marker="o",
                     ax=ax)
        ax.set_xscale("log", base=2)
        if log_y:
            _plain_log(ax.yaxis, ax.set_yscale)
        ax.set_xticks(batches, [str(x) for x in batches])
        ax.set_title(b, fontsize=10)
        ax.set_xlabel("batch")
    for ax in flat[len(backends):]:
        ax.set_visible(False)
    legend_outside(fig, flat[:len(backends)], title="model")
    fig.suptitle(f"throughput vs batch size ({HEADLINE_THREADS}{', log-log' if log_y else ', log x'})", fontsize=12)
    fig.tight_layout()
    caption = (f"Clips per second against batch size ({', '.join(map(str, batches))}; {HEADLINE_THREADS}, real "
               f"clips), one panel per backend, {'both axes' if log_y else 'batch axis'} log. Run {_run_ids(runs)}.")
    return _save(fig, out, caption, runs)
