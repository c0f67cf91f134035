"""The "Failures" section: every measurement that ended in an error, present only when one did."""
from __future__ import annotations

import pandas as pd

from bench.report.base import Runs, md_table


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


def section(runs: Runs) -> list[str]:
    failed = failures(runs)
    return [] if failed.empty else ["## Failures", "", md_table(failed), ""]
