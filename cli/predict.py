"""Label audio files with any zoo model on any backend.

Usage:
  python predict.py a.wav b.flac c.ogg                          # the default model on ort-cpu
  python predict.py a.wav --model efficientnet_b0 --backend ort-int8
  python predict.py a.wav --model runs/my_words --json          # JSON lines
  kws-predict a.wav                                             # the same, installed

Files of any sample rate, length and channel count; each is scored as one 1 s clip.
`python -m backends` lists the backends and whether they can run here.
Exit status: 0 every file labelled, 1 a file or the model failed (the message names it).
"""
from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    from backends import DEFAULT_BACKEND, backend_names

    p = argparse.ArgumentParser(prog="predict.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="audio files (.wav/.flac/.ogg)")
    p.add_argument("--model", default=None, help="zoo name | run folder | .safetensors | .onnx (default: the "
                   "shipped model with the best cross-validated real-speech accuracy)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=backend_names(), help=f"default {DEFAULT_BACKEND}")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default 1 for ORT)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="abandon one inference call after "
                   "S seconds (default 30, or $KWS_INFERENCE_TIMEOUT_S)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from backends import BackendUnavailable, InferenceError, ModelFileError
    from inference import format_table, predict_files

    try:
        preds = predict_files(args.files, model=args.model, backend=args.backend, batch_size=args.batch_size,
                              threads=args.threads, errors="report", timeout_s=args.timeout)
    except (BackendUnavailable, ModelFileError, InferenceError, FileNotFoundError, ValueError, OSError) as e:
        # OSError: an exports cache that cannot be written (backends.export.ExportCacheError names it)
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
