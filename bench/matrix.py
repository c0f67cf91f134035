"""The matrix: every registered model x every backend, accuracy and latency.

Each available (model, backend) pair is measured by `bench.worker` in its own process (see
its docstring for why and in what order); everything else becomes an explicit
"n/a: <reason>" row, so the table always has every cell and says why one is empty.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bench.evalsets import EvalSet
from kws.metrics import score, scoring_space, top1_agreement
from kws.timing import TimingPolicy
from kws.labels import SILENCE, to_12class
from kws.paths import PROJECT_ROOT

def quick_models() -> tuple[str, ...]:
    """The quick preset: the default model (best cross-validated real-speech accuracy), the tiny
    DS-CNN, and EfficientNet-B0, the default backbone that the others' latency is compared to."""
    from zoo import default_model

    return tuple(dict.fromkeys((default_model(), "dscnn", "efficientnet_b0")))


def all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class MatrixConfig:
    latency: TimingPolicy = field(default_factory=lambda: TimingPolicy(warmup_runs=50, min_runs=1000, max_seconds=20.0))
    throughput: TimingPolicy = field(default_factory=lambda: TimingPolicy(warmup_runs=3, min_runs=50,
                                                                          max_seconds=10.0, floor_runs=5))
    batch_sizes: tuple[int, ...] = (32, 64)
    threads: tuple[int, ...] = ()  # () -> (all cores, 1)
    eval_batch: int = 64
    worker_timeout_s: float = 3600.0

    def thread_settings(self) -> tuple[int, ...]:
        if self.threads:
            return self.threads
        n = all_cores()
        return (n, 1) if n > 1 else (1,)


@dataclass(frozen=True)
class ModelEntry:
    """A row group of the matrix: a model and the weights it is measured with."""

    name: str  # display name: the zoo name, or "<arch>@<run folder>"
    arch: str
    ref: str | None  # what zoo.load_model / create_backend accept; None: cannot be measured
    source: str  # "shipped" | "run" | "untrained" (random weights: timed, never scored) | "-"
    reason: str = ""  # why ref is None


def checkpoint_arch(path: Path) -> str:
    """The zoo architecture stored in a checkpoint's metadata (reads no tensors)."""
    from zoo.checkpoint import model_name

    return model_name(path)


def resolve_models(runs: Sequence[str | Path] = (), only: Sequence[str] | None = None,
                   only_reason: str = "", untrained_dir: Path | None = None) -> list[ModelEntry]:
    """One entry per registered model (shipped weights, a --run folder, or a reason why not).

    `only`: measure just these names (and every --run given: naming a run folder is asking for
    it); the others get `only_reason` (e.g. quick mode's subset).
    """
    import zoo
    from zoo.checkpoint import resolve_weights, untrained_checkpoint
    from zoo.model import model_dir

    by_arch: dict[str, list[ModelEntry]] = {}
    for run in runs:
        path = resolve_weights(run)
        arch = checkpoint_arch(path)
        label = Path(run).name if Path(run).is_dir() else Path(run).stem
        by_arch.setdefault(arch, []).append(ModelEntry(f"{arch}@{label}", arch, str(run), "run"))
    entries: list[ModelEntry] = []
    for arch in zoo.list_models():
        if arch in by_arch:
            entries += by_arch.pop(arch)
        elif (model_dir() / f"{arch}.safetensors").is_file():
            entries.append(ModelEntry(arch, arch, arch, "shipped"))
        elif untrained_dir is not None:
            # Latency, throughput, size and memory do not depend on the weight values, so an
            # architecture without trained weights is still timed, on seeded random weights;
            # its accuracy cells stay empty ("untrained").
            entries.append(ModelEntry(arch, arch, str(untrained_checkpoint(arch, untrained_dir)), "untrained"))
        else:
            entries.append(ModelEntry(arch, arch, None, "-", "no shipped weights in zoo/weights/ and no --run folder"))
    for extra in by_arch.values():  # architectures registered after list_models() was read
        entries += extra
    if only is not None:
        keep = set(only)
        entries = [e if (e.name in keep or e.arch in keep or e.ref is None or e.source == "run")
                   else ModelEntry(e.name, e.arch, None, e.source, only_reason or "not selected")
                   for e in entries]
    return entries


# ----------------------------------------------------------------------------- per-model facts


@dataclass(frozen=True, eq=False)
class ModelInfo:
    labels: tuple[str, ...]
    params: int
    macs: int
    macs_with_frontend: int
    weights_file: str
    weights_bytes: int
    reference_preds: dict[str, np.ndarray]  # dataset -> top-1 class of the fp32 PyTorch model
    checkpoint_meta: dict


def _small_meta(meta: dict) -> dict:
    """Scalar facts from a checkpoint's meta (training data, epochs, ...) for the report."""
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) and len(str(v)) <= 200}


def model_info(entry: ModelEntry, evalsets: Sequence[EvalSet], batch: int = 64) -> ModelInfo:
    """Parameters, MACs, file size and the fp32 PyTorch reference predictions (eval mode, CPU)."""
    import torch

    from zoo import count_macs, count_params, load_model
    from zoo.checkpoint import resolve_weights

    assert entry.ref is not None
    model, meta = load_model(entry.ref)
    model = model.float().eval()
    refs = {}
    with torch.inference_mode():
        for ev in evalsets:
            preds = [model(torch.from_numpy(ev.float_waves(slice(i, i + batch)))).argmax(1).numpy()
                     for i in range(0, len(ev), batch)]
            refs[ev.name] = np.concatenate(preds).astype(np.int64)
    path = resolve_weights(entry.ref)
    return ModelInfo(labels=tuple(model.labels), params=count_params(model), macs=count_macs(model),
                     macs_with_frontend=count_macs(model, include_frontend=True), weights_file=str(path),
                     weights_bytes=path.stat().st_size, reference_preds=refs, checkpoint_meta=_small_meta(meta))


# ----------------------------------------------------------------------------- scoring


def accuracy_row(model: str, backend: str, ev: EvalSet, model_labels: Sequence[str], preds: np.ndarray,
                 reference: np.ndarray | None) -> dict:
    """Scores in the data set's label space (a 35-word model on a 12-class set via to_12class;
    a 12-class model on a word-level set on the 12-class task: see stats.scoring_space)."""
    space = scoring_space(model_labels, ev.labels)
    m = score(space, ev.y, preds)
    row = {"kind": "accuracy", "model": model, "backend": backend, "dataset": ev.name, "scored_on": space.name,
           "n": m.n,
           "accuracy": m.accuracy, "macro_f1": m.macro_f1, "macro_precision": m.macro_precision,
           "macro_recall": m.macro_recall,
           "top1_agreement": None if reference is None else top1_agreement(preds, reference),
           "accuracy_12class": accuracy_12class(ev, model_labels, preds), "n_unmapped": m.n_unmapped,
           "confusion": [list(r) for r in m.confusion]}
    return row


def accuracy_12class(ev: EvalSet, model_labels: Sequence[str], preds: np.ndarray) -> float | None:
    """Accuracy on the standard 12-class task (10 words, silence, unknown); None when the clips hold
    none of its words (off Speech Commands, or a folder of digits seen through "35s")."""
    if not ev.has_12class_words():
        return None
    truth = np.array([to_12class(ev.labels[k]) for k in ev.y])
    guess = np.array([to_12class(model_labels[k]) for k in preds])
    return float(np.mean(truth == guess))


# ----------------------------------------------------------------------------- the matrix


def na_row(entry: ModelEntry, backend: str, reason: str) -> dict:
    return {"kind": "matrix", "model": entry.name, "arch": entry.arch, "weights": entry.source, "backend": backend,
            "threads": None, "status": f"n/a: {reason}"}


def _worker(job: dict, workdir: Path, tag: str, timeout_s: float) -> dict:
    job_path, out_path, log_path = (workdir / f"{tag}.job.json", workdir / f"{tag}.out.json",
                                    workdir / f"{tag}.log")
    job_path.write_text(json.dumps(job))
    out_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.worker", str(job_path), str(out_path)],
                                  cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"worker timed out after {timeout_s:.0f} s"}
    if not out_path.is_file():
        tail = log_path.read_text(errors="replace")[-1500:]
        return {"ok": False, "error": f"worker exited with code {code} and no result (killed? out of memory?)",
                "traceback": tail}
    return {**json.loads(out_path.read_text()), "worker_seconds": round(time.perf_counter() - t0, 2)}


def prepare_model_file(ref: str, backend: str) -> tuple[str, float]:
    """What the worker should open, and the seconds spent making it.

    ort-* backends run an ONNX export of the checkpoint (fp32, or int8 for ort-int8) that
    backends.export caches by weights hash; exporting here, in the parent, keeps the export's
    torch import and tracing out of the worker's load time and peak memory, and the
    features-in graph for the model-only latency is prepared alongside.
    """
    from backends import backend_spec

    spec = backend_spec(backend)
    if spec.artifact == "checkpoint":  # runs the checkpoint itself
        return ref, 0.0
    precision = spec.precision
    from backends.export import resolve_onnx

    t0 = time.perf_counter()
    path = resolve_onnx(ref, precision=precision, log=None)
    if precision == "fp32":
        resolve_onnx(ref, precision="fp32", features_in=True, log=None)
    return str(path), time.perf_counter() - t0


def measure_pair(entry: ModelEntry, info: ModelInfo, backend: str, evalsets: Sequence[EvalSet],
                 data_files: dict[str, str], latency_clips: str, cfg: MatrixConfig, workdir: Path) -> list[dict]:
    """Matrix rows (one per thread setting) and accuracy rows (one per data set) of one pair."""
    from backends import BackendUnavailable

    base = {"kind": "matrix", "model": entry.name, "arch": entry.arch, "weights": entry.source, "backend": backend,
            "params": info.params, "macs": info.macs, "macs_with_frontend": info.macs_with_frontend,
            "weights_bytes": info.weights_bytes}
    assert entry.ref is not None
    try:
        model_file, prepare_s = prepare_model_file(entry.ref, backend)
    except BackendUnavailable as e:
        return [{**base, "threads": None, "status": f"n/a: {e}"}]
    except Exception as e:  # an export or quantization that fails is this cell's result, not the run's end
        return [{**base, "threads": None, "status": f"error: preparing the model file failed: "
                                                     f"{type(e).__name__}: {str(e)[:300]}"}]
    job = {"model_ref": entry.ref, "backend_model": model_file, "backend": backend,
           "threads": list(cfg.thread_settings()),
           "latency_policy": asdict(cfg.latency), "throughput_policy": asdict(cfg.throughput),
           "batch_sizes": list(cfg.batch_sizes), "eval_batch": cfg.eval_batch,
           "eval_sets": data_files, "latency_clips": latency_clips}
    tag = f"{entry.name}__{backend}".replace("/", "_").replace("@", "_")
    res = _worker(job, workdir, tag, cfg.worker_timeout_s)
    base["prepare_s"] = prepare_s
    if not res.get("ok"):
        err = res.get("error", "unknown error")
        # a backend that loads but refuses this model (e.g. an op it lacks) is "n/a", not a crash
        status = f"n/a: {err.split(': ', 1)[-1]}" if err.startswith("BackendUnavailable") else f"error: {err}"
        return [{**base, "threads": None, "status": status, "traceback": res.get("traceback", "")}]
    rows: list[dict] = []
    for s in res["settings"]:
        rows.append({**base, "threads": s["threads"], "status": "ok", "device": s["device"],
                     "providers": s["providers"], "model_file": res.get("model_file"),
                     "model_file_bytes": res.get("model_file_bytes"), "load_s": s["load_s"],
                     "first_inference_ms": s["first_inference_ms"], "latency": s["latency"],
                     "latency_model_only": s["latency_model_only"], "model_only_reason": s["model_only_reason"],
                     "throughput": s["throughput"], "peak_rss_mb": res["peak_rss_mb"],
                     "peak_rss_source": res.get("peak_rss_source"), "worker_seconds": res.get("worker_seconds"),
                     "rss_baseline_mb": res["rss_baseline_mb"],
                     "peak_rss_delta_mb": res["peak_rss_mb"] - res["rss_baseline_mb"]})
    labels = tuple(res["model_labels"])
    if entry.source == "untrained":
        return rows  # random weights: their accuracy would be noise, not a measurement
    for ev in evalsets:
        preds = np.asarray(res["preds"][ev.name], dtype=np.int64)
        rows.append(accuracy_row(entry.name, backend, ev, labels, preds, info.reference_preds.get(ev.name)))
    return rows


def model_row(entry: ModelEntry, info: ModelInfo) -> dict:
    return {"kind": "model", "model": entry.name, "arch": entry.arch, "weights": entry.source, "ref": entry.ref,
            "params": info.params, "macs": info.macs, "macs_with_frontend": info.macs_with_frontend,
            "weights_file": info.weights_file, "weights_bytes": info.weights_bytes,
            "n_labels": len(info.labels), "checkpoint_meta": info.checkpoint_meta}


def run_matrix(entries: Sequence[ModelEntry], backends: Sequence[str], evalsets: Sequence[EvalSet],
               cfg: MatrixConfig, workdir: Path, *, done: set[str] = frozenset(),
               on_rows: Callable[[str, list[dict]], None] | None = None,
               progress: Callable[[str], None] | None = None) -> list[dict]:
    """All rows of the matrix. `done` holds keys ("model|backend") measured by an earlier,
    interrupted run (resume); `on_rows(key, rows)` is called after each pair so the caller
    can save the JSON as it goes."""
    from backends import list_backends

    workdir.mkdir(parents=True, exist_ok=True)
    status = {s.name: s for s in list_backends()}
    data_files = {}
    for ev in evalsets:
        p = workdir / f"eval_{ev.name}.npy"
        np.save(p, np.ascontiguousarray(ev.waves))
        data_files[ev.name] = str(p)
    latency_clips = workdir / "latency_clips.npy"
    first = evalsets[0]
    # spoken words only: a near-silent clip could time denormal arithmetic instead of the usual path
    words = [i for i in range(len(first)) if first.labels[int(first.y[i])] != SILENCE] or list(range(len(first)))
    np.save(latency_clips, np.ascontiguousarray(first.waves[words[: max(cfg.batch_sizes + (1,))]]))
    out: list[dict] = []

    def emit(key: str, rows: list[dict]) -> None:
        out.extend(rows)
        if on_rows is not None:
            on_rows(key, rows)

    for entry in entries:
        todo = [b for b in backends if f"{entry.name}|{b}" not in done]
        if not todo:
            continue
        if entry.ref is None:
            for b in todo:
                emit(f"{entry.name}|{b}", [na_row(entry, b, entry.reason)])
            continue
        available = [b for b in todo if b in status and status[b].available]
        for b in todo:
            if b not in available:
                reason = status[b].reason if b in status else f"unknown backend {b!r}"
                emit(f"{entry.name}|{b}", [na_row(entry, b, reason or "unavailable")])
        if not available:
            continue
        if progress is not None:
            progress(f"{entry.name}: reference predictions")
        info = model_info(entry, evalsets)
        if f"{entry.name}|model" not in done:
            emit(f"{entry.name}|model", [model_row(entry, info)])
        for b in available:
            if progress is not None:
                progress(f"{entry.name} x {b}")
            emit(f"{entry.name}|{b}", measure_pair(entry, info, b, evalsets, data_files, str(latency_clips), cfg,
                                                   workdir))
    return out
