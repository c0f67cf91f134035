"""One model x one backend, measured in a fresh process: `python -m bench.worker JOB.json OUT.json`.

A fresh process per (model, backend) makes the peak RSS (getrusage ru_maxrss, the kernel's
high-water mark of this process) belong to that backend alone, and keeps one backend's
thread pools, allocator caches and JIT state from colouring the next one's timings.

Order inside the worker, and why:
1. the bare interpreter with numpy -> baseline RSS; everything the backend then imports
   (torch, onnxruntime) and allocates is counted. ort-* backends get the ONNX file the parent
   exported, so no export runs here;
2. for each thread setting (all cores first: the deployment case), a new backend:
   load time, first inference, warm-up, batch-1 latency (waveform in; then features in when
   the backend has that entry point), throughput at each batch size;
3. after the first setting's waveform-in runs: the peak RSS (VmHWM), read *before* the
   features-in session and the evaluation clips add memory that is not the backend's;
4. predictions on the evaluation clips (top-1 class per clip), with the all-cores backend.
"""
from __future__ import annotations

import gc
import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kws.audio import from_int16


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> tuple[float, str]:
    """This process's peak resident set size, and how it was read.

    Linux: VmHWM from /proc/self/status, the high-water mark of the address space created
    at exec. Not getrusage's ru_maxrss: Linux carries that across fork+exec, so a worker
    would inherit the parent's (much larger) RSS as its own peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0, "VmHWM (/proc/self/status)"
    except OSError:
        pass
    # macOS reports ru_maxrss in bytes, the BSDs in KiB; without /proc it is the best there is
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, "getrusage ru_maxrss"


def _features(be: Any, wave: np.ndarray) -> np.ndarray:
    """Features of `wave` with the backend's own frontend (torch, eager)."""
    import torch

    from kws.frontends import build_frontend

    with torch.no_grad():
        return build_frontend(be.frontend)(torch.from_numpy(wave)).numpy()


def _latency(fn: Callable[[], object], policy: Any) -> dict:
    from bench.stats import summarize_latency
    from kws.timing import time_calls

    t = time_calls(fn, policy)
    return {**summarize_latency(t.seconds).to_dict(), "stopped_by": t.stopped_by, "warmup_runs": t.warmup_runs}


def measure_waveform(be: Any, clips: np.ndarray, job: dict) -> dict:
    """First inference, batch-1 latency and throughput of a loaded, not yet used backend."""
    from kws.timing import TimingPolicy, time_calls, time_once

    lat_policy = TimingPolicy(**job["latency_policy"])
    tp_policy = TimingPolicy(**job["throughput_policy"])
    x1 = np.ascontiguousarray(clips[:1])
    out: dict[str, Any] = {}
    first_s, _ = time_once(lambda: be.predict(x1))
    out["first_inference_ms"] = first_s * 1e3
    be.warmup()
    out["latency"] = _latency(lambda: be.predict(x1), lat_policy)
    tp = {"1": {"clips_per_s": float(1e3 / out["latency"]["mean_ms"]), "batch_ms_p50": out["latency"]["p50_ms"],
                "runs": out["latency"]["n"]}}
    for b in job["batch_sizes"]:
        reps = int(np.ceil(b / len(clips)))
        xb = np.ascontiguousarray(np.tile(clips, (reps, 1))[:b])  # real clips: the same work as real use
        t = time_calls(lambda: be.predict(xb), tp_policy)
        tp[str(b)] = {"clips_per_s": float(b / t.seconds.mean()), "batch_ms_p50": float(np.median(t.seconds) * 1e3),
                      "runs": int(t.seconds.size)}
    out["throughput"] = tp
    return out


def measure_features(be: Any, clips: np.ndarray, job: dict) -> dict:
    """Model-only batch-1 latency (features in), or the reason there is none."""
    from kws.timing import TimingPolicy

    fn, reason = be.features_predictor(job["model_ref"])
    if fn is None:
        return {"latency_model_only": None, "model_only_reason": reason}
    f1 = np.ascontiguousarray(_features(be, np.ascontiguousarray(clips[:1])))
    return {"latency_model_only": _latency(lambda: fn(f1), TimingPolicy(**job["latency_policy"])),
            "model_only_reason": ""}


def predict_top1(be: Any, waves: np.ndarray, batch: int) -> list[int]:
    preds = []
    for i in range(0, len(waves), batch):
        x = from_int16(waves[i:i + batch])
        preds.append(np.argmax(be.predict(np.ascontiguousarray(x)), axis=1))
    return np.concatenate(preds).astype(int).tolist()


def file_size(be: Any) -> tuple[str | None, int | None]:
    """The model file the backend actually runs (an ONNX graph, or the checkpoint)."""
    p = be.model_file
    return (str(p), p.stat().st_size) if p.is_file() else (None, None)


def run_job(job: dict) -> dict:
    baseline = _rss_mb()  # the bare interpreter + numpy: everything above it is this backend's cost
    from backends import create_backend

    from kws.timing import time_once

    clips = from_int16(np.load(job["latency_clips"]))
    result: dict[str, Any] = {"rss_baseline_mb": baseline, "settings": [], "preds": {}}
    for i, threads in enumerate(job["threads"]):
        load_s, be = time_once(lambda: create_backend(job["backend"], model=job["backend_model"], threads=threads))
        row = {"threads": threads, "load_s": load_s, "device": str(be.device),
               "providers": list(be.providers)}
        row.update(measure_waveform(be, clips, job))
        if i == 0:  # before the features-in session and the evaluation data add their own memory
            result["peak_rss_mb"], result["peak_rss_source"] = _peak_rss_mb()
            result["rss_after_mb"] = _rss_mb()
        row.update(measure_features(be, clips, job))
        result["settings"].append(row)
        if i == 0:
            result["model_labels"] = list(be.labels)
            result["model_file"], result["model_file_bytes"] = file_size(be)
            t0 = time.perf_counter()
            for name, path in job["eval_sets"].items():
                result["preds"][name] = predict_top1(be, np.load(path, mmap_mode="r"), job["eval_batch"])
            result["eval_seconds"] = time.perf_counter() - t0
        del be
        gc.collect()
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m bench.worker JOB.json OUT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    from kws.fsutil import atomic_write_json

    try:
        result = {"ok": True, **run_job(job)}
    except Exception as e:  # reported as an "error: ..." row by the parent, never a silent gap
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
    atomic_write_json(argv[1], result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
