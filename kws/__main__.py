"""Command line: `python -m kws predict a.wav b.wav --model efficientnet_b0 --backend ort-cpu`,
`python -m kws backends` (which backends can run here, and why not)."""
from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    from backends.base import BACKENDS
    from kws.predict import DEFAULT_BACKEND

    p = argparse.ArgumentParser(prog="python -m kws", description="keyword-spotting zoo tools")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="label audio files (any rate/length; mono or stereo)")
    pr.add_argument("files", nargs="+", help="audio files (.wav/.flac/.ogg)")
    pr.add_argument("--model", default=None, help="zoo name | run folder | .safetensors | .onnx (default: the "
                    "shipped model with the best cross-validated real-speech accuracy)")
    pr.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help=f"default {DEFAULT_BACKEND}")
    pr.add_argument("--threads", type=int, default=None, help="intra-op threads (default 1 for ORT)")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    sub.add_parser("backends", help="list the backends and whether they can run here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "backends":
        from backends import list_backends

        for s in list_backends():
            print(f"{s.name:13s} {'yes' if s.available else 'no ':3s}  {s.reason}")
        return 0
    from backends import BackendUnavailable, InferenceError, ModelFileError
    from kws.predict import format_table, predict_files

    try:
        preds = predict_files(args.files, model=args.model, backend=args.backend, batch_size=args.batch_size,
                              threads=args.threads, errors="report")
    except (BackendUnavailable, ModelFileError, InferenceError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        for p in preds:
            # allow_nan=False: a NaN would make the line invalid JSON; backends never hand one out
            print(json.dumps({"file": p.path, "label": p.label, "confidence": round(p.confidence, 4),
                              "top": p.top, "error": p.error}, allow_nan=False))
    else:
        print(format_table(preds))
    return 1 if any(p.error for p in preds) else 0


if __name__ == "__main__":
    sys.exit(main())
