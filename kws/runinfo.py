"""Provenance for every result file: what ran, on which code, on what machine.

    from kws.runinfo import run_metadata, write_results
    write_results("results/x.json", rows, command="python -m bench ...")
    # -> {"metadata": {...}, "results": [...]}

The machine description names hardware and software, never the host or the user, so
result files can be committed and shared.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from functools import lru_cache
from importlib import metadata as _md
from pathlib import Path
from typing import Any, Sequence

from kws.fsutil import atomic_write_json
from kws.paths import PROJECT_ROOT

# Distributions worth recording; onnxruntime has drop-in variants (only one is installed).
PACKAGES: tuple[str, ...] = (
    "numpy", "scipy", "soundfile", "torch", "torchaudio", "timm", "onnx",
    "onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "safetensors",
)


def _run(cmd: Sequence[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_info(repo: Path = PROJECT_ROOT) -> dict[str, Any]:
    """{"commit": sha or None, "dirty": bool or None} -- dirty means tracked files differ from HEAD."""
    commit = _run(["git", "rev-parse", "HEAD"], cwd=repo)
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo) if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions (read from package metadata: nothing is imported)."""
    out = {}
    for name in names:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            continue
    return out


def cpu_model() -> str:
    system = platform.system()
    if system == "Linux":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    elif system == "Darwin":
        brand = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if brand:
            return brand
    return platform.processor() or platform.machine() or "unknown"


def memory_gib() -> float | None:
    try:
        import psutil
    except ImportError:
        try:
            return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        except (ValueError, OSError, AttributeError):
            return None
    return round(psutil.virtual_memory().total / 2**30, 1)


def cpu_counts() -> dict[str, int | None]:
    logical = os.cpu_count()
    physical = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    return {"logical": logical, "physical": physical, "usable": usable}


def gpu_info() -> list[dict[str, Any]]:
    """CUDA devices as torch sees them ([] without torch or CUDA). Imports torch: call only when needed."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                    "capability": f"{p.major}.{p.minor}", "cuda": torch.version.cuda})
    return out


@lru_cache(maxsize=1)
def machine_info() -> dict[str, Any]:
    """Hardware and OS, without host or user names."""
    cores = cpu_counts()
    info = {
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "cores": cores,
        "memory_gib": memory_gib(),
    }
    info["description"] = (f"{info['cpu']}, {cores['usable']} usable of {cores['logical']} logical cores, "
                           f"{info['memory_gib']} GiB RAM, {info['os']} {info['arch']}")
    return info


def load_average() -> list[float] | None:
    """1/5/15-minute load: on a shared machine it says how much else was running."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def run_metadata(
    command: str | Sequence[str] | None = None,
    probe_gpu: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """Everything needed to reproduce and compare a result.

    command: what was run (default: this process's argv). probe_gpu: add CUDA devices
    (imports torch). extra: anything else the caller wants recorded (settings, seeds).
    """
    if command is None:
        command = [Path(sys.executable).name, *sys.argv]
    if not isinstance(command, str):
        command = shlex.join(command)
    meta: dict[str, Any] = {
        "command": command,
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_info(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "machine": machine_info(),
        # when the metadata is made (a run that knows its load at the start passes load_average itself)
        "load_average": load_average(),
    }
    if probe_gpu:
        meta["gpu"] = gpu_info()
    meta.update(extra)
    return meta


def write_results(
    path: str | Path,
    results: Sequence[dict[str, Any]],
    command: str | Sequence[str] | None = None,
    probe_gpu: bool = False,
    **extra: Any,
) -> Path:
    """Atomically write `{"metadata": run_metadata(...), "results": [...]}` to `path`."""
    path = Path(path)
    atomic_write_json(path, {"metadata": run_metadata(command, probe_gpu=probe_gpu, **extra),
                             "results": list(results)})
    return path
