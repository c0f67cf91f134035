#!/usr/bin/env python
"""Export a trained model to ONNX, checked for parity, optionally int8: `python export.py --help`. The command line lives in cli/export.py (installed: `kws-export`)."""
import sys

from cli.export import main

if __name__ == "__main__":
    sys.exit(main())
