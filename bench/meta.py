"""Run metadata for the bench JSON: kws.runinfo's provenance plus what the bench needs to say."""
from __future__ import annotations

from typing import Any, Sequence

from kws.runinfo import load_average, package_versions, run_metadata

# Beyond kws.runinfo's list: the libraries that build the report and measure memory.
EXTRA_PACKAGES: tuple[str, ...] = ("pandas", "seaborn", "matplotlib", "psutil", "tqdm", "pytest-benchmark")


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def bench_metadata(command: str | Sequence[str] | None, **extra: Any) -> dict[str, Any]:
    """kws.runinfo.run_metadata (git, packages, machine, GPUs) + ORT providers, threads, load."""
    import torch

    meta = run_metadata(command, probe_gpu=True)
    meta["packages"].update(package_versions(EXTRA_PACKAGES))
    meta["onnxruntime_providers"] = ort_providers()
    meta["torch_threads_default"] = torch.get_num_threads()
    meta["load_average_start"] = load_average()
    meta.update(extra)
    return meta
