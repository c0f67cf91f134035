"""The "Data" section: the data sets of the run, with the share a 12-class "unknown" answer scores."""
from __future__ import annotations

import pandas as pd

from bench.report.base import Runs, md_table


def section(runs: Runs) -> list[str]:
    return ["## Data", "",
            md_table(pd.DataFrame([{**{k: d.get(k) for k in ("name", "spec", "split", "clips", "subset", "noise")},
                                    "unknown share (12-class)": d.get("unknown_share_12class")}
                                   for d in runs.datasets()])),
            "`12-class acc` maps words outside yes/no/up/down/left/right/on/off/stop/go to `_unknown_` "
            "(`kws.labels.to_12class`); a model that always says \"unknown\" scores the unknown share.", ""]
