"""Export a trained model to ONNX (waveform in, probabilities out), check it, optionally int8.

Usage:
    python export.py REF [-o OUT.onnx] [--features-in] [--int8] [--streaming] [--opset 17] [--clips N]

REF is a zoo name (shipped weights in zoo/weights/), a run folder (best/last.safetensors),
or a .safetensors checkpoint; with --int8 it may also be an fp32 .onnx made by this tool.

Every export runs onnx.checker and a parity check against PyTorch on real clips
(../shared/data/gsc12-dev, else synthetic speech-like clips; the report says which) and
exits non-zero when top-1 agreement is below 100 %. --int8 builds static int8 variants,
measures them against fp32 and keeps the fastest that holds >= 99 % agreement (or the
fp32 graph, when none is faster). Without -o the files go to the exports/ cache, where
the ort-* backends find them.

--streaming exports the model's streaming form instead (backends.streaming): audio [1, k * chunk]
and the state in, probabilities and the new state out, checked against the PyTorch streaming
module on a long signal; live.py makes and uses it by itself.

Examples:
    python export.py runs/effb0-synth                 # -> exports/efficientnet_b0-<hash>-v1/model.onnx
    python export.py efficientnet_b0 --int8 -o effb0.int8.onnx
    python export.py runs/effb0-synth --features-in -o effb0.features.onnx
    python export.py effb0.onnx --int8 -o effb0.int8.onnx
    python export.py runs/my_run --streaming          # -> exports/<name>-<hash>-s1/model.stream.onnx
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="export.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("ref", help="zoo name | run folder | .safetensors (| fp32 .onnx with --int8)")
    p.add_argument("-o", "--out", type=Path, help="output .onnx (default: the exports/ cache)")
    p.add_argument("--features-in", action="store_true", help="log-mel features in instead of waveforms")
    p.add_argument("--int8", action="store_true", help="also build the measured int8 model (waveform-in)")
    p.add_argument("--streaming", action="store_true", help="the streaming form: audio chunk + state in, "
                   "probabilities + new state out")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (>= 17; default 17; needs -o)")
    p.add_argument("--clips", type=int, default=None, help="parity clips (default 64; needs -o)")
    p.add_argument("--json", type=Path, help="write the export/quantization report as JSON")
    p.add_argument("--force", action="store_true", help="overwrite an existing -o file that is not an ONNX model")
    return p


def check_destination(out: Path, force: bool = False) -> None:
    """-o names a file to write: never a directory, and an existing file only when it is an ONNX model
    (a re-export) or with --force, so a typo cannot replace a checkpoint or a report with a graph."""
    if out.is_dir():
        raise ValueError(f"{out}: is a directory; -o names the .onnx file to write (e.g. {out / 'model.onnx'})")
    if out.exists() and not force and not _is_onnx(out):
        raise ValueError(f"{out}: exists and is not an ONNX model; pass --force to overwrite it")


def _is_onnx(path: Path) -> bool:
    import onnx

    try:
        return bool(onnx.load(str(path), load_external_data=False).graph.node)
    except Exception:  # noqa: BLE001 - DecodeError, a text file, anything: not a model
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from backends.base import ModelFileError
    from backends.export import ParityError

    try:
        report = run(args)
    except ParityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ModelFileError, FileNotFoundError, ValueError, OSError) as e:  # OSError: a read-only destination
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        from kws.fsutil import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


def run(args: argparse.Namespace) -> dict:
    from backends.clips import get_clips
    from backends.export import DEFAULT_OPSET, PARITY_CLIPS, export_onnx, resolve_onnx
    from backends.quantize import quantize_int8

    if args.features_in and args.int8:
        raise ValueError("--int8 builds a waveform-in model; drop --features-in")
    if args.out is not None:
        check_destination(args.out, args.force)
    if args.streaming:
        return run_streaming(args)
    if (args.opset or args.clips) and not args.out:
        raise ValueError("--opset/--clips make a custom export: name its file with -o")
    is_onnx = Path(args.ref).suffix == ".onnx"
    if is_onnx and not args.int8:
        raise ValueError(f"{args.ref} is already ONNX; pass --int8 to quantize it")
    report: dict = {}
    if args.int8:
        if args.out is None:  # both graphs into the exports/ cache, where ort-int8 finds them
            out = resolve_onnx(args.ref, precision="int8")
            side = out.with_suffix(".json")
            report["int8"] = json.loads(side.read_text()) if side.is_file() else {"path": str(out)}
        else:
            fp32 = Path(args.ref) if is_onnx else resolve_onnx(args.ref)
            out = args.out
            report["int8"] = asdict(quantize_int8(fp32, out))
        print(f"int8 model: {out} ({report['int8'].get('chosen', 'cached')})")
        return report
    if args.out is None:
        out = resolve_onnx(args.ref, features_in=args.features_in)
        report["export"] = {"path": str(out)}
        print(f"onnx model: {out}")
        return report
    from zoo import load_model

    model, meta = load_model(args.ref)
    r = export_onnx(model, args.out, features_in=args.features_in, opset=args.opset or DEFAULT_OPSET,
                    checkpoint_meta=meta, source=str(args.ref), clips=get_clips(args.clips or PARITY_CLIPS))
    report["export"] = asdict(r)
    print(f"onnx model: {args.out} ({r.bytes / 1e6:.1f} MB, opset {r.opset}, {r.input_kind} in, {r.seconds:.1f} s)")
    return report


def run_streaming(args: argparse.Namespace) -> dict:
    from backends.streaming import export_streaming, read_stream_info, resolve_streaming

    if args.features_in or args.int8 or args.clips:
        raise ValueError("--streaming exports the fp32 streaming graph alone; drop --features-in/--int8/--clips")
    if args.out is None:
        out = resolve_streaming(args.ref)
        report = {"streaming": {"path": str(out)}}
    else:
        from zoo import load_model

        model, meta = load_model(args.ref)
        out = args.out
        parity = export_streaming(model, out, checkpoint_meta=meta, source=str(args.ref), opset=args.opset)
        report = {"streaming": {"path": str(out), "parity": asdict(parity) if parity else None}}
    _, spec = read_stream_info(out)
    report["streaming"]["spec"] = spec.to_dict()
    print(f"streaming onnx model: {out} ({spec.form}, chunks of {spec.chunk_samples} samples)")
    return report


if __name__ == "__main__":
    sys.exit(main())
