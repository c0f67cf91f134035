"""Command line of train.py (see its docstring for usage)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from kws.train.config import ConfigError, add_config_args, coerce, resolve


def build_parser(doc: str = "") -> argparse.ArgumentParser:
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


def main(argv: list[str] | None = None, doc: str = "") -> int:
    from kws.data import DataError
    from kws.pretrained import PretrainedFileError
    from kws.train.state import RunFileError
    from zoo import PretrainedUnavailable

    args = vars(build_parser(doc).parse_args(argv))
    config_path, resume = args.pop("config"), args.pop("resume")
    print_only, stop_after = args.pop("print_config"), args.pop("stop_after_epochs")
    try:
        if resume:
            if config_path:
                raise ConfigError("--resume takes the run's own config.yaml; --config cannot be combined with it")
            from kws.train.trainer import resume_config

            cfg = resume_config(Path(resume), {k: coerce(k, v, "command line") for k, v in args.items()})
        else:
            cfg = resolve(args, config_path)
        if print_only:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        from kws.train.trainer import train

        train(cfg, resume=resume, stop_after_epochs=stop_after)
    except (ConfigError, DataError, PretrainedUnavailable, PretrainedFileError, RunFileError,
            FileNotFoundError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    return 0
