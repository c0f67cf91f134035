#!/usr/bin/env python
"""Train any zoo model on any data source: `python train.py --help`. The command line lives in cli/train.py (installed: `kws-train`)."""
import sys

from cli.train import main

if __name__ == "__main__":
    sys.exit(main())
