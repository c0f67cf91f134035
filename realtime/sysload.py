"""CPU and GPU load for the live window's status bar. Qt-free, and cheap to poll from the UI thread.

CPU comes from psutil (non-blocking: each call reports the time since the previous one). GPU
load comes from `nvidia-smi`, where one is installed: it takes tens of milliseconds per call,
so a daemon thread runs it every couple of seconds and the UI reads the last answer. Without
an NVIDIA GPU (or when nvidia-smi fails) there is simply no GPU part in the readout.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass

import psutil

GPU_QUERY = ("--query-gpu=index,name,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits")
GPU_INTERVAL_S = 2.0


@dataclass(frozen=True)
class GpuLoad:
    index: int
    name: str
    util_pct: float
    mem_used_mib: float
    mem_total_mib: float


@dataclass(frozen=True)
class Load:
    system_cpu_pct: float  # the whole machine, % of all cores
    process_cpu_pct: float  # this process (every thread), % of one core
    gpus: tuple[GpuLoad, ...] = ()


def parse_nvidia_smi(text: str) -> tuple[GpuLoad, ...]:
    """`nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total` CSV -> loads.

    Lines that do not parse (e.g. "[N/A]" on GPUs that do not report utilisation) are skipped.
    """
    out = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        try:
            out.append(GpuLoad(int(parts[0]), parts[1], float(parts[2]), float(parts[3]), float(parts[4])))
        except ValueError:
            continue
    return tuple(out)


def format_load(load: Load) -> str:
    """'CPU 23 % · app 41 % of a core · GPU0 12 % 3.1/80.0 GiB'."""
    text = f"CPU {load.system_cpu_pct:.0f} % · app {load.process_cpu_pct:.0f} % of a core"
    for g in load.gpus:
        text += f" · GPU{g.index} {g.util_pct:.0f} % {g.mem_used_mib / 1024:.1f}/{g.mem_total_mib / 1024:.1f} GiB"
    return text


class LoadMonitor:
    """`sample()` returns the CPU load since the previous call and the newest GPU reading."""

    def __init__(self, nvidia_smi: str | None = None, gpu_interval_s: float = GPU_INTERVAL_S) -> None:
        self.nvidia_smi = nvidia_smi if nvidia_smi is not None else shutil.which("nvidia-smi")
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # the first call only starts the interval
        psutil.cpu_percent(None)
        self._gpus: tuple[GpuLoad, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.nvidia_smi:
            self._thread = threading.Thread(target=self._gpu_loop, args=(gpu_interval_s,), daemon=True,
                                            name="kws-gpu-load")
            self._thread.start()

    def _gpu_loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run([self.nvidia_smi, *GPU_QUERY], capture_output=True, text=True, timeout=5)
                self._gpus = parse_nvidia_smi(out.stdout) if out.returncode == 0 else ()
            except (OSError, subprocess.SubprocessError):
                self._gpus = ()  # driver gone, binary broken: no GPU readout rather than a wrong one
            self._stop.wait(interval_s)

    def sample(self) -> Load:
        return Load(system_cpu_pct=psutil.cpu_percent(None), process_cpu_pct=self._proc.cpu_percent(None),
                    gpus=self._gpus)

    def close(self) -> None:
        self._stop.set()
