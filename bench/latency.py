"""Batch-1 latency of every available backend, waveform in -> probabilities out, one run.

    python -m bench.latency [--models dscnn resnet18 ...]
                                     [--weights-dir DIR] [--threads 1] [--rounds 40] [--out results]
                                     [--extra MODEL=FILE.onnx ...]
    python -m bench.latency report [results/backend_latency.json]   # the .md again

Writes results/backend_latency.json ({"metadata", "results"}) and backend_latency.md, made from
the JSON afterwards. All backends of one model are timed in interleaved rounds in this one
process, so their ratios are comparable even on a busy machine; p10, p50 and p99 over
rounds x 10 calls, and the ratios at p50 and at p10 (on a loaded machine the median is often
a descheduled call). The published EfficientNet-B0 targets (TARGETS) are checked in the report.
Models: every shipped one unless --models names others. Weights: DIR/<model>/ (a run folder, or a
link to one) when --weights-dir is given, else the shipped zoo/weights/<model>.safetensors, else a
random-initialised model (stated in each row).
The int8 rows carry the quantizer's report: variant chosen, agreement with fp32 and the
accuracy delta on held-out real clips. --extra adds an ort-cpu row for MODEL from an ONNX file
(say, the same weights exported by an earlier recipe), timed in the same rounds: a before/after
within one run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from backends import bench_order, create_backend, list_backends
from backends.registry import DEFAULT_BACKEND, REFERENCE_BACKEND, fp32_counterpart
from backends.clips import get_clips
from kws.metrics import top1_agreement
from kws.timing import interleaved_latency, summary_ms

# the published target: EfficientNet-B0 on ort-cpu, batch 1, 1 thread, waveform in: p50 at most this, and this many
# times faster than torch eager (torch-cpu) in the same run
TARGETS = {"efficientnet_b0": {"backend": "ort-cpu", "p50_ms": 3.0, "vs_torch": 4.0}}


def bench_model(name: str, ref: str, weights: str, threads: int, rounds: int,
                extra: Sequence[str] = ()) -> list[dict]:
    status = {s.name: s for s in list_backends()}
    rows, loaded = [], {}
    for b in bench_order():
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
        if be.quantization:
            q = be.quantization
            row["int8"] = {k: q.get(k) for k in ("chosen", "reason", "speedup", "top1_agreement", "accuracy_fp32",
                                                 "accuracy_int8", "calibration", "evaluation")}
            row["int8"]["variants"] = [{k: c.get(k) for k in ("variant", "speedup", "top1_agreement", "p50_ms")}
                                       for c in q.get("candidates", [])]
        loaded[b] = be
    for path in extra:  # keyed "ort-cpu <file>": timed and compared like the backends
        key = f"{DEFAULT_BACKEND} {path}"
        row = {"model": name, "backend": key, "threads": threads, "weights": f"ONNX file {path}"}
        rows.append(row)
        be = create_backend(DEFAULT_BACKEND, path, threads=threads, log=None)
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
        if REFERENCE_BACKEND in probs:
            row["top1_agreement_vs_torch"] = top1_agreement(probs[b].argmax(1), probs[REFERENCE_BACKEND].argmax(1))
        row["clips"] = clips.source
    med = {r["backend"]: r["p50_ms"] for r in rows if "p50_ms" in r}
    p10 = {r["backend"]: r["p10_ms"] for r in rows if "p10_ms" in r}
    for row in rows:
        if "p50_ms" not in row:
            continue
        if REFERENCE_BACKEND in med:
            row["speedup_vs_torch_cpu"] = med[REFERENCE_BACKEND] / row["p50_ms"]
            row["speedup_vs_torch_cpu_p10"] = p10[REFERENCE_BACKEND] / row["p10_ms"]
        base = fp32_counterpart(row["backend"]) if row["backend"] in bench_order() else None
        if base in med:  # int8 against the fp32 graph on the same runtime ("speedup_vs_ort_cpu" for ort-int8)
            key = "speedup_vs_" + base.replace("-", "_")
            row[key] = med[base] / row["p50_ms"]
            row[key + "_p10"] = p10[base] / row["p10_ms"]
    return rows


def target_lines(rows: list[dict]) -> list[str]:
    """The latency targets against this run's rows (ratios within the run)."""
    lines = []
    for model, t in TARGETS.items():
        r = next((r for r in rows if r["model"] == model and r["backend"] == t["backend"] and "p50_ms" in r), None)
        if r is None:
            continue
        vs = r.get("speedup_vs_torch_cpu")
        met = r["p50_ms"] <= t["p50_ms"] and vs is not None and vs >= t["vs_torch"]
        vs_s = f"{vs:.2f}x" if vs is not None else "n/a (no torch-cpu row)"
        vs10 = f"{r['speedup_vs_torch_cpu_p10']:.2f}x" if "speedup_vs_torch_cpu_p10" in r else "n/a"
        lines.append(f"- {model} {t['backend']}, batch 1, {r['threads']} thread(s), waveform in: p50 {r['p50_ms']:.2f} ms "
                     f"(target <= {t['p50_ms']:.1f} ms), {vs_s} torch-cpu's p50 (target >= {t['vs_torch']:.0f}x): "
                     f"{'met' if met else 'not met'}; at p10: {r['p10_ms']:.2f} ms, {vs10}")
    return lines


def markdown(data: dict) -> str:
    meta, rows = data.get("metadata", {}), data.get("results", [])
    lines = [
        "# Backend latency: batch 1, waveform [1, 16000] in, probabilities out",
        "",
        f"Measured {meta.get('time_utc', '')} on {meta.get('machine', {}).get('cpu', 'this machine')}, "
        f"{rows[0]['threads'] if rows else 1} intra-op thread(s), all backends of a model interleaved in one run; "
        f"load average at start {tuple(round(x, 2) for x in meta.get('load_average', ()))} (a shared 2-core machine: "
        f"compare ratios within a model, not absolute numbers across runs).",
        "",
        "Ratios at p50 (at p10 in brackets).",
        "",
        "| model | backend | p10 ms | p50 ms | p99 ms | vs torch-cpu | int8 vs ort-cpu | top-1 vs torch | weights / notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "p50_ms" not in r:
            lines.append(f"| {r['model']} | {r['backend']} | | | | | | | {r['status'][:110]} |")
            continue
        note = r["weights"]
        if "int8" in r:
            q = r["int8"]
            acc = ""
            if q.get("accuracy_fp32") is not None and q.get("accuracy_int8") is not None:
                # the agreement clips are any gsc12-dev clips, ones the weights trained on too: only the delta counts
                acc = (f", label match {q['accuracy_fp32']:.1%} -> {q['accuracy_int8']:.1%} on those clips "
                       f"(not held out from training: a delta, not an accuracy)")
            note += f"; int8 variant: {q['chosen']}, agreement with fp32 {q['top1_agreement']:.1%}{acc}"
        vs_ort = (f"{r['speedup_vs_ort_cpu']:.2f}x ({r.get('speedup_vs_ort_cpu_p10', float('nan')):.2f}x)"
                  if "speedup_vs_ort_cpu" in r else "")
        vs_torch = (f"{r['speedup_vs_torch_cpu']:.2f}x ({r.get('speedup_vs_torch_cpu_p10', float('nan')):.2f}x)"
                    if "speedup_vs_torch_cpu" in r else "")
        p10 = f"{r['p10_ms']:.2f}" if "p10_ms" in r else ""
        lines.append(
            f"| {r['model']} | {r['backend']} | {p10} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {vs_torch} | {vs_ort} | "
            f"{r.get('top1_agreement_vs_torch', float('nan')):.1%} | {note} |")
    lines += ["", "int8 variants tried (quantizer's own interleaved timing vs fp32, top-1 agreement with fp32):", ""]
    for r in rows:
        for v in r.get("int8", {}).get("variants", []):
            if v.get("speedup"):
                lines.append(f"- {r['model']} {v['variant']}: {v['speedup']:.2f}x, {v['top1_agreement']:.1%}")
    targets = target_lines(rows)
    if targets:
        lines += ["", "## Targets", "", *targets]
    return "\n".join(lines) + "\n"


def write_markdown(json_path: Path) -> Path:
    from kws.fsutil import atomic_write_text, read_json

    md = json_path.with_suffix(".md")
    atomic_write_text(md, markdown(read_json(json_path)))
    return md


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        p = argparse.ArgumentParser(prog="python -m bench.latency report",
                                    description="backend_latency.md from its JSON")
        p.add_argument("json", nargs="?", type=Path, default=Path("results") / "backend_latency.json")
        print(f"wrote {write_markdown(p.parse_args(argv[1:]).json)}")
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", help="default: every model with shipped weights")
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
    from bench.selfcheck import default_ref
    from kws.runinfo import load_average, write_results
    from zoo import shipped_models

    load = load_average()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models or shipped_models():
            if args.weights_dir and (args.weights_dir / name).is_dir():
                ref = str(args.weights_dir / name)
                weights = f"run folder {(args.weights_dir / name).resolve()}"  # a link names where it points
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
    path = write_results(args.out / "backend_latency.json", rows,
                         command=["python", "-m", "bench.latency", *argv], threads=args.threads,
                         load_average=load, load_average_end=load_average())
    print(f"wrote {path} and {write_markdown(path)}")
    for line in target_lines(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
