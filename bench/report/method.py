"""The "Method" section: how every figure was measured, with the run's own settings filled in."""
from __future__ import annotations

from bench.report.base import _get


def section(meta: dict) -> list[str]:
    return ["## Method", ""] + method_lines(meta) + [""]


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
