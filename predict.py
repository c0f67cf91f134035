#!/usr/bin/env python
"""Label audio files with any zoo model on any backend: `python predict.py --help`. The command line lives in cli/predict.py (installed: `kws-predict`)."""
import sys

from cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
