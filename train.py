"""Train any zoo model on any data source: augmentation on the device, AMP, DDP, resumable runs.

Usage:
  python train.py                                       # EfficientNet-B0, embedded synthetic speech, 35s labels
  python train.py --model dscnn --data synth+gsc12-dev --epochs 30
  python train.py --data folder:PATH                    # your own words: PATH/<word>/*.wav (any rate/length),
                                                        #   labelled by its folder names (digits: 10 labels)
  python train.py --data folder:PATH --labels 35s       # ... viewed through the 35 Speech Commands words instead
  python train.py --fast --max-minutes 10               # 5,000-clip subset, 10-minute budget
  python train.py --config exp.yaml --lr 3e-4           # YAML settings, flags on top
  python train.py --resume runs/dscnn-20250101-120000 --epochs 150
  python train.py --pretrained                          # timm ImageNet weights from the hub
  python train.py --pretrained-file efficientnet_b0.safetensors   # ... or from a local file (offline)
  torchrun --standalone --nproc-per-node 4 train.py --model efficientnet_b0
  python train.py --print-config --model resnet18       # show the resolved config
  python -m kws.train.bench                             # training samples/s per model, data path

Every run writes runs/<model>-<timestamp>/ (or --out): config.yaml, class_labels.json,
best.safetensors, last.safetensors, train_state.safetensors, metrics.csv, curves.png,
confusion.png, report.json, report.md. `python train.py --help` lists every setting.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from kws.train.cli import main as cli_main

    return cli_main(argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
