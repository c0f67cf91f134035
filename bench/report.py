"""Reports from the bench JSON files only: flat CSVs, a Markdown report, seaborn plots.

Nothing here measures anything; `python -m bench report` rebuilds every file from
`results/bench/*.json`, so a report can be regenerated, restyled or merged across runs
(e.g. a CPU run here and a GPU run elsewhere) without re-running the benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from bench.stats import pareto_front
from kws.fsutil import atomic_path, atomic_write_text, read_json
from kws.paths import PROJECT_ROOT, RESULTS

REPORT_NAME = "bench_report.md"
KEY_COLUMNS = {"matrix": ("model", "backend", "threads"), "accuracy": ("model", "backend", "dataset"),
               "model": ("model",), "streaming": ("model", "dataset"), "noise": ("model", "dataset")}


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True, eq=False)
class Runs:
    """Rows of one or more run files, newest run winning where two measured the same thing."""

    metadata: list[dict]
    paths: list[Path]
    rows: dict[str, pd.DataFrame]  # kind -> rows (nested values kept as Python objects)

    def df(self, kind: str) -> pd.DataFrame:
        return self.rows.get(kind, pd.DataFrame())

    @property
    def primary(self) -> dict:
        return self.metadata[-1]

    def datasets(self) -> list[dict]:
        seen: dict[str, dict] = {}
        for m in self.metadata:
            for d in m.get("datasets", []):
                seen[d["name"]] = d
        return list(seen.values())


def read_run(path: str | Path) -> dict:
    p = Path(path)
    data = read_json(p, "bench result file")
    if not isinstance(data, dict) or "metadata" not in data or not isinstance(data.get("results"), list):
        raise ValueError(f"{p}: not a bench result file (expected {{'metadata': ..., 'results': [...]}})")
    return data


def latest_runs(folder: Path = RESULTS / "bench") -> list[Path]:
    """The newest run file in `folder` (run ids start with a UTC timestamp, so names sort by time)."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{folder}: no bench result files; run `python -m bench` first")
    return files[-1:]


def load_runs(paths: Sequence[str | Path]) -> Runs:
    if not paths:
        raise ValueError("no bench result files given")
    metas, by_kind = [], {}
    for i, p in enumerate(paths):
        data = read_run(p)
        meta = data["metadata"]
        metas.append(meta)
        for row in data["results"]:
            by_kind.setdefault(row.get("kind", "matrix"), []).append({**row, "run_id": meta.get("run_id", str(p)),
                                                                       "_order": i})
    rows = {}
    for kind, items in by_kind.items():
        df = pd.DataFrame(items)
        keys = [k for k in KEY_COLUMNS.get(kind, ()) if k in df.columns]
        if keys:
            # threads is None for n/a rows; key on its string so they deduplicate too
            df["_key"] = df[keys].astype(str).agg("|".join, axis=1)
            df = df.sort_values("_order", kind="stable").drop_duplicates("_key", keep="last").drop(columns="_key")
        rows[kind] = df.drop(columns="_order").reset_index(drop=True)
    return Runs(metas, [Path(p) for p in paths], rows)


# ----------------------------------------------------------------------------- flat tables


def flatten(row: dict, prefix: str = "", skip: Iterable[str] = ("confusion", "curve", "traceback")) -> dict:
    """Nested dicts -> prefixed columns; lists of scalars -> ';'-joined; big arrays dropped."""
    out: dict[str, Any] = {}
    skip = tuple(skip)
    for k, v in row.items():
        if k in skip:
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{name}_", skip))
        elif isinstance(v, (list, tuple)):
            if all(not isinstance(x, (dict, list)) for x in v):
                out[name] = ";".join(str(x) for x in v)
        else:
            out[name] = v
    return out


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


def streaming_table(runs: Runs) -> pd.DataFrame:
    s = runs.df("streaming")
    rows = []
    for r in s.to_dict("records"):
        head = flatten({k: v for k, v in r.items() if k not in ("per_snr", "engine")})
        for p in _seq(r.get("per_snr")):
            rows.append({**head, **flatten(p)})
    return pd.DataFrame(rows)


def noise_table(runs: Runs) -> pd.DataFrame:
    s = runs.df("noise")
    rows = []
    for r in s.to_dict("records"):
        for p in _seq(r.get("per_snr")):
            rows.append({"model": r["model"], "dataset": r["dataset"], "backend": r.get("backend"),
                         "scored on": r.get("scored_on"), "noise": r.get("noise"), **p,
                         "snr": snr_label(p["snr_db"])})
    return pd.DataFrame(rows)


def _seq(v: Any) -> list:
    """A list-valued field, or [] where a row lacks it (pandas fills missing fields with NaN)."""
    return v if isinstance(v, list) else []


def _map(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def snr_label(snr: float | None) -> str:
    return "clean" if snr is None or (isinstance(snr, float) and math.isnan(snr)) else f"{snr:g} dB"


def curve_table(runs: Runs) -> pd.DataFrame:
    """The miss-rate vs FA/h sweep, one row per (model, dataset, SNR, threshold)."""
    rows = []
    for r in runs.df("streaming").to_dict("records"):
        for p in _seq(r.get("per_snr")):
            for c in _seq(p.get("curve")):
                rows.append({"model": r["model"], "dataset": r["dataset"], "snr_db": p["snr_db"], **c})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- markdown


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table (pandas' to_markdown needs `tabulate`, which the project does not ship)."""
    if df.empty:
        return "_(no rows)_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(fmt(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(r[c], digits) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def primary_dataset(runs: Runs) -> str | None:
    ds = runs.datasets()
    return ds[0]["name"] if ds else None


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


def _num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not (isinstance(v, float) and math.isnan(v))


# The headline uses the fewest threads measured (1): on a small shared machine, timings with every
# core busy collide with the harness and the neighbours (here the same fp32 graph measured 0.83 and
# 1.81 ms at 2 threads, 1.0 and 1.0 ms at 1), and 1 thread is the live app's default. Both settings
# stay in the "Threads" table.
HEADLINE_THREADS = "1 thread"


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


def accuracy_table(runs: Runs, dataset: str) -> pd.DataFrame:
    acc = runs.df("accuracy")
    if acc.empty:
        return pd.DataFrame()
    from bench.sanity import twelve_class_valid

    a = acc[acc.dataset == dataset]
    labels = next((d.get("labels") or [] for d in runs.datasets() if d["name"] == dataset), [])
    rows = [{"model": r["model"], "backend": r["backend"], "scored on": r.get("scored_on"),
             "clips": r["n"], "accuracy": r["accuracy"],
             # on clips without any 12-class word the figure is meaningless: not printed (a sanity warning)
             "12-class acc": r.get("accuracy_12class") if twelve_class_valid(r, labels) else None,
             "macro F1": r["macro_f1"], "precision": r["macro_precision"], "recall": r["macro_recall"],
             "agree fp32": r.get("top1_agreement")} for r in a.to_dict("records")]
    df = pd.DataFrame(rows)
    if not df.empty and df["12-class acc"].isna().all():
        df = df.drop(columns="12-class acc")
    return df


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


def noise_summary(runs: Runs) -> pd.DataFrame:
    t = noise_table(runs)
    if t.empty:
        return t
    index = ["model", "dataset", "backend"] + (["scored on"] if t["scored on"].notna().any() else [])
    wide = t.pivot_table(index=index, columns="snr", values="accuracy", sort=False).reset_index()
    order = index + [c for c in ("clean", "20 dB", "10 dB", "5 dB", "0 dB") if c in wide.columns]
    return wide[order + [c for c in wide.columns if c not in order]]


def best_confusion(runs: Runs, dataset: str | None) -> tuple[str, str, list[str], np.ndarray] | None:
    """(model, backend, labels, confusion) of the most accurate pair on `dataset`."""
    acc = runs.df("accuracy")
    if acc.empty or dataset is None:
        return None
    a = acc[acc.dataset == dataset].sort_values(["accuracy", "top1_agreement"], ascending=False)
    if a.empty:
        return None
    best = a.iloc[0]
    labels = next((d["labels"] for d in runs.datasets() if d["name"] == dataset), None)
    cm = np.asarray(best["confusion"], dtype=np.int64)
    if labels is None or len(labels) != cm.shape[0]:
        labels = [str(i) for i in range(cm.shape[0])]
    return best["model"], best["backend"], list(labels), cm


# ----------------------------------------------------------------------------- plots


@dataclass(frozen=True)
class Plot:
    """A written plot and its one-line caption (what it shows, from what data), also in its PNG."""

    path: Path
    caption: str


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window (reports build on headless machines)
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def _save(fig, path: Path, caption: str, runs: Runs) -> Plot:
    # The PNG carries its caption and sources, so `python -m bench index` can describe it alone.
    meta = {"Title": path.stem, "Description": caption, "Software": "python -m bench report",
            "Source": ", ".join(_rel(p) for p in runs.paths),
            "Creation Time": ", ".join(str(m.get("time_utc", "?")) for m in runs.metadata),
            "Commit": ", ".join(str(_get(m, "git", "commit") or "?") for m in runs.metadata)}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata=meta)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Plot(path, caption)


def _rel(p: Path) -> str:
    p = Path(p).resolve()
    root = PROJECT_ROOT
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name


def _sets_text(runs: Runs, names: Sequence[str]) -> str:
    info = {d["name"]: d for d in runs.datasets()}
    return "; ".join(f"{n} ({fmt(info[n].get('clips'))} {info[n].get('split', 'test')} clips"
                     f"{', ' + real_or_synthetic(info[n]) if n in info else ''})" if n in info else n for n in names)


def real_or_synthetic(d: dict) -> str:
    return "real speech" if is_real_speech(d) else "synthetic speech"


def is_real_speech(d: dict) -> bool:
    """A data set of recordings: no part of its spec is the synthetic generator."""
    from kws.data import DataError, parse_spec

    try:
        return all(p.kind != "synth" for p in parse_spec(str(d.get("spec", ""))))
    except DataError:
        return False


def _run_ids(runs: Runs) -> str:
    return ", ".join(f"`{m.get('run_id', '?')}`" for m in runs.metadata)


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


def confusion_dataset(runs: Runs) -> tuple[str | None, str]:
    """The data set the best model's confusion is drawn on: real speech when the run has it, and why."""
    acc = runs.df("accuracy")
    scored = set(acc.dataset) if not acc.empty and "dataset" in acc else set()
    real = [d["name"] for d in runs.datasets() if is_real_speech(d) and d["name"] in scored]
    if real:
        return real[0], ""
    ds = primary_dataset(runs)
    return ds, (f"**No real-speech data set in this run** (the report wants recordings, e.g. gsc12-dev): the "
                f"confusion matrix below is on {ds}, which is synthetic speech, and says little about real use.")


def plot_confusion(runs: Runs, out: Path) -> Plot | None:
    plt, sns = _plt()
    ds, note = confusion_dataset(runs)
    best = best_confusion(runs, ds)
    if best is None:
        return None
    model, backend, labels, full = best
    # Only the classes that occur (as truth or as an answer): on a small real set most of the 36
    # would be empty rows that read as "never recognised".
    keep = np.flatnonzero((full.sum(0) + full.sum(1)) > 0)
    cm = full[np.ix_(keep, keep)]
    names = [f"{labels[k]} ({int(full[k].sum())})" for k in keep]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(keep)
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * n + 3), max(5, 0.28 * n + 2)))
    sns.heatmap(norm, cmap="Blues", vmin=0, vmax=1, xticklabels=[labels[k] for k in keep], yticklabels=names,
                ax=ax, cbar_kws={"label": "fraction of the true class"}, annot=n <= 14, fmt=".2f")
    ax.tick_params(labelsize=8 if n > 14 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (clips)")
    acc = float(np.trace(full) / max(full.sum(), 1))
    ax.set_title(f"best model on {ds}: {model} / {backend}\naccuracy {acc:.3f} on {int(full.sum())} clips", pad=14)
    caption = (f"Row-normalised confusion matrix of the most accurate model x backend on {_sets_text(runs, [ds])}: "
               f"{model} / {backend}; classes that occur neither as truth nor as an answer are left out. "
               f"Run {_run_ids(runs)}.")
    if note:
        caption = f"{note} {caption}"
    return _save(fig, out, caption, runs)


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


# ----------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    csvs: tuple[Path, ...]
    plots: tuple[Path, ...]


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def hardware_lines(runs: Runs) -> list[str]:
    lines = []
    for meta in runs.metadata:
        mach = meta.get("machine", {})
        gpus = meta.get("gpu") or []
        cores = _get(mach, "cores", "usable") or _get(mach, "cores", "logical")
        gpu = ", ".join(g["name"] for g in gpus) if gpus else "no GPU"
        load = meta.get("load_average_start")
        load_end = meta.get("load_average_end")
        lines.append(f"- **{meta.get('run_id', '?')}**: {mach.get('description', mach.get('cpu', '?'))}; {gpu}; "
                     f"ONNX Runtime providers {', '.join(meta.get('onnxruntime_providers', [])) or '?'}. "
                     f"Load average (1/5/15 min) at start {load}, at end {load_end}.")
        lines.append(f"  These figures come from a shared {cores}-core machine: other people's jobs ran beside "
                     f"the benchmark, so absolute latencies are pessimistic and small differences are noise.")
    return lines


def build_report(paths: Sequence[str | Path], out_dir: str | Path = RESULTS) -> ReportFiles:
    """Write CSVs, plots and the Markdown report under `out_dir` from the given run files."""
    runs = load_runs(paths)
    out = Path(out_dir)
    plots_dir = out / "plots"
    csvs = []
    for name, df in (("bench_matrix.csv", matrix_table(runs)), ("bench_streaming.csv", streaming_table(runs)),
                     ("bench_noise.csv", noise_table(runs)), ("bench_curves.csv", curve_table(runs))):
        if not df.empty:
            csvs.append(write_csv(df, out / name))
    plots: dict[str, Plot] = {}
    for key, fn in (("accuracy_latency", plot_accuracy_latency), ("latency_heatmap", plot_latency_heatmap),
                    ("throughput", plot_throughput), ("snr", plot_snr), ("miss_fa", plot_miss_fa),
                    ("confusion", plot_confusion)):
        p = fn(runs, plots_dir / f"{PLOT_FILES.get(key, key)}.png")
        if p is not None:
            plots[key] = p
    from bench.report_wakeword import wakeword_section, write_markdown  # results/wakeword.json, when there is one

    extra, extra_plots = wakeword_section(out, plots_dir, out)
    if extra:
        write_markdown(out, extra)
    md = render_markdown(runs, plots, out, extra)
    md_path = out / REPORT_NAME
    atomic_write_text(md_path, md)
    return ReportFiles(md_path, tuple(csvs), tuple(p.path for p in plots.values()) + tuple(extra_plots))


PLOT_FILES = {"confusion": "confusion_best"}


def _img(plots: dict[str, Plot], key: str, alt: str, base: Path) -> str:
    """The image and, under it, its one-line caption (what it shows, from what data)."""
    if key not in plots:
        return f"_({alt}: no data in this run)_\n"
    return f"![{alt}]({plots[key].path.relative_to(base).as_posix()})\n\n*{plots[key].caption}*\n"


def render_markdown(runs: Runs, plots: dict[str, Plot], base: Path, extra: Sequence[str] = ()) -> str:
    meta = runs.primary
    ds = primary_dataset(runs)
    quick = any(m.get("quick") for m in runs.metadata)
    L = ["# Benchmark report", ""]
    L.append("Generated by `python -m bench report` from "
             + ", ".join(f"`{p.relative_to(base.parent).as_posix() if p.is_relative_to(base.parent) else p}`"
                         for p in runs.paths) + "; every number below is in those JSON files.")
    L.append("")
    for m in runs.metadata:
        git = m.get("git", {})
        L.append(f"- Run `{m.get('run_id')}` ({m.get('time_utc')}), commit `{(git.get('commit') or '?')[:10]}`"
                 f"{' (uncommitted changes)' if git.get('dirty') else ''}, took {fmt(m.get('wall_seconds'))} s"
                 f"{_sections(m)}: `{m.get('command')}`")
    L += ["", "## Sanity checks", ""] + sanity_lines(runs) + [""]
    L += ["## Hardware", ""] + hardware_lines(runs) + [""]
    if quick:
        q = [m.get("quick_note", "") for m in runs.metadata if m.get("quick")]
        L += [f"> **Quick mode**: {q[0]}", ""]
    L += ["## Data", ""]
    L.append(md_table(pd.DataFrame([{**{k: d.get(k) for k in ("name", "spec", "split", "clips", "subset", "noise")},
                                     "unknown share (12-class)": d.get("unknown_share_12class")}
                                    for d in runs.datasets()])))
    L += ["`12-class acc` maps words outside yes/no/up/down/left/right/on/off/stop/go to `_unknown_` "
          "(`kws.labels.to_12class`); a model that always says \"unknown\" scores the unknown share.", ""]
    L += ["## Accuracy x latency", "", _img(plots, "accuracy_latency", "accuracy vs latency with the Pareto front",
                                            base),
          f"Headline matrix ({HEADLINE_THREADS}; accuracy on **{ds}**; `agree fp32` = top-1 agreement with the fp32 "
          "PyTorch model; latency = batch-1 waveform-in → probabilities):", "",
          md_table(measured(summary_table(runs, ds))), "", "Not measured (and why):", "",
          md_table(not_measured(runs)), ""]
    L += ["### Latency heatmap", "", _img(plots, "latency_heatmap", "latency heatmap", base), ""]
    L += ["### Throughput", "", _img(plots, "throughput", "throughput vs batch size", base), ""]
    L += ["### Threads: 1 vs all cores", "", md_table(threads_table(runs)), ""]
    for d in runs.datasets():
        L += [f"### Accuracy on {d['name']}", "", md_table(accuracy_table(runs, d["name"]), 4), ""]
    L += ["### Confusion matrix of the best model", "", _img(plots, "confusion", "confusion matrix", base), ""]
    L += ["## Streaming (live detection engine)", "",
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
    L += ["## Noise robustness", "", md_table(noise_summary(runs), 3), "", _img(plots, "snr", "accuracy vs SNR", base),
          ""]
    L += list(extra)  # sections from other result files (bench.report_wakeword)
    failed = failures(runs)
    if not failed.empty:
        L += ["## Failures", "", md_table(failed), ""]
    L += ["## Method", ""] + method_lines(meta) + [""]
    return "\n".join(L)


def sanity_lines(runs: Runs) -> list[str]:
    """One warning line per figure that contradicts itself (bench.sanity), or the all-clear."""
    from bench.sanity import CHECKS, sanity_findings

    found = sanity_findings(runs)
    if not found:
        return [f"No figure below contradicts itself ({len(CHECKS)} checks: accuracy rising with noise, below "
                "chance, agreement on near-constant predictions, 12-class figures without the 12-class words)."]
    return [f"> **Warning ({f.check})**: {f.text}  " for f in found]


def _sections(meta: dict) -> str:
    t = meta.get("section_seconds") or {}
    return f" ({', '.join(f'{k} {v:.0f} s' for k, v in t.items())})" if t else ""


def failures(runs: Runs) -> pd.DataFrame:
    """Every measurement that ended in an error, whatever the section (their tracebacks are in the JSON)."""
    rows = []
    for kind in ("matrix", "streaming", "noise"):
        df = runs.df(kind)
        if df.empty or "status" not in df:
            continue
        for r in df[df.status.astype(str).str.startswith("error")].to_dict("records"):
            rows.append({"section": kind, "model": r["model"], "where": r.get("backend") or r.get("dataset"),
                         "error": str(r["status"])[len("error: "):]})
    return pd.DataFrame(rows)


def method_lines(meta: dict) -> list[str]:
    cfg = meta.get("config", {})
    lat = _get(cfg, "matrix", "latency") or {}
    return [
        f"- Latency: `time.perf_counter` around `backend.predict` on one real clip, after "
        f"{lat.get('warmup_runs', '?')} warm-up calls, until {lat.get('min_runs', '?')} runs or "
        f"{lat.get('max_seconds', '?')} s (never fewer than {lat.get('floor_runs', '?')}); percentiles by linear "
        "interpolation (numpy's default). `stopped by` in the threads table says which limit ended it.",
        "- Model-only latency: the same network without the frontend, fed log-mel features: the backend's "
        "`predict_features` if it has one, else torch backends' `model.forward_features` on their device, and "
        "for fp32 ort-* backends the features-in export of the same checkpoint with the backend's session "
        "options and provider (plain `session.run`). int8 graphs have no features-in form: n/a, reason in "
        "`model_only_reason`.",
        "- Load = `create_backend` on a prepared model file; the ONNX export / int8 quantisation it needs is "
        "done (and cached by weights hash) beforehand and reported as `prepare_s`. First = the first `predict` "
        "on the fresh backend, before its warm-up.",
        "- Throughput: clips/s = batch / mean time of `predict` on a batch of real clips; batch 1 comes from the "
        "latency runs.",
        "- Streaming and noise use `realtime.predictor.load_predictor` (the live app's loader) on the backend "
        "named in the tables, with the live app's default of one thread.",
        "- Memory: each (model, backend) runs in a fresh process; `peak RSS` is that process's kernel "
        "high-water mark (VmHWM from /proc/self/status; not getrusage's ru_maxrss, which Linux carries over "
        "from the parent across fork+exec) read after the waveform-in latency and throughput runs, before the "
        "features-in graph and the evaluation clips are loaded. It includes the runtime the backend imports "
        "(torch, onnxruntime); `rss_baseline_mb` (the bare interpreter with numpy) and `peak_rss_delta_mb` "
        "(peak - baseline) are in the CSV.",
        "- Accuracy is scored in the data set's label space (35-word models on the 12-class task through "
        "`kws.labels.to_12class`); macro averages follow sklearn's convention (classes present in truth or "
        "prediction, zero_division=0).",
        "- Noise: `_silence_` clips are excluded (no speech, no SNR); the noise is per-clip, the same for every "
        "model; SNR is over the whole 1 s clip.",
    ]
