"""The CLI: ``python -m kws.data.synth --out DIR [--words a,b] [--per-word N] [--size tiny]
[--engines auto|espeak,...] [--fillers N] [--seed S] [--workers N]`` builds one synthetic set with
build_synth and prints its counts, engines and build speed. A thin layer: the description it
shows is the package's own first paragraph.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import kws.data.synth as synth
from kws.data.synth.build import build_synth, read_manifest
from kws.data.synth.settings import ENGINES, FILLER_WORDS, SIZES, STATS_FILE, SynthError
from kws.labels import GSC_V2_WORDS


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kws.data.synth", description=synth.__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (Speech Commands layout)")
    ap.add_argument("--per-word", type=int, default=100, help="clips per word (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", choices=SIZES, default="default")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--engines", default="auto",
                    help=f"auto (default: all installed) or a comma-separated subset of {','.join(ENGINES)}")
    ap.add_argument("--fillers", type=int, default=0, help=f"add N filler-word folders (max {len(FILLER_WORDS)})")
    ap.add_argument("--words", default=None, help="comma-separated words (default: the 35 of v0.02)")
    a = ap.parse_args(argv)
    words = tuple(w.strip() for w in a.words.split(",")) if a.words else GSC_V2_WORDS
    try:
        out = build_synth(a.out, words=words, per_word=a.per_word, seed=a.seed, size=a.size,
                          workers=a.workers, engines=a.engines, fillers=a.fillers)
    except SynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = read_manifest(out) or {}
    stats_p = out / STATS_FILE
    stats = json.loads(stats_p.read_text()) if stats_p.exists() else {}
    c = m.get("counts", {})
    print(f"{out}: {c.get('clips')} clips, {c.get('speakers')} speakers, splits {c.get('per_split')}, "
          f"engines {m.get('engines')}; built in {stats.get('seconds')} s ({stats.get('clips_per_s')} clips/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
