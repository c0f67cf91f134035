"""Which backends can run here, and why not: `python -m backends`."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(prog="python -m backends", description=__doc__).parse_args(argv)
    from backends import list_backends

    for s in list_backends():
        print(f"{s.name:13s} {'yes' if s.available else 'no ':3s}  {s.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
