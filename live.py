#!/usr/bin/env python
"""Live keyword detection from the microphone or a replayed file: `python live.py --help`. The command line lives in cli/live.py (installed: `kws-live`)."""
import sys

from cli.live import main

if __name__ == "__main__":
    sys.exit(main())
