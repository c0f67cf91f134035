"""Batch-1 latency of every available backend, waveform in -> probabilities out, one run.

    python -m backends.bench_latency [--models efficientnet_b0 resnet18 mobilenetv3_large_100]
                                     [--weights-dir DIR] [--threads 1] [--rounds 40] [--out results]
                                     [--extra MODEL=FILE.onnx ...]

Writes results/backend_latency.json ({"metadata", "results"}) and backend_latency.md.
All backends of one model are timed in interleaved rounds in this one process, so their
ratios are comparable even on a busy machine; p50 and p99 over rounds x 10 calls.
Weights: DIR/<model>/ (a run folder) when --weights-dir is given, else the shipped
zoo/weights/<model>.safetensors, else a random-initialised model (stated in each row).
The int8 rows carry the quantizer's report: variant chosen, agreement with fp32 and the
accuracy delta on held-out real clips. --extra adds an ort-cpu row for MODEL from an ONNX file
(say, the same weights exported by an earlier recipe), timed in the same rounds: a before/after
within one run.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backends import create_backend, list_backends
from backends.clips import get_clips
from backends.timing import interleaved_latency, summary_ms

MODELS = ("efficientnet_b0", "resnet18", "mobilenetv3_large_100")
BENCH_BACKENDS = ("torch-cpu", "ort-cpu", "ort-int8", "torch-cuda", "ort-cuda", "ort-directml")


def run_metadata(command: Sequence[str], **extra: Any) -> dict[str, Any]:
    """kws.runinfo.run_metadata (the shared recorder), plus the load of this shared machine."""
    import os

    from kws.runinfo import run_metadata as shared

    return shared(list(command), load_average=os.getloadavg(), **extra)


def bench_model(name: str, ref: str, weights: str, threads: int, rounds: int,
                extra: Sequence[str] = ()) -> list[dict]:
    status = {s.name: s for s in list_backends()}
    rows, loaded = [], {}
    for b in BENCH_BACKENDS:
        row: dict[str, Any] = {"model": name, "backend": b, "threads": threads, "weights": weights}
        rows.append(row)
        if not status[b].available:
            row["status"] = f"n/a: {status[b].reason}"
            continue
        try:
            be = create_backend(b, ref, threads=threads)
            be.warmup(runs=5)
        except Exception as e:  # BackendUnavailable, ParityError, ...: a row saying "n/a: why"
            row["status"] = f"n/a: {type(e).__name__}: {str(e)[:300]}"
            continue
        row.update(status="ok", device=be.device, providers=list(be.providers))
        if b == "ort-int8":
            q = json.loads(be.info.props.get("quantization", "{}"))
            row["int8"] = {k: q.get(k) for k in ("chosen", "reason", "speedup", "top1_agreement", "accuracy_fp32",
                                                 "accuracy_int8", "calibration", "evaluation")}
            row["int8"]["variants"] = [{k: c.get(k) for k in ("variant", "speedup", "top1_agreement", "p50_ms")}
                                       for c in q.get("candidates", [])]
        loaded[b] = be
    for path in extra:  # keyed "ort-cpu <file>": timed and compared like the backends
        key = f"ort-cpu {path}"
        row = {"model": name, "backend": key, "threads": threads, "weights": f"ONNX file {path}"}
        rows.append(row)
        be = create_backend("ort-cpu", path, threads=threads, log=None)
        be.warmup(runs=5)
        row.update(status="ok", device=be.device, providers=list(be.providers))
        loaded[key] = be
    clips = get_clips(256)
    one = clips.waves[:1]
    lat = interleaved_latency({b: (lambda be=be: be.predict(one)) for b, be in loaded.items()},
                              rounds=rounds, per_round=10, warmup=10)
    probs = {b: be.predict(clips.waves) for b, be in loaded.items()}
    for row in rows:
        b = row["backend"]
        if b not in loaded:
            continue
        row.update(summary_ms(lat[b]))
        if "torch-cpu" in probs:
            row["top1_agreement_vs_torch"] = float((probs[b].argmax(1) == probs["torch-cpu"].argmax(1)).mean())
        row["clips"] = clips.source
    med = {r["backend"]: r["p50_ms"] for r in rows if "p50_ms" in r}
    for row in rows:
        if "p50_ms" not in row:
            continue
        if "torch-cpu" in med:
            row["speedup_vs_torch_cpu"] = med["torch-cpu"] / row["p50_ms"]
        if row["backend"] == "ort-int8" and "ort-cpu" in med:
            row["speedup_vs_ort_cpu"] = med["ort-cpu"] / row["p50_ms"]
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Backend latency: batch 1, waveform [1, 16000] in, probabilities out",
        "",
        f"Measured {meta.get('time_utc', '')} on {meta.get('machine', {}).get('cpu', 'this machine')}, "
        f"{rows[0]['threads'] if rows else 1} intra-op thread(s), all backends of a model interleaved in one run; "
        f"load average at start {tuple(round(x, 2) for x in meta.get('load_average', ()))} (a shared 2-core machine: "
        f"compare ratios within a model, not absolute numbers across runs).",
        "",
        "| model | backend | p50 ms | p99 ms | vs torch-cpu | int8 vs ort-cpu | top-1 vs torch | weights / notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "p50_ms" not in r:
            lines.append(f"| {r['model']} | {r['backend']} | | | | | | {r['status'][:110]} |")
            continue
        note = r["weights"]
        if "int8" in r:
            q = r["int8"]
            acc = ""
            if q.get("accuracy_fp32") is not None and q.get("accuracy_int8") is not None:
                acc = f", accuracy {q['accuracy_fp32']:.1%} -> {q['accuracy_int8']:.1%}"
            note += f"; int8 variant: {q['chosen']}, agreement with fp32 {q['top1_agreement']:.1%}{acc}"
        vs_ort = f"{r['speedup_vs_ort_cpu']:.2f}x" if "speedup_vs_ort_cpu" in r else ""
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r.get('speedup_vs_torch_cpu', float('nan')):.2f}x | {vs_ort} | "
            f"{r.get('top1_agreement_vs_torch', float('nan')):.1%} | {note} |")
    lines += ["", "int8 variants tried (quantizer's own interleaved timing vs fp32, top-1 agreement with fp32):", ""]
    for r in rows:
        for v in r.get("int8", {}).get("variants", []):
            if v.get("speedup"):
                lines.append(f"- {r['model']} {v['variant']}: {v['speedup']:.2f}x, {v['top1_agreement']:.1%}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m backends.bench_latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--weights-dir", type=Path, help="folder of run folders named after the models")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=40, help="interleaved rounds of 10 calls per backend")
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--extra", action="append", default=[], metavar="MODEL=FILE.onnx",
                   help="also time this ONNX file on ort-cpu beside MODEL's backends (repeatable)")
    args = p.parse_args(argv)
    extra: dict[str, list[str]] = {}
    for spec in args.extra:
        model, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            p.error(f"--extra {spec!r}: expected MODEL=FILE.onnx with an existing file")
        extra.setdefault(model, []).append(path)
    from backends.selfcheck import default_ref
    from kws.fsutil import atomic_write_json, atomic_write_text

    command = ["python", "-m", "backends.bench_latency", *(argv if argv is not None else sys.argv[1:])]
    meta = run_metadata(command, threads=args.threads)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if args.weights_dir and (args.weights_dir / name).is_dir():
                ref, weights = str(args.weights_dir / name), f"run folder {args.weights_dir / name}"
            else:
                ref, weights = default_ref(name, tmp)
            print(f"== {name}: {weights}", flush=True)
            for r in bench_model(name, ref, weights, args.threads, args.rounds, extra.get(name, ())):
                rows.append(r)
                if "p50_ms" in r:
                    print(f"  {r['backend']:12s} p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                          f"x{r.get('speedup_vs_torch_cpu', float('nan')):.2f} vs torch", flush=True)
                else:
                    print(f"  {r['backend']:12s} {r['status'][:100]}", flush=True)
    atomic_write_json(args.out / "backend_latency.json", {"metadata": meta, "results": rows})
    atomic_write_text(args.out / "backend_latency.md", markdown(rows, meta))
    print(f"wrote {args.out / 'backend_latency.json'} and {args.out / 'backend_latency.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
