"""Few-shot learning curves: new words from k recordings of one speaker, scored on the others.

Usage:
  python -m bench.fewshot run                        # FSDD, every speaker, k = 1 5 10 25 (+ synthetic only)
  python -m bench.fewshot run --speakers george --k 10 --arms synth   # one point (a quick look)
  python -m bench.fewshot report                     # results/fewshot_fsdd.md and .png from the JSON

Protocol (FSDD, ../shared/data/fsdd-dev: 5 speakers, 50 takes of each digit each). For each
training speaker s and k: train on takes 0..k-1 of every digit by s (`train:`), pick the
checkpoint on takes 40..49 by s (`val:`: s's own voice, never a test clip), and score all 50
takes of every digit by each of the other four speakers (2,000 clips). Speakers in training
and test never overlap. Two arms, same labels (the ten digits, `_silence_`, `_unknown_`) and
the same synthetic negatives (other words as `_unknown_`, kws.data.custom):
- `synth`: the recipe as a user runs it (recipes/custom_words.yaml: --synth-words auto), so
  200 synthetic clips of each digit join the k recordings;
- `real`: no synthetic examples of the digits, only the k recordings.
And `synth-only` (k = 0): synthetic digits and negatives only, checkpoint on synthetic
validation clips, scored on every take of every speaker (no real clip anywhere in training
or model selection).

Accuracy is exact: a digit clip called `_unknown_` or `_silence_` is wrong. Each point is
reported pooled over its training speakers (95 % interval: bootstrap over test speakers),
and as the mean of the per-training-speaker figures with a Student-t 95 % interval. Each
run's wall time (data preparation, feature cache, training) is recorded; the first run of a
fresh cache (`--cache-dir`) includes generating the synthetic speech.

Runs go to runs/fewshot/<arm>-<speaker>-k<k>/; a finished one is reused.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.stats import cluster_bootstrap_interval, t_interval
from kws import paths

FSDD = paths.FSDD_DEV
RECIPE = paths.RECIPES / "custom_words.yaml"
RESULTS = paths.RESULTS / "fewshot_fsdd.json"
KS = (1, 5, 10, 25)
ARMS = ("synth", "real")
SYNTH_ONLY = "synth-only"
VAL_TAKES = range(40, 50)  # the training speaker's held-back takes: model selection only


def speaker_of(path: str) -> str:
    """FSDD's `<speaker>_<n>.wav` -> speaker."""
    return Path(path).name.rsplit("_", 1)[0]


def take_of(path: str) -> int:
    return int(Path(path).stem.rsplit("_", 1)[1])


def recordings(root: Path) -> dict[str, dict[str, dict[int, Path]]]:
    """speaker -> word -> take -> file, for `root/<word>/<speaker>_<take>.wav`."""
    from kws.data import DataError

    out: dict[str, dict[str, dict[int, Path]]] = defaultdict(lambda: defaultdict(dict))
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for f in sorted(word_dir.glob("*.wav")):
            try:
                out[speaker_of(f.name)][word_dir.name][take_of(f.name)] = f
            except (IndexError, ValueError):
                raise DataError(f"{f}: expected <speaker>_<take>.wav (the FSDD layout)") from None
    if not out:
        raise DataError(f"{root}: no <word>/<speaker>_<take>.wav recordings")
    return {s: dict(w) for s, w in out.items()}


def link_files(files: dict[str, Sequence[Path]], out: Path) -> Path:
    """`out/<word>/<file>` symlinks to each word's recordings (they stay where they are)."""
    for word, paths_ in files.items():
        (out / word).mkdir(parents=True, exist_ok=True)
        for f in paths_:
            dst = out / word / f.name
            if not dst.is_symlink():
                os.symlink(f.resolve(), dst)
    return out


def link_takes(rec: dict[str, dict[int, Path]], takes: Sequence[int], out: Path) -> Path:
    """`out/<word>/<file>` symlinks to the chosen takes of every word."""
    from kws.data import DataError

    for word, by_take in rec.items():
        missing = [t for t in takes if t not in by_take]
        if missing:
            raise DataError(f"{out.name}: take {missing[0]} of {word!r} is missing")
    return link_files({word: [by_take[t] for t in takes] for word, by_take in rec.items()}, out)


def run_config(base, arm: str, speaker: str, k: int, rec, words: Sequence[str], runs: Path,
               val_takes: Sequence[int] = VAL_TAKES):
    """The TrainConfig of one point of the curve (its data folders laid out under runs/)."""
    from kws.data.custom import say_spec

    # every arm gets the same negatives: the recipe's "auto" would give them to the synth arm only
    negatives = "synth" if base.negatives == "auto" else base.negatives
    name = f"{SYNTH_ONLY}" if arm == SYNTH_ONLY else f"{arm}-{speaker}-k{k}"
    folder = runs / name
    if arm == SYNTH_ONLY:
        # the very build --synth-words auto makes of these words: one generation, one feature cache
        return dataclasses.replace(base, data=say_spec(sorted(words), base.synth_per_word), synth_words="",
                                   negatives=negatives, out=str(folder / "run"))
    if set(range(k)) & set(val_takes):
        raise ValueError(f"k = {k} would train on the validation takes {list(val_takes)}")
    train = link_takes(rec[speaker], range(k), folder / "train")
    val = link_takes(rec[speaker], val_takes, folder / "val")
    return dataclasses.replace(base, data=f"train:{train}+val:{val}", synth_words="auto" if arm == "synth" else "",
                               negatives=negatives, out=str(folder / "run"))


def test_clips(root: Path, labels: Sequence[str], cache_dir: str | None):
    """Every recording under root, in one split, seen through the model's labels."""
    from kws.data import open_source

    return open_source(f"val:{root}", labels=list(labels), cache_dir=cache_dir).split("validation")


def score(run: Path, clips, cfg) -> np.ndarray:
    """The run's prediction (label index into clips.labels) for every clip. The backbone is
    frozen, so its outputs come from the feature cache (computed once for all runs)."""
    import torch

    import zoo
    from kws.data.cache import cache_root
    from training.features import cached_views

    model, _ = zoo.load_model(run)
    model.float().eval()
    if tuple(model.labels) != tuple(clips.labels):
        raise ValueError(f"{run}: labels {model.labels} differ from the test clips' {clips.labels}")
    (view,) = cached_views(model, clips, cfg, None, torch.device("cpu"), cache_root(cfg.cache_dir), train=False,
                           desc="fewshot test clips")
    with torch.no_grad():
        logits = torch.cat([model.head(torch.from_numpy(np.asarray(view[i:i + 512], np.float32)))
                            for i in range(0, len(view), 512)])
    return logits.argmax(-1).numpy()


def train_and_score(cfg, test_root: Path, clips: dict[tuple[str, ...], Any]) -> tuple[Path, np.ndarray, list[str],
                                                                                   float | None]:
    """Train the point's run (or reuse it when finished) and score every clip under test_root with it:
    (run, hit per test clip, the test files, training seconds or None when reused). `clips` caches
    the test clips per label set met, so the test set is decoded once per label set."""
    from bench.realspeech import run_dir_complete
    from training.trainer import train

    run = Path(cfg.out)
    t0 = time.monotonic()
    reused = run_dir_complete(run)
    if not reused:
        train(cfg)
    seconds = None if reused else round(time.monotonic() - t0, 1)
    labels = _labels_of(run)
    if labels not in clips:
        clips[labels] = test_clips(test_root, labels, cfg.cache_dir)
    hits = score(run, clips[labels], cfg) == np.asarray(clips[labels].y)
    return run, hits, list(clips[labels].files), seconds


def speaker_rows(hits: np.ndarray, who: np.ndarray, heard: set[str] | frozenset[str], **point: Any) -> list[dict]:
    """One row per test speaker not in `heard`: the point's fields, its clips and hits."""
    return [{**point, "test_speaker": s, "clips": int((who == s).sum()), "correct": int(hits[who == s].sum()),
             "accuracy": float(hits[who == s].mean())} for s in sorted(set(who) - set(heard))]


def measure(root: Path = FSDD, speakers: Sequence[str] | None = None, ks: Sequence[int] = KS,
            arms: Sequence[str] = (*ARMS, SYNTH_ONLY), recipe: Path = RECIPE, runs: Path = paths.RUNS / "fewshot",
            overrides: dict[str, Any] | None = None, val_takes: Sequence[int] = VAL_TAKES) -> list[dict[str, Any]]:
    """One row per (arm, training speaker, k) and per test speaker: see the module doc."""
    from training.config import resolve

    rec = recordings(root)
    words = sorted({w for s in rec.values() for w in s})
    speakers = list(speakers or sorted(rec))
    base = resolve({**(overrides or {})}, recipe)
    clips: dict[tuple[str, ...], Any] = {}  # the test clips through each label set met
    rows = []
    jobs = [(arm, s, k) for k in ks for s in speakers for arm in arms if arm != SYNTH_ONLY]
    jobs += [(SYNTH_ONLY, "", 0)] if SYNTH_ONLY in arms else []
    for n, (arm, speaker, k) in enumerate(jobs, 1):
        cfg = run_config(base, arm, speaker, k, rec, words, runs, val_takes)
        run, hits, files, seconds = train_and_score(cfg, root, clips)
        who = np.array([speaker_of(f) for f in files])
        point = speaker_rows(hits, who, {speaker}, arm=arm, train_speaker=speaker or None, k=k, seconds=seconds,
                             run=str(run))
        rows += point
        acc = np.mean([r["accuracy"] for r in point])
        print(f"[{n}/{len(jobs)}] {arm} {speaker or 'all'} k={k}: {acc:.3f} on other speakers"
              f"{'' if seconds is None else f' ({seconds:.0f} s)'}", flush=True)
    return rows


def _labels_of(run: Path) -> tuple[str, ...]:
    from kws.labels import load_labels

    return tuple(load_labels(run))


def summarize(rows: Sequence[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Per (arm, k): pooled accuracy with a test-speaker bootstrap CI, and the mean over
    training speakers with a t interval."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["arm"], r["k"])].append(r)
    out = []
    for (arm, k), rs in sorted(groups.items(), key=lambda t: (t[0][0], t[0][1])):
        hits = np.concatenate([np.r_[np.ones(r["correct"], bool), np.zeros(r["clips"] - r["correct"], bool)]
                               for r in rs])
        who = [r["test_speaker"] for r in rs for _ in range(r["clips"])]
        by_train: dict[Any, list[dict]] = defaultdict(list)
        for r in rs:
            by_train[r["train_speaker"]].append(r)
        per = [sum(r["correct"] for r in v) / sum(r["clips"] for r in v) for v in by_train.values()]
        mean, lo, hi = t_interval(per) if len(per) > 1 else (per[0], float("nan"), float("nan"))
        secs = [r["seconds"] for r in rs if r["seconds"] is not None]
        out.append({"arm": arm, "k": k, "train_speakers": len(by_train), "clips": int(len(hits)),
                    "pooled": float(hits.mean()), "pooled_ci95": list(cluster_bootstrap_interval(hits, who, seed=seed)),
                    "per_train_speaker": dict(zip([str(s) for s in by_train], per)), "mean": mean,
                    "mean_ci95": [lo, hi], "median_seconds": float(np.median(secs)) if secs else None,
                    "max_seconds": max(secs) if secs else None})
    return out


# --------------------------------------------------------------------------- report

@dataclass(frozen=True)
class ReportText:
    """What a learning-curve report says about its protocol (FSDD here, gsc12-dev rare words in
    bench.fewshot_gsc): the numbers and the plot come from the JSON alone."""

    title: str
    protocol: str
    groups: str  # what a summary row's groups are: training speakers, or draws of speakers
    group_mean: str
    xlabel: str
    plot_title: str
    caption: str
    notes: tuple[str, ...] = ()  # lines after the table
    tool: str = "python -m bench.fewshot"  # the module whose `report` command remakes it

def _pct(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


FSDD_TEXT = ReportText(
    title="Few-shot learning curves: new words from k recordings of one speaker (FSDD)",
    protocol=("Train on k takes of each digit by one FSDD speaker (checkpoint on 10 more of that speaker's takes), "
              "test on every take by the other four; every speaker in turn. `synth`: plus 200 synthetic clips "
              "of each digit (`--synth-words auto`); `real`: the recordings only; `synth-only`: no recording at "
              "all. Same labels (10 digits, `_silence_`, `_unknown_`) and synthetic negatives in every arm; "
              "exact accuracy (a digit called `_unknown_` is wrong). Model: recipes/custom_words.yaml "
              "(speech_embedding_mlp, frozen backbone)."),
    groups="training speakers", group_mean="mean over training speakers",
    xlabel="recordings per word from one speaker (k)", plot_title="New words from a few recordings (FSDD digits)",
    caption=("Few-shot learning curves on FSDD: accuracy on other speakers against k recordings per word from "
             "one speaker, with and without synthetic examples (95 % CI bands)"))


def report(results: Path = RESULTS, text: ReportText = FSDD_TEXT) -> tuple[Path, Path]:
    """The Markdown table and the learning-curve plot, from the JSON alone."""
    from kws.fsutil import atomic_path, atomic_write_text, read_json

    data = read_json(results)
    meta, rows = data["metadata"], data["results"]
    summary = summarize(rows)
    lines = [f"# {text.title}", "",
             f"Generated by `{text.tool} report` from `{results.name}` "
             f"(command: `{meta.get('command', '?')}`, commit {meta.get('git', {}).get('commit', '?')}).", "",
             text.protocol, "",
             f"| arm | k | {text.groups} | test clips | pooled accuracy % (95 % CI, test-speaker bootstrap) "
             f"| {text.group_mean} % (95 % t) | median / max run time, s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summary:
        lo, hi = s["pooled_ci95"]
        mlo, mhi = s["mean_ci95"]
        secs = ("–" if s["median_seconds"] is None else f"{s['median_seconds']:.0f} / {s['max_seconds']:.0f}")
        lines.append(f"| {s['arm']} | {s['k']} | {s['train_speakers']} | {s['clips']} | **{_pct(s['pooled'])}** "
                     f"({_pct(lo)}-{_pct(hi)}) | {_pct(s['mean'])} ({_pct(mlo)}-{_pct(mhi)}) | {secs} |")
    md = results.with_suffix(".md")
    png = results.with_suffix(".png")
    atomic_write_text(md, "\n".join(lines + list(text.notes)) + f"\n\n![learning curves]({png.name})\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for arm, style in (("synth", "o-"), ("real", "s--")):
        pts = [s for s in summary if s["arm"] == arm]
        if not pts:
            continue
        ks = [s["k"] for s in pts]
        ax.plot(ks, [100 * s["pooled"] for s in pts], style, label=f"{arm}: k recordings"
                + (" + synthetic" if arm == "synth" else " only"))
        ax.fill_between(ks, [100 * s["pooled_ci95"][0] for s in pts], [100 * s["pooled_ci95"][1] for s in pts],
                        alpha=0.15)
    for s in summary:
        if s["arm"] == SYNTH_ONLY:
            ax.axhline(100 * s["pooled"], color="0.4", ls=":", label=f"synthetic only: {_pct(s['pooled'])} %")
    n_words = meta.get("words")
    if n_words:
        ax.axhline(100 / n_words, color="0.8", lw=0.8, label=f"chance: 1 in {n_words}")
    ax.set_xscale("log")
    ax.set_xticks(sorted({s["k"] for s in summary if s["k"] > 0}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())  # k is labelled at its own ticks only
    ax.set_xlabel(text.xlabel)
    ax.set_ylabel("accuracy on the other speakers, %")
    ax.set_ylim(0, 100)
    ax.set_title(text.plot_title)
    ax.legend(loc="lower right", fontsize=8)
    info = {"Title": png.stem, "Description": text.caption, "Software": f"{text.tool} report",
            "Source": results.name, "Creation Time": str(meta.get("time_utc", "?")),
            "Commit": str(meta.get("git", {}).get("commit", "?"))}
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata=info)
    plt.close(fig)
    return md, png


def add_run_arguments(r: argparse.ArgumentParser, runs: Path, out: Path) -> None:
    """The `run` options every learning-curve protocol shares (this one and bench.fewshot_gsc)."""
    r.add_argument("--arms", default=",".join((*ARMS, SYNTH_ONLY)), help="synth, real, synth-only")
    r.add_argument("--recipe", type=Path, default=RECIPE)
    r.add_argument("--runs", type=Path, default=runs)
    r.add_argument("--cache-dir", default=None, help="data cache (default $KWS_CACHE or data_cache)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", type=Path, default=out)


def parse_arms(text: str) -> list[str]:
    from training.config import ConfigError

    arms = [a for a in text.split(",") if a]
    bad = sorted(set(arms) - {*ARMS, SYNTH_ONLY})
    if bad:
        raise ConfigError(f"unknown arms {bad}; expected {', '.join((*ARMS, SYNTH_ONLY))}")
    return arms


def main(argv: list[str] | None = None) -> int:
    from kws.data import DataError
    from kws.runinfo import write_results
    from training.config import ConfigError

    p = argparse.ArgumentParser(prog="python -m bench.fewshot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and score every point (reuses finished runs)")
    r.add_argument("--data", type=Path, default=FSDD, help="<word>/<speaker>_<take>.wav recordings (default FSDD)")
    r.add_argument("--speakers", default="", help="training speakers, comma-separated (default: all)")
    r.add_argument("--k", default=",".join(map(str, KS)), help="recordings per word, comma-separated")
    add_run_arguments(r, paths.RUNS / "fewshot", RESULTS)
    rp = sub.add_parser("report", help="Markdown table and plot from the JSON")
    rp.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    try:
        if args.command == "report":
            for path in report(args.results):
                print(path)
            return 0
        if not args.data.is_dir():
            raise DataError(f"{args.data}: not found (FSDD lives in ../shared/data/fsdd-dev)")
        arms = parse_arms(args.arms)
        rows = measure(args.data, [s for s in args.speakers.split(",") if s] or None,
                       [int(k) for k in args.k.split(",") if k], arms, args.recipe, args.runs,
                       {"threads": args.threads, "progress": False, "cache_dir": args.cache_dir})
        command = "python -m bench.fewshot " + " ".join(argv if argv is not None else sys.argv[1:])
        words = len({p.name for p in args.data.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))})
        print(write_results(args.out, rows, command=command, words=words, recipe=str(args.recipe.relative_to(paths.PROJECT_ROOT))
                            if args.recipe.is_relative_to(paths.PROJECT_ROOT) else str(args.recipe)))
        report(args.out)
    except (DataError, ConfigError, ValueError) as e:
        print(f"python -m bench.fewshot: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
