"""The "Hardware" section: the machine each run was measured on, and the load beside the benchmark."""
from __future__ import annotations

from bench.report.base import Runs, _get


def section(runs: Runs) -> list[str]:
    return ["## Hardware", ""] + hardware_lines(runs) + [""]


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
