"""The base of the bench report: the loaded run files and what every section shares.

`Runs` holds the rows of one or more bench JSON files (newest run winning where two measured the
same thing); beside it sit the helpers every section uses: flattening nested rows, Markdown tables
and number formatting, the data-set wording of captions, and `_save`, which writes a plot with its
caption and sources in the PNG. Nothing here knows a section (bench.report.matrix, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from kws.fsutil import atomic_path, read_json
from kws.paths import PROJECT_ROOT, RESULTS

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


# ----------------------------------------------------------------------------- rows and Markdown


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


def _seq(v: Any) -> list:
    """A list-valued field, or [] where a row lacks it (pandas fills missing fields with NaN)."""
    return v if isinstance(v, list) else []


def snr_label(snr: float | None) -> str:
    return "clean" if snr is None or (isinstance(snr, float) and math.isnan(snr)) else f"{snr:g} dB"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not (isinstance(v, float) and math.isnan(v))


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


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


def primary_dataset(runs: Runs) -> str | None:
    ds = runs.datasets()
    return ds[0]["name"] if ds else None


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


def _img(plots: dict[str, Plot], key: str, alt: str, base: Path) -> str:
    """The image and, under it, its one-line caption (what it shows, from what data)."""
    if key not in plots:
        return f"_({alt}: no data in this run)_\n"
    return f"![{alt}]({plots[key].path.relative_to(base).as_posix()})\n\n*{plots[key].caption}*\n"
