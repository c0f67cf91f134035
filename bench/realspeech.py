"""Real-speech accuracy of trained models on Speech Commands speakers they never heard.

Usage:
  python -m bench.realspeech                         # the shipped zoo weights
  python -m bench.realspeech --weights runs/X --weights zoo/weights/efficientnet_b0.safetensors

Two evaluation sets from ../shared/data/gsc12-dev (real recordings):
- "held-out speakers": the test speakers of its speaker-disjoint folder split
  (`folder:` spec), the part kept out of training for models that saw gsc12-dev clips;
- "all gsc12-dev": every clip, valid only for models that never saw a real clip.
12-class accuracy maps both truth and prediction through kws.labels.to_12class;
35-class accuracy is over the word clips (silence left out), a silence prediction counting
as an error. Both come with a 95 % Wilson interval, because the held-out set is small.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from bench.stats import classification_metrics
from kws.labels import GSC12_LABELS, SILENCE, to_12class
from kws.runinfo import write_results

GSC12_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsc12-dev"
HELD_OUT = f"folder:{GSC12_DEV}"
ALL_CLIPS = f"gsc:{GSC12_DEV}"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


@torch.no_grad()
def predict(model, waves: np.ndarray, batch: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(waves), batch):
        x = torch.from_numpy(waves[i : i + batch].astype(np.float32) / 32768.0)
        out.append(model(x).argmax(-1).numpy())
    return np.concatenate(out)


def evaluate(model, clips) -> dict:
    truth = [clips.labels[i] for i in clips.y]
    pred = [model.labels[i] for i in predict(model, np.asarray(clips.waves))]
    t12 = np.array([GSC12_LABELS.index(to_12class(w)) for w in truth])
    p12 = np.array([GSC12_LABELS.index(to_12class(w)) for w in pred])
    m12 = classification_metrics(t12, p12, len(GSC12_LABELS))
    words = [i for i, w in enumerate(truth) if w != SILENCE]
    k35 = sum(pred[i] == truth[i] for i in words)
    n12 = len(truth)
    k12 = int((t12 == p12).sum())
    return {
        "clips": n12, "word_clips": len(words), "speakers": len(set(clips.speakers)),
        "acc12": k12 / n12, "acc12_ci95": wilson(k12, n12), "macro_f1_12": m12.macro_f1,
        "acc35": k35 / max(len(words), 1), "acc35_ci95": wilson(k35, len(words)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", action="append", help="zoo name, run folder or .safetensors (repeatable)")
    ap.add_argument("--out", default="results/real_speech.json")
    args = ap.parse_args(argv)
    import zoo
    from kws.data import open_source

    if not GSC12_DEV.is_dir():
        print(f"skipped: {GSC12_DEV} not found (real speech is read from ../shared/data)", file=sys.stderr)
        return 1
    held = open_source(HELD_OUT, labels="35s").split("test")
    everything = open_source(ALL_CLIPS, labels="35s").split("test")
    rows = []
    for ref in args.weights or zoo.shipped_models():
        model, meta = zoo.load_model(ref)
        model.float().eval()
        trained_on = str(meta.get("data", meta.get("train_data", "?")))
        saw_real = "gsc12-dev" in trained_on
        row = {"weights": str(ref), "model": model.cfg.name, "trained_on": trained_on, "saw_real_clips": saw_real,
               "held_out_speakers": evaluate(model, held)}
        if not saw_real:
            row["all_gsc12_dev"] = evaluate(model, everything)
        rows.append(row)
        print(ref, row["held_out_speakers"]["acc12"], row.get("all_gsc12_dev", {}).get("acc12"))
    command = "python -m bench.realspeech " + " ".join(sys.argv[1:] if argv is None else argv)
    path = write_results(args.out, rows, command=command.strip())
    write_markdown(rows, path.with_suffix(".md"), command.strip())
    return 0


def _fmt(ev: dict, key: str) -> str:
    lo, hi = ev[f"{key}_ci95"]
    return f"{100 * ev[key]:.1f} % ({100 * lo:.0f}-{100 * hi:.0f})"


def write_markdown(rows: list[dict], path: Path, command: str) -> None:
    from kws.fsutil import atomic_write_text

    lines = ["# Real-speech accuracy (gsc12-dev speakers never seen in training)", "",
             f"Command: `{command}`", "",
             "| weights | trained on | eval set | clips (speakers) | 12-class acc (95 % CI) | 35-class acc (95 % CI) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        for name, key in (("held-out speakers", "held_out_speakers"), ("all gsc12-dev", "all_gsc12_dev")):
            if key in r:
                ev = r[key]
                lines.append(f"| {r['weights']} | {r['trained_on']} | {name} | {ev['clips']} ({ev['speakers']}) | "
                             f"{_fmt(ev, 'acc12')} | {_fmt(ev, 'acc35')} |")
    lines += ["", "12-class: yes/no/up/down/left/right/on/off/stop/go, `_silence_`, `_unknown_` (other words), "
              "over all clips. 35-class: over the word clips; predicting `_silence_` counts as an error.", ""]
    atomic_write_text(path, "\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
