"""int8 against fp32 in ONNX Runtime, for every shipped model: each variant's speed-up and agreement.

    python -m bench.int8                                   # every shipped model (zoo/weights)
    python -m bench.int8 --models efficientnet_b0 resnet18 --run speech_embedding_mlp=runs/cv/x/fold-1
    python -m bench.int8 --fresh                           # quantize again, past the export cache
    python -m bench.int8 report [results/int8.json]        # int8.md again, from the JSON

Writes results/int8.json ({"metadata", "results"}: one row per model and int8 variant) and
int8.md, made from the JSON afterwards. The figures are backends.quantize's own selection run:
every variant and fp32 timed at batch 1, 1 thread, in the same interleaved rounds (ratios within
one run; the load average is recorded), and top-1 agreement with fp32 on the held-out real clips
the exporter uses (gsc12-dev minus the calibration pool) when ../shared/data is present, with a
95 % Wilson interval. Each model's int8 graph is the one ort-int8 serves: resolved through the
export cache (quantized once per weights file); --fresh quantizes into a temporary file instead
and leaves the cache alone. The share of clips given fp32's most common answer is reported too:
near 100 %, a model answers almost constantly and its agreement says little.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.stats import wilson_interval

RESULTS = Path("results")
NAME = "int8"
# the published targets for the int8 speed-up over fp32 ORT (agreement: backends.quantize.MIN_AGREEMENT for all)
SPEEDUP_TARGETS = {"efficientnet_b0": 1.3, "resnet18": 1.5}


def model_refs(models: Sequence[str] | None, runs: Sequence[str]) -> dict[str, tuple[str, str]]:
    """{name: (reference, weights description)}: shipped weights for `models` (default: every shipped
    model), then each NAME=PATH of `runs` (a run folder or checkpoint) added or replacing."""
    from zoo import shipped_models

    shipped = shipped_models()
    refs: dict[str, tuple[str, str]] = {}
    for name in models if models is not None else shipped:
        if name not in shipped:
            raise SystemExit(f"{name}: no shipped weights (zoo/weights/{name}.safetensors); give trained weights "
                             f"with --run {name}=RUN_FOLDER (random weights answer too uniformly for agreement "
                             f"to mean anything)")
        refs[name] = (name, f"shipped weights zoo/weights/{name}.safetensors")
    for spec in runs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--run {spec!r}: expected NAME=PATH (a run folder or .safetensors checkpoint)")
        if not Path(path).exists():
            raise SystemExit(f"--run {spec!r}: {path} not found")
        refs[name] = (path, f"run {path}")
    return refs


def quant_report(ref: str, fresh: bool, log: Callable[[str], None] | None) -> tuple[dict, str]:
    """(backends.quantize report as a dict, the fp32 ONNX path) of one model reference."""
    from backends.export import resolve_onnx
    from backends.meta import read_onnx_info
    from backends.quantize import quantize_int8

    fp32 = resolve_onnx(ref, "fp32", log=log)
    if fresh:
        with tempfile.TemporaryDirectory() as d:
            return asdict(quantize_int8(fp32, Path(d) / "model.int8.onnx", log=log)), str(fp32)
    info = read_onnx_info(resolve_onnx(ref, "int8", log=log))
    return info.json("quantization", {}), str(fp32)


def rows_for(name: str, weights: str, q: dict, fp32_path: str) -> list[dict[str, Any]]:
    """One row per variant of one model's quantization report."""
    from backends.quantize import MIN_AGREEMENT, MIN_SPEEDUP

    n = int(q.get("evaluation_clips") or 0)
    shared = {k: q.get(k) for k in ("chosen", "reason", "fp32_p50_ms", "fp32_p10_ms", "fp32_top_share",
                                    "calibration", "evaluation", "threads", "sensitivity")}
    rows = []
    for c in q.get("candidates", []):
        built = c.get("p50_ms") == c.get("p50_ms") and c.get("speedup")  # NaN p50: the variant failed to build
        agree = c.get("top1_agreement", 0.0)
        row = {"model": name, "weights": weights, "fp32_onnx": fp32_path, **shared, "evaluation_clips": n,
               **{k: c.get(k) for k in ("variant", "p50_ms", "p10_ms", "speedup", "speedup_p10", "top1_agreement",
                                        "float_layers", "sensitive_float", "quantized_nodes", "note")},
               "served": c.get("variant") == q.get("chosen")}
        if built:
            row["agreement_ci"] = list(wilson_interval(round(agree * n), n)) if n else None
            row["passes"] = bool(agree >= MIN_AGREEMENT and c["speedup_p10"] >= MIN_SPEEDUP)
        rows.append(row)
    return rows


def measure(refs: dict[str, tuple[str, str]], fresh: bool = False,
            log: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, (ref, weights) in refs.items():
        if log:
            log(f"== {name}: {weights}")
        q, fp32 = quant_report(ref, fresh, log)
        rows += rows_for(name, weights, q, fp32)
    return rows


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.1%}"


def _x(row: dict) -> str:
    return f"{row['speedup_p10']:.2f}x ({row['speedup']:.2f}x)"


def markdown(data: dict) -> str:
    from backends.quantize import MIN_AGREEMENT, MIN_SPEEDUP

    meta, rows = data.get("metadata", {}), data.get("results", [])
    load = tuple(round(x, 2) for x in meta.get("load_average", ()))
    lines = [
        "# int8 against fp32 (ONNX Runtime, CPU): every variant of every model",
        "",
        f"Measured {meta.get('time_utc', '')} on {meta.get('machine', {}).get('description', 'this machine')}; "
        f"load average at start {load} (a shared machine: compare the ratios, measured in the same interleaved "
        f"rounds, not absolute times across runs). `{meta.get('command', '')}`",
        "",
        f"Policy (backends.quantize): serve the fastest variant with >= {MIN_AGREEMENT:.0%} top-1 agreement with "
        f"fp32 and >= {MIN_SPEEDUP:.2f}x speed-up, else the fp32 graph. Speed-up = fp32 time / int8 time at batch 1, "
        f"1 thread, at the 10th percentile (what the policy decides on: on a loaded machine a median is often a "
        f"descheduled call) and at the median.",
    ]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for m in models:
        mr = [r for r in rows if r["model"] == m]
        r0 = mr[0]
        lines += ["", f"## {m}", "",
                  f"- weights: {r0['weights']}; fp32 p50 {r0['fp32_p50_ms']:.2f} ms (p10 {r0['fp32_p10_ms']:.2f} ms)",
                  f"- agreement on: {r0['evaluation']}; calibration: {r0['calibration']}",
                  f"- fp32's most common answer: {_pct(r0['fp32_top_share'])} of those clips"
                  + (" (nearly constant: agreement says little)" if (r0["fp32_top_share"] or 0) > 0.5 else ""),
                  f"- served: **{r0['chosen']}** ({r0['reason']})", "",
                  "| variant | float layers | p10 ms | p50 ms | speed-up p10 | speed-up p50 | top-1 agreement "
                  "[95 % CI] | passes | note |",
                  "|---|---:|---:|---:|---:|---:|---:|:---:|---|"]
        for r in mr:
            if r.get("passes") is None:
                lines.append(f"| {r['variant']} | | | | | | | | {r['note']} |")
                continue
            ci = r.get("agreement_ci")
            ci_s = f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else ""
            name = f"**{r['variant']}**" if r["served"] else r["variant"]
            note = r["note"] + (f": {', '.join(r['sensitive_float'])}" if r.get("sensitive_float") else "")
            lines.append(f"| {name} | {r['float_layers']} | {r['p10_ms']:.2f} | {r['p50_ms']:.2f} | "
                         f"{r['speedup_p10']:.2f}x | {r['speedup']:.2f}x | {r['top1_agreement']:.2%}{ci_s} | "
                         f"{'yes' if r['passes'] else 'no'} | {note} |")
    lines += ["", "## Targets", "", "Speed-ups at the 10th percentile (the median's in brackets).", ""]
    for m in models:
        mr = [r for r in rows if r["model"] == m and r.get("passes") is not None]
        ok = [r for r in mr if r["top1_agreement"] >= MIN_AGREEMENT]
        best = max(ok, key=lambda r: r["speedup_p10"]) if ok else None
        agree_line = (f"{best['variant']} keeps {best['top1_agreement']:.2%} at {_x(best)}" if best
                      else f"no variant reaches {MIN_AGREEMENT:.0%} agreement")
        if best and best["speedup_p10"] < MIN_SPEEDUP:
            agree_line += f", below the {MIN_SPEEDUP:.2f}x needed to serve it"
        target = SPEEDUP_TARGETS.get(m)
        if target and mr:
            fastest = max(mr, key=lambda r: r["speedup_p10"])
            met = best is not None and best["speedup_p10"] >= target
            lines.append(f"- {m}: speed-up >= {target:.1f}x at >= {MIN_AGREEMENT:.0%} agreement: "
                         f"{'met' if met else 'not met'} ({agree_line}; the fastest variant, {fastest['variant']}: "
                         f"{_x(fastest)} at {fastest['top1_agreement']:.1%})")
        else:
            lines.append(f"- {m}: agreement >= {MIN_AGREEMENT:.0%}: {agree_line}")
    return "\n".join(lines) + "\n"


def write_markdown(json_path: Path, out: Path | None = None) -> Path:
    from kws.fsutil import atomic_write_text, read_json

    data = read_json(json_path)
    md = (out or json_path.parent) / f"{json_path.stem}.md"
    atomic_write_text(md, markdown(data))
    return md


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        p = argparse.ArgumentParser(prog="python -m bench.int8 report", description="int8.md from its JSON")
        p.add_argument("json", nargs="?", type=Path, default=RESULTS / f"{NAME}.json")
        args = p.parse_args(argv[1:])
        print(f"wrote {write_markdown(args.json)}")
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.int8", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", help="shipped models to measure (default: every shipped model)")
    p.add_argument("--run", action="append", default=[], metavar="NAME=PATH",
                   help="measure a run folder or checkpoint as NAME (repeatable; replaces NAME's shipped weights)")
    p.add_argument("--fresh", action="store_true", help="quantize again into a temporary file, even where the "
                   "export cache holds this model's int8 graph (the cache is left as it is)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    from kws.runinfo import write_results

    refs = model_refs(args.models if args.models or not args.run else [], args.run)
    load = os.getloadavg()
    rows = measure(refs, fresh=args.fresh)
    path = write_results(args.out / f"{NAME}.json", rows, command=["python", "-m", "bench.int8", *argv],
                         load_average=load, load_average_end=os.getloadavg())
    print(f"wrote {path} and {write_markdown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
