"""Copy a trained checkpoint into the zoo's shipped weights (fp16 safetensors, < 20 MB).

Usage:
  python scripts/ship_weights.py RUN_OR_CKPT --trained-on "..." [--note "..."]

The meta written into the file is what export.py copies into the ONNX metadata and what
the bench and the README quote: the training data, how it was trained and the run's own
validation figures. Real-speech accuracy lives in results/real_speech.md (bench.realspeech).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo import load_model, save_checkpoint  # noqa: E402
from zoo.model import model_dir  # noqa: E402

MAX_BYTES = 20 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref")
    ap.add_argument("--trained-on", required=True, help="human-readable description of the training data")
    ap.add_argument("--note", default="", help="how it was trained (hardware, epochs, minutes)")
    args = ap.parse_args(argv)
    model, meta = load_model(args.ref)
    meta = {**meta, "train_data": args.trained_on, "training": args.note, "source_checkpoint": Path(args.ref).name}
    out = model_dir() / f"{model.cfg.name}.safetensors"
    save_checkpoint(model, out, meta, half=True)
    size = out.stat().st_size
    if size > MAX_BYTES:
        out.unlink()
        raise SystemExit(f"{out}: {size / 2**20:.1f} MiB is over the 20 MiB limit for shipped weights")
    print(f"shipped {out} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
