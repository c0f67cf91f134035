"""The last word of setup.sh: what was trained, how well it hears real speakers, how fast it runs.

Usage: python scripts/quickstart_summary.py RUN [--real-speech runs/quickstart/real_speech.json]
                                              [--bench runs/quickstart/bench]

Reads only files the earlier steps wrote: the run's report, the real-speech result of
`bench.realspeech cv`, and the newest quick-bench JSON under the bench folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script in the checkout: its packages beside it

from kws.paths import RESULTS  # noqa: E402

NAMES = {"acc12": "12-class", "acc35": "35-class (word clips)", "acc": "exact label"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--real-speech", type=Path)
    ap.add_argument("--bench", type=Path, default=RESULTS, help="the quick bench's --out folder")
    args = ap.parse_args(argv)
    run = args.run
    report = json.loads((run / "report.json").read_text())
    print(f"model: {report['model']} trained on {report['data']} ({report['epochs_trained']} epochs, "
          f"{report['train_minutes']} min) -> {run}")
    if args.real_speech and args.real_speech.is_file():
        rows = [r for r in json.loads(args.real_speech.read_text())["results"] if r.get("kind") == "summary"]
        for r in rows:
            lo, hi = r["pooled_ci95"]
            print(f"real speech, held-out speakers: {r['part']} {NAMES[r['metric']]} {100 * r['pooled']:.1f} % "
                  f"(95 % CI {100 * lo:.1f}-{100 * hi:.1f}; {r['clips']} clips, {r['speakers']} speakers)")
    else:
        print(f"real speech: not measured (no ../shared/data here); {report['split']} accuracy on synthetic "
              f"speakers it never heard: {100 * report['accuracy']:.1f} %")
    quick = sorted((args.bench / "bench").glob("*-quick.json"), key=lambda p: p.stat().st_mtime)
    if quick:
        rows = json.loads(quick[-1].read_text())["results"]
        mine = [r for r in rows if r.get("kind") == "matrix" and r.get("weights") not in ("shipped", "untrained")
                and r.get("arch") == report["model"]]
        for r in mine:
            lat = r.get("latency") or {}
            print(f"latency {r['backend']:>12}: " + (f"p50 {lat['p50_ms']:.2f} ms (batch 1, {r['threads']} thread)"
                                                    if r.get("status") == "ok" and lat else r.get("status", "?")))
    print(f"live:    .venv/bin/python live.py --weights {run}")
    print(f"predict: .venv/bin/python predict.py some.wav --model {run}")
    print("shipped default (best cross-validated real-speech accuracy): .venv/bin/python live.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
