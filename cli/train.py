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
  python -m training.bench                             # training samples/s per model, data path

Every run writes runs/<model>-<timestamp>/ (or --out): config.yaml, class_labels.json,
best.safetensors, last.safetensors, train_state.safetensors, metrics.csv, curves.png,
confusion.png, report.json, report.md. `python train.py --help` lists every setting.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from training.config import ConfigError, add_config_args, coerce, resolve


def build_parser(doc: str = __doc__) -> argparse.ArgumentParser:
    from kws.data.views import DEFAULT_RULE

    p = argparse.ArgumentParser(prog="train.py", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"Labels: --labels default (the default) is {DEFAULT_RULE}.")
    p.add_argument("--config", metavar="YAML", help="YAML file of settings (flags given here override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or finished run from its last epoch; "
                   "only epochs, patience, max-minutes, workers, pin-memory, progress, device, threads may change")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--stop-after-epochs", type=int, default=0, metavar="N",
                   help="test hook: stop after N epochs of this invocation, as if killed (no final report)")
    add_config_args(p)
    return p


def check_out(out: Path) -> None:
    """--out names a run folder: refused when it is a file, made now when it can be (so that a read-only
    destination fails in a second, not after the data is loaded)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is an existing file, not a run folder; name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create the run folder ({e.strerror or e})") from None


def main(argv: list[str] | None = None, doc: str = __doc__) -> int:
    from kws.data import DataError
    from kws.pretrained import PretrainedFileError
    from training.state import RunFileError
    from zoo import PretrainedUnavailable

    args = vars(build_parser(doc).parse_args(argv))
    config_path, resume = args.pop("config"), args.pop("resume")
    print_only, stop_after = args.pop("print_config"), args.pop("stop_after_epochs")
    try:
        if resume:
            if config_path:
                raise ConfigError("--resume takes the run's own config.yaml; --config cannot be combined with it")
            from training.trainer import resume_config

            cfg = resume_config(Path(resume), {k: coerce(k, v, "command line") for k, v in args.items()})
        else:
            cfg = resolve(args, config_path)
        if print_only:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        if not resume and cfg.out:
            check_out(Path(cfg.out))
        from training.trainer import train

        train(cfg, resume=resume, stop_after_epochs=stop_after)
    except (ConfigError, DataError, PretrainedUnavailable, PretrainedFileError, RunFileError,
            FileNotFoundError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a destination that cannot be written (read-only, full): one line naming it
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    return 0
