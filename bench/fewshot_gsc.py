"""Few-shot learning curves on real Speech Commands speakers: gsc12-dev's rare words from k recordings.

Usage:
  python -m bench.fewshot_gsc run                  # the rare words with >= 7 clips, k = 1 5, 5 draws each
  python -m bench.fewshot_gsc report               # results/fewshot_gsc.md and .png from the JSON

Protocol (../shared/data/gsc12-dev). Its 25 "other" words have 2-12 clips each, one per speaker
(104 speakers in all), so a word cannot be learnt from one speaker's takes as FSDD's digits are
(bench.fewshot): here k recordings of a word are k speakers saying it once. The words: every
rare word with at least MIN_CLIPS clips (k + 1 for training and checkpoint, at least one left to
test at k = 5). For each k and draw d: per word, k clips by distinct speakers to train on
(`train:`) and one by another speaker for the checkpoint (`val:`), drawn at random (seeded by
k and d). Test: every clip of these words whose speaker said none of the draw's training or
checkpoint clips (of any word), so no test speaker is heard in training. Arms and labels as
bench.fewshot: `synth` adds 200 synthetic clips of each word (`--synth-words auto`), `real` has
the recordings only, both the same synthetic negatives; `synth-only` trains on synthetic speech
alone and is scored on every clip. Exact accuracy over the words, `_silence_` and `_unknown_`.

k = 10 and 25 cannot be measured here: no rare word has more than 12 clips, so after 10 for
training and one for the checkpoint at most one would be left to test, for two words only.

Runs go to runs/fewshot-gsc/<arm>-d<d>-k<k>/; a finished one is reused.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.fewshot import (ARMS, RECIPE, SYNTH_ONLY, ReportText, add_run_arguments, link_files, parse_arms, report,
                           speaker_rows, train_and_score)
from kws import paths
from kws.data.splits import speaker_of
from kws.labels import GSC12_WORDS

RESULTS = paths.RESULTS / "fewshot_gsc.json"
KS = (1, 5)
DRAWS = 5
MIN_CLIPS = 7  # k = 5 for training, 1 for the checkpoint, >= 1 left to test
SEED = 0

GSC_TEXT = ReportText(
    title="Few-shot learning curves on real speakers: gsc12-dev's rare words from k recordings",
    protocol=("gsc12-dev's rare words with at least 7 clips (one clip per speaker). Per draw: k clips of each "
              "word by distinct speakers to train on, one more for the checkpoint, both drawn at random; test on "
              "every clip of these words by a speaker heard nowhere in the draw's training or checkpoint clips. "
              "5 draws per k. `synth`: plus 200 synthetic clips of each word (`--synth-words auto`); `real`: the "
              "recordings only; `synth-only`: no recording at all (scored on every clip). Same labels (the "
              "words, `_silence_`, `_unknown_`) and synthetic negatives in every arm; exact accuracy. Model: "
              "recipes/custom_words.yaml (speech_embedding_mlp, frozen backbone)."),
    groups="draws", group_mean="mean over draws",
    xlabel="recordings per word, each by another speaker (k)",
    plot_title="New words from a few recordings (gsc12-dev rare words)",
    caption=("Few-shot learning curves on gsc12-dev's rare words: accuracy on unheard speakers against k "
             "recordings per word, with and without synthetic examples (95 % CI bands)"),
    notes=("", "k = 10 and 25 are not measured: no rare word in gsc12-dev has more than 12 clips "
               "(after 10 for training and one for the checkpoint, at most one would be left to test)."),
    tool="python -m bench.fewshot_gsc")


def rare_words(root: Path, min_clips: int = MIN_CLIPS) -> dict[str, list[Path]]:
    """word -> its clips, for the words outside the 12-class task with at least `min_clips` clips."""
    from kws.data import DataError

    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        files = sorted(d.glob("*.wav"))
        if d.name not in GSC12_WORDS and len(files) >= min_clips:
            out[d.name] = files
    if not out:
        raise DataError(f"{root}: no word outside the 12-class task has {min_clips} or more clips")
    for files in out.values():
        for f in files:
            if speaker_of(f.stem) is None:
                raise DataError(f"{f}: expected <speaker>_nohash_<n>.wav (the Speech Commands layout)")
    return out


@dataclasses.dataclass(frozen=True)
class Draw:
    train: dict[str, list[Path]]
    val: dict[str, list[Path]]
    heard: frozenset[str]  # every speaker of the training and checkpoint clips


def draw(words: dict[str, list[Path]], k: int, d: int, seed: int = SEED) -> Draw:
    """Per word, k training clips by distinct speakers and one checkpoint clip by another."""
    rng = np.random.default_rng([seed, k, d])
    train, val, heard = {}, {}, set()
    for word, files in words.items():
        picks: list[Path] = []
        for i in rng.permutation(len(files)):
            if speaker_of(files[i].stem) not in {speaker_of(p.stem) for p in picks}:
                picks.append(files[i])
            if len(picks) == k + 1:
                break
        if len(picks) < k + 1:
            raise ValueError(f"{word}: {len(files)} clips hold fewer than {k + 1} speakers")
        train[word], val[word] = picks[:k], picks[k:]
        heard |= {speaker_of(p.stem) for p in picks}
    return Draw(train, val, frozenset(heard))  # type: ignore[arg-type]


def measure(root: Path = paths.GSC12_DEV, ks: Sequence[int] = KS, draws: int = DRAWS,
            arms: Sequence[str] = (*ARMS, SYNTH_ONLY), recipe: Path = RECIPE, runs: Path = paths.RUNS / "fewshot-gsc",
            overrides: dict[str, Any] | None = None, min_clips: int = MIN_CLIPS) -> list[dict[str, Any]]:
    """One row per (arm, draw, k) and test speaker: see the module doc."""
    from kws.data.custom import say_spec
    from training.config import resolve

    words = rare_words(root, min_clips)
    base = resolve({**(overrides or {})}, recipe)
    negatives = "synth" if base.negatives == "auto" else base.negatives  # the same negatives in every arm
    test_root = link_files(words, runs / "test")
    jobs = [(arm, d, k) for k in ks for d in range(draws) for arm in arms if arm != SYNTH_ONLY]
    jobs += [(SYNTH_ONLY, -1, 0)] if SYNTH_ONLY in arms else []
    clips: dict[tuple[str, ...], Any] = {}
    rows: list[dict[str, Any]] = []
    for n, (arm, d, k) in enumerate(jobs, 1):
        if arm == SYNTH_ONLY:
            folder, heard = runs / SYNTH_ONLY, frozenset()
            cfg = dataclasses.replace(base, data=say_spec(sorted(words), base.synth_per_word), synth_words="",
                                      negatives=negatives, out=str(folder / "run"))
        else:
            pick = draw(words, k, d)
            folder, heard = runs / f"{arm}-d{d}-k{k}", pick.heard
            data = f"train:{link_files(pick.train, folder / 'train')}+val:{link_files(pick.val, folder / 'val')}"
            cfg = dataclasses.replace(base, data=data, synth_words="auto" if arm == "synth" else "",
                                      negatives=negatives, out=str(folder / "run"))
        run, hits, files, seconds = train_and_score(cfg, test_root, clips)
        who = np.array([speaker_of(Path(f).stem) for f in files])
        point = speaker_rows(hits, who, heard, arm=arm, train_speaker=None if d < 0 else f"draw {d}", k=k,
                             heard_speakers=len(heard), seconds=seconds, run=str(run))
        rows += point
        n_clips, n_hits = sum(r["clips"] for r in point), sum(r["correct"] for r in point)
        print(f"[{n}/{len(jobs)}] {arm} {'all' if d < 0 else f'draw {d}'} k={k}: {n_hits / n_clips:.3f} on {n_clips} "
              f"clips of {len(point)} unheard speakers{'' if seconds is None else f' ({seconds:.0f} s)'}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    from kws.data import DataError
    from kws.runinfo import write_results
    from training.config import ConfigError

    p = argparse.ArgumentParser(prog="python -m bench.fewshot_gsc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and score every point (reuses finished runs)")
    r.add_argument("--data", type=Path, default=paths.GSC12_DEV, help="a Speech Commands layout (default gsc12-dev)")
    r.add_argument("--k", default=",".join(map(str, KS)), help="recordings per word, comma-separated")
    r.add_argument("--draws", type=int, default=DRAWS)
    add_run_arguments(r, paths.RUNS / "fewshot-gsc", RESULTS)
    rp = sub.add_parser("report", help="Markdown table and plot from the JSON")
    rp.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    try:
        if args.command == "report":
            for path in report(args.results, GSC_TEXT):
                print(path)
            return 0
        if not args.data.is_dir():
            raise DataError(f"{args.data}: not found (gsc12-dev lives in ../shared/data/gsc12-dev)")
        arms = parse_arms(args.arms)
        ks = [int(k) for k in args.k.split(",") if k]
        if max(ks) + 2 > MIN_CLIPS:
            raise ConfigError(f"k = {max(ks)}: the rare words have {MIN_CLIPS} clips at the least, so k <= "
                              f"{MIN_CLIPS - 2} (one clip for the checkpoint, one to test)")
        rows = measure(args.data, ks, args.draws, arms, args.recipe, args.runs,
                       {"threads": args.threads, "progress": False, "cache_dir": args.cache_dir})
        words = rare_words(args.data)
        command = "python -m bench.fewshot_gsc " + " ".join(argv if argv is not None else sys.argv[1:])
        print(write_results(args.out, rows, command=command, words=len(words), word_list=sorted(words),
                            clips_per_word={w: len(f) for w, f in words.items()}, draws=args.draws,
                            recipe=str(args.recipe)))
        report(args.out, GSC_TEXT)
    except (DataError, ConfigError, ValueError) as e:
        print(f"python -m bench.fewshot_gsc: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
