"""The whole suite: data -> matrix -> streaming -> noise, one JSON per run, saved as it goes.

The JSON is rewritten atomically after every measured unit (a model x backend pair, a
model's streaming or noise evaluation), so an interrupted run keeps what it measured and
`python -m bench --resume results/bench/<run-id>.json` carries on from there with the
original command's settings.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.evalsets import EvalSet, load_evalset
from bench.matrix import MatrixConfig, ModelEntry, all_cores, quick_models, resolve_models, run_matrix
from bench.meta import bench_metadata, load_average
from bench.noise import NoiseConfig
from bench.streaming import StreamingConfig
from kws.timing import TimingPolicy
from kws.fsutil import atomic_write_json
from kws.paths import exports_dir

SECTIONS: tuple[str, ...] = ("matrix", "streaming", "noise")
DEFAULT_EVAL_BACKEND = "ort-cpu"  # what the live app runs by default (realtime.predictor)


@dataclass(frozen=True)
class SuiteConfig:
    data_specs: tuple[str, ...]
    quick: bool = False
    split: str = "test"
    max_clips: int | None = None  # per data set, balanced over labels; None: the whole split
    runs: tuple[str, ...] = ()  # run folders / checkpoints to measure instead of the shipped weights
    models: tuple[str, ...] | None = None  # None: every registered model (quick: bench.matrix.quick_models())
    backends: tuple[str, ...] = ()  # () -> every registered backend, in the bench order
    eval_backend: str = DEFAULT_EVAL_BACKEND  # streaming + noise (falls back to torch-cpu if unavailable)
    # The live app's default (backends.DEFAULT_THREADS): streaming models the live detector, and on a
    # shared machine one thread is also far steadier than several (no spinning on a busy core).
    eval_threads: int = 1
    sections: tuple[str, ...] = SECTIONS
    matrix: MatrixConfig = field(default_factory=MatrixConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        bad = set(self.sections) - set(SECTIONS)
        if bad:
            raise ValueError(f"unknown bench sections {sorted(bad)}; choose from {', '.join(SECTIONS)}")
        if not self.data_specs:
            raise ValueError("no data source to benchmark on")


# Quick: the two smallest models, fewer timing runs, subsets and a 2-minute FA stream. Measured on
# the shared 2-core machine: 1 min 43 s with a cold export cache at load ~2 (bench/README.md).
QUICK_MATRIX = MatrixConfig(latency=TimingPolicy(warmup_runs=5, min_runs=100, max_seconds=1.0, floor_runs=20),
                            throughput=TimingPolicy(warmup_runs=1, min_runs=5, max_seconds=0.5, floor_runs=3))
QUICK_STREAMING = StreamingConfig(words_per_stream=30, snrs_db=(10.0,), reference_snr_db=10.0, free_seconds=120.0)
QUICK_MAX_CLIPS = 200


def quick_note(cfg: SuiteConfig) -> str:
    lat = cfg.matrix.latency
    return (f"models limited to {', '.join(cfg.models or ())}; batch-1 latency over {lat.min_runs} runs or "
            f"{lat.max_seconds:g} s (the full suite: 1,000 runs or 20 s); at most {cfg.max_clips} clips per data "
            f"set; streams of {cfg.streaming.words_per_stream} words at {', '.join(f'{s:g}' for s in cfg.streaming.snrs_db)} dB "
            f"and a {cfg.streaming.free_seconds / 60:g}-minute keyword-free stream (the full suite: 10 minutes). "
            "Not for publication.")


def make_config(data_specs: Sequence[str], quick: bool, **kw: Any) -> SuiteConfig:
    """The full or quick preset, with explicit settings (CLI flags) taking precedence."""
    kw = {k: v for k, v in kw.items() if v is not None}
    if quick:
        kw.setdefault("models", quick_models())
        kw.setdefault("max_clips", QUICK_MAX_CLIPS)
        kw.setdefault("matrix", QUICK_MATRIX)
        kw.setdefault("streaming", QUICK_STREAMING)
    return SuiteConfig(data_specs=tuple(data_specs), quick=quick, **kw)


def config_dict(cfg: SuiteConfig) -> dict:
    return dataclasses.asdict(cfg)


def run_id(quick: bool) -> str:
    from kws.runinfo import git_info

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    commit = (git_info().get("commit") or "nogit")[:8]
    return f"{stamp}-{commit}{'-quick' if quick else ''}"


def row_key(row: dict) -> str:
    kind = row.get("kind")
    if kind in ("matrix", "accuracy"):
        return f"{row['model']}|{row['backend']}"
    if kind == "model":
        return f"{row['model']}|model"
    return f"{kind}|{row['model']}|{row['dataset']}"


class RunFile:
    """The run's JSON, rewritten atomically whenever rows are added."""

    def __init__(self, path: Path, metadata: dict, rows: list[dict] | None = None) -> None:
        self.path = path
        self.metadata = metadata
        self.rows = list(rows or [])

    @property
    def done(self) -> set[str]:
        return {row_key(r) for r in self.rows}

    def add(self, rows: Sequence[dict]) -> None:
        self.rows.extend(rows)
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, {"metadata": self.metadata, "results": self.rows})


def _tqdm(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True)


def measured_entries(entries: Sequence[ModelEntry]) -> list[ModelEntry]:
    return [e for e in entries if e.ref is not None]


def run_suite(cfg: SuiteConfig, out_dir: Path, command: str | Sequence[str] | None = None,
              argv: Sequence[str] = (), resume: dict | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the configured sections; returns the path of the run's JSON.

    argv: the CLI arguments, stored so that --resume re-creates exactly this configuration.
    """
    from backends import bench_order

    t_start = time.perf_counter()
    backends = cfg.backends or bench_order()
    log(f"loading data: {', '.join(cfg.data_specs)}")
    evalsets = [load_evalset(s, cfg.split, cfg.max_clips, cfg.seed) for s in cfg.data_specs]
    only_reason = f"skipped by --quick (measures only {', '.join(cfg.models or ())})" if cfg.quick else \
        "not in --models"
    entries = resolve_models(cfg.runs, cfg.models, only_reason, untrained_dir=exports_dir() / "untrained")
    if not measured_entries(entries):
        log("warning: no model can be measured (no shipped weights in zoo/weights/ and no --run folder); "
            "the matrix will hold n/a rows only")
    if resume is not None:
        meta = resume["metadata"]
        rf = RunFile(out_dir / "bench" / f"{meta['run_id']}.json", meta, resume["results"])
        meta.setdefault("resumed", []).append(dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    else:
        rid = run_id(cfg.quick)
        meta = bench_metadata(command, run_id=rid, quick=cfg.quick, config=config_dict(cfg),
                              datasets=[ev.describe() for ev in evalsets], threads=list(cfg.matrix.thread_settings()),
                              all_cores=all_cores(), argv=list(argv), complete=False)
        if cfg.quick:
            meta["quick_note"] = quick_note(cfg)
        rf = RunFile(out_dir / "bench" / f"{rid}.json", meta)
    rf.save()
    log(f"writing {rf.path}")
    work = Path(tempfile.mkdtemp(prefix="kws-bench-"))
    timings = rf.metadata.setdefault("section_seconds", {})
    timings["data"] = round(time.perf_counter() - t_start, 1)
    scored = [e for e in measured_entries(entries) if e.source != "untrained"]  # random weights: timing only
    sections = {"matrix": lambda: _run_matrix(cfg, entries, backends, evalsets, rf, work),
                "streaming": lambda: _run_streaming(cfg, scored, evalsets, rf, log),
                "noise": lambda: _run_noise(cfg, scored, evalsets, rf, log)}
    try:
        for name in SECTIONS:
            if name in cfg.sections:
                t0 = time.perf_counter()
                sections[name]()
                timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rf.metadata.update(complete=True, load_average_end=load_average(),
                       wall_seconds=round(rf.metadata.get("wall_seconds", 0.0) + time.perf_counter() - t_start, 1))
    rf.save()
    return rf.path


def _run_matrix(cfg: SuiteConfig, entries: Sequence[ModelEntry], backends: Sequence[str],
                evalsets: Sequence[EvalSet], rf: RunFile, work: Path) -> None:
    done = rf.done
    total = sum(1 for e in entries for b in backends if f"{e.name}|{b}" not in done)
    bar = _tqdm(total, "matrix (model x backend)")

    def on_rows(key: str, rows: list[dict]) -> None:
        rf.add(rows)
        if not key.endswith("|model"):
            bar.update(1)
            r = rows[0]
            p50 = (r.get("latency") or {}).get("p50_ms")
            bar.set_postfix_str(f"{r['model']} x {r['backend']}: " +
                                (f"p50 {p50:.2f} ms" if p50 is not None else r.get("status", "")[:40]))

    try:
        run_matrix(entries, backends, evalsets, cfg.matrix, work, done=done, on_rows=on_rows,
                   progress=lambda s: bar.set_description_str(f"matrix: {s}"))
    finally:
        bar.close()


def _open_predictor(ref: str, cfg: SuiteConfig, log: Callable[[str], None]):
    """The live app's own loader (realtime.predictor), so the engine sees the same predict path."""
    from realtime.predictor import load_predictor

    return load_predictor(ref, backend=cfg.eval_backend, threads=cfg.eval_threads,
                          backend_is_default=cfg.eval_backend == DEFAULT_EVAL_BACKEND, notify=log)


def _run_per_pair(kind: str, title: str, cfg: SuiteConfig, entries: Sequence[ModelEntry],
                  evalsets: Sequence[EvalSet], rf: RunFile, log: Callable[[str], None],
                  run_one: Callable[[Any, EvalSet, Any], tuple[dict, str]],
                  prepare: Callable[[EvalSet], None] = lambda ev: None) -> None:
    """One result row per (model, data set) not yet in the run file, through the live app's predictor.

    run_one(predictor, evalset, bar) -> (row fields, progress text). A model that fails is recorded
    as an error row and the next one runs: one broken model must not sink the others' results.
    """
    todo = [(e, ev) for e in entries for ev in evalsets if f"{kind}|{e.name}|{ev.name}" not in rf.done]
    bar = _tqdm(len(todo), title)
    try:
        for e, ev in todo:
            bar.set_description_str(f"{kind}: {e.name} on {ev.name}")
            prepare(ev)
            head = {"kind": kind, "model": e.name, "dataset": ev.name}
            try:
                pred = _open_predictor(e.ref, cfg, log)
                fields, postfix = run_one(pred, ev, bar)
            except Exception as exc:
                rf.add([{**head, "status": f"error: {type(exc).__name__}: {str(exc)[:300]}"}])
            else:
                rf.add([{**head, "status": "ok", "backend": pred.backend, **fields}])
                bar.set_postfix_str(postfix)
            bar.update(1)
    finally:
        bar.close()


def _run_streaming(cfg: SuiteConfig, entries: Sequence[ModelEntry], evalsets: Sequence[EvalSet], rf: RunFile,
                   log: Callable[[str], None]) -> None:
    from bench.streaming import build_streams, evaluate_model, stream_keywords

    cache: dict[tuple, Any] = {}

    def run_one(pred, ev: EvalSet, bar) -> tuple[dict, str]:
        kw = stream_keywords(pred.labels, ev.labels, cfg.streaming)
        key = (ev.name, kw)
        if key not in cache:  # every 35-word model hears the very same streams
            cache[key] = build_streams(ev, kw, cfg.streaming)
        res = evaluate_model(pred.predict, pred.labels, cache[key], cfg.streaming,
                             progress=lambda s: bar.set_postfix_str(s))
        r0 = res["per_snr"][0]
        return ({"providers": list(pred.providers), **res},
                f"hit {r0['hit_rate']:.2f} FA/h {res['fa_per_hour']:.1f}")

    _run_per_pair("streaming", "streaming (live engine)", cfg, entries, evalsets, rf, log, run_one)


def _run_noise(cfg: SuiteConfig, entries: Sequence[ModelEntry], evalsets: Sequence[EvalSet], rf: RunFile,
               log: Callable[[str], None]) -> None:
    from bench.noise import build_noisy, evaluate_model

    noisy: dict[str, Any] = {}

    def prepare(ev: EvalSet) -> None:
        if ev.name not in noisy:
            noisy[ev.name] = build_noisy(ev, cfg.noise)

    def run_one(pred, ev: EvalSet, bar) -> tuple[dict, str]:
        res = evaluate_model(pred.predict, pred.labels, ev.labels, noisy[ev.name], cfg.noise)
        return res, " ".join(f"{r['accuracy']:.2f}" for r in res["per_snr"])

    _run_per_pair("noise", "noise robustness", cfg, entries, evalsets, rf, log, run_one, prepare)
