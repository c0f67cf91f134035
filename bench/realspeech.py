"""Real-speech accuracy: speaker-disjoint cross-validation of a training recipe, and the
shipped weights on held-out speakers.

Usage:
  python -m bench.realspeech cv recipes/speech_embedding_mlp.yaml   # 5 folds: train (resumable), score
  python -m bench.realspeech cv RECIPE --folds 1,2                   # some folds only (a quick look)
  python -m bench.realspeech final RECIPE                             # the recipe on every fold: weights to ship
  python -m bench.realspeech held-out [--weights REF ...]             # the 190-clip split (continuity)
  python -m bench.realspeech report                                   # results/real_speech.md from the JSON

Cross-validation (`cv`): a recipe is a train.py YAML. Its data is re-split by speaker into
5 folds (kws.data.folds: the same speaker is in one fold across corpora; five FSDD speakers
make leave-one-speaker-out). Fold k's model trains on the other folds and scores the clips
of fold k, so every real clip is scored exactly once by a model that never heard its
speaker. A recipe whose data holds no recording (synthetic speech only) trains once and is
scored on every clip of the real sets. Runs go to runs/cv/<recipe>/fold-<k>/ and resume
where a kill left them; the result is results/cv/<recipe>.json.

Figures, per real set in the data: `acc12` (12-class task, every clip, truth and prediction
mapped through kws.labels.to_12class; only for sets that hold those words), `acc35` (the
word clips, exact word; predicting `_silence_` is an error), `acc` (exact label, every clip).
Each is reported pooled over the folds with a 95 % speaker-cluster bootstrap interval, and as
the mean of the per-fold figures with a Student-t 95 % interval.

`held-out`: the earlier protocol, kept for continuity: the 190 clips of the 14 test speakers of
gsc12-dev's seeded speaker-disjoint folder split; 95 % Wilson intervals.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bench.stats import cluster_bootstrap_interval, t_interval, wilson_interval
from kws.labels import GSC12_WORDS, SILENCE, to_12class
from kws import paths

GSC12_DEV = paths.GSC12_DEV
HELD_OUT = f"folder:{GSC12_DEV}"
ALL_CLIPS = f"gsc:{GSC12_DEV}"
FOLDS = 5
RESULTS = paths.RESULTS
# Where a synthetic-only recipe is scored: every clip of these, none of which it trained on.
REAL_SETS = ("gsc12-dev", "fsdd-dev")


# --------------------------------------------------------------------------- predictions

@torch.no_grad()
def predict(model, waves: np.ndarray, batch: int = 128) -> np.ndarray:
    """Top-1 output index of each int16 clip (the PyTorch model, eval mode)."""
    from kws.audio import from_int16

    model.eval()
    out = []
    for i in range(0, len(waves), batch):
        x = torch.from_numpy(from_int16(waves[i:i + batch]))
        out.append(model(x).argmax(-1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def clip_rows(model, clips, part_names: Sequence[str], fold: str) -> list[dict[str, Any]]:
    """One row per clip: where it is from, who said it, what it is, what the model said."""
    pred = predict(model, clips.waves)
    rows = []
    for i, p in enumerate(pred):
        truth = clips.labels[clips.y[i]]
        speaker = clips.speakers[i] or f"clip:{clips.files[i]}"  # silence clips: each its own cluster
        rows.append({"kind": "clip", "part": part_names[i], "fold": fold, "file": clips.files[i],
                     "speaker": speaker, "truth": truth, "pred": model.labels[int(p)]})
    return rows


# --------------------------------------------------------------------------- figures

def _metric_masks(rows: Sequence[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metric -> (which clips count, which are right)."""
    truth = [r["truth"] for r in rows]
    pred = [r["pred"] for r in rows]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if set(truth) & set(GSC12_WORDS):  # the 12-class task only where its words were said
        ok = np.array([to_12class(t) == to_12class(p) for t, p in zip(truth, pred)])
        out["acc12"] = (np.ones(len(rows), bool), ok)
    words = np.array([t != SILENCE for t in truth])
    exact = np.array([t == p for t, p in zip(truth, pred)])
    if words.any() and not words.all():
        out["acc35"] = (words, exact)
    out["acc"] = (np.ones(len(rows), bool), exact)
    return out


def summarize(rows: Sequence[dict], seed: int = 0) -> list[dict[str, Any]]:
    """Per (part, metric): pooled accuracy + speaker-cluster bootstrap CI, per-fold figures + t CI."""
    by_part: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_part[r["part"]].append(r)
    out = []
    for part, prs in by_part.items():
        for metric, (use, ok) in _metric_masks(prs).items():
            sel = [r for r, u in zip(prs, use) if u]
            hit = ok[use]
            folds = sorted({r["fold"] for r in sel})
            per_fold = [float(np.mean([h for r, h in zip(sel, hit) if r["fold"] == f])) for f in folds]
            mean, lo, hi = t_interval(per_fold)
            out.append({
                "kind": "summary", "part": part, "metric": metric, "clips": int(len(sel)),
                "speakers": len({r["speaker"] for r in sel if not r["speaker"].startswith("clip:")}),
                "pooled": float(hit.mean()),
                "pooled_ci95": cluster_bootstrap_interval(hit, [r["speaker"] for r in sel], seed=seed),
                "folds": dict(zip(folds, per_fold)), "fold_mean": mean, "fold_mean_ci95": [lo, hi],
            })
    return out


# --------------------------------------------------------------------------- cross-validation

def load_recipe(path: str | Path):
    from training.config import resolve

    return resolve({}, path)


def run_dir_complete(run: Path) -> bool:
    return (run / "report.json").is_file()


def fold_dir(runs_dir: Path, recipe: str, fold: str) -> Path:
    return runs_dir / recipe / ("all" if fold == "all" else f"fold-{fold.split('/')[0]}")


def resolve_init(cfg, fold: str, runs_dir: Path):
    """`init_from` / `teacher: cv:<recipe>` name the same fold's run of another recipe (the frozen
    head a fine-tuning recipe starts from, the teacher a student distils), so that fold k's model
    never builds on fold k's speakers. A recipe without recordings has one run (`all`), which
    serves every fold."""
    out = {}
    for key in ("init_from", "teacher"):
        ref = getattr(cfg, key) or ""
        if not ref.startswith("cv:"):
            continue
        name = ref[3:]
        base = fold_dir(runs_dir, name, fold)
        single = fold_dir(runs_dir, name, "all")
        if not run_dir_complete(base) and run_dir_complete(single) and not list((runs_dir / name).glob("fold-*")):
            base = single
        if not run_dir_complete(base):
            raise SystemExit(f"{key} {ref}: fold {fold} of that recipe is not trained yet ({base}); "
                             f"run `python -m bench.realspeech cv recipes/{name}.yaml` first")
        out[key] = str(base)
    return dataclasses.replace(cfg, **out) if out else cfg


# Settings a finished run may differ in and still be the recipe's run (they change no number).
NEUTRAL = {"threads", "progress", "workers", "pin_memory", "device", "out", "max_minutes"}


def check_finished_run(cfg, fold: str, run: Path) -> None:
    """A finished fold is reused only if it ran this recipe on the same data; else it must be redone."""
    from kws.data import open_source
    from kws.fsutil import read_json
    from training.config import load_run_config
    from training.trainer import data_keys

    saved = load_run_config(run).to_dict()
    want = dataclasses.replace(cfg, fold=fold).to_dict()
    differ = sorted(k for k in want if k not in NEUTRAL and saved.get(k) != want[k])
    now = data_keys(open_source(cfg.data, labels=cfg.labels, seed=cfg.seed, fold=fold, cache_dir=cfg.cache_dir))
    seen = read_json(run / "report.json", "run report").get("data_keys")
    if differ or seen != now:
        why = f"settings {', '.join(differ)} differ" if differ else "its clips differ (data changed since it ran)"
        raise SystemExit(f"{run}: a finished run of another recipe or data ({why}); remove it to retrain this fold")


def train_fold(cfg, fold: str, out: Path, threads: int = 0) -> Path:
    """Train one fold into `out`, or finish it if a kill left it half done."""
    from training.state import STATE_FILE
    from training.trainer import resume_config, train

    if run_dir_complete(out):
        check_finished_run(cfg, fold, out)
        return out
    if (out / STATE_FILE).is_file():
        over = {"threads": threads} if threads else {}
        return train(resume_config(out, over), resume=out)
    if out.exists():  # killed before its first epoch ended: nothing to keep
        import shutil

        shutil.rmtree(out)
    run_cfg = dataclasses.replace(cfg, fold=fold, out=str(out), **({"threads": threads} if threads else {}))
    return train(run_cfg)


def score_run(cfg, run: Path, fold: str) -> list[dict[str, Any]]:
    """Clip rows of the recorded parts' test clips of `fold` (for `all`: every clip of the real sets)."""
    import zoo
    from kws.data import SHORTCUTS, open_source

    model, _ = zoo.load_model(run)
    if fold != "all":
        src = open_source(cfg.data, labels=cfg.labels, seed=cfg.seed, fold=fold)
        test = src.split("test")
        part_idx = src.part_of("test")
        keep = [i for i, j in enumerate(part_idx) if j >= 0 and src.parts[j].recorded]
        names = [src.parts[part_idx[i]].name for i in keep]
        return clip_rows(model, _subset(test, keep), names, fold)
    rows = []
    for name in REAL_SETS:
        spec = SHORTCUTS[name]
        if not Path(spec.partition(":")[2]).is_dir():
            continue
        src = open_source(spec, labels=cfg.labels, seed=cfg.seed)
        sets = [src.split(s) for s in ("train", "validation", "test")]
        for cs in sets:
            if len(cs):
                rows += clip_rows(model, cs, [name] * len(cs), fold)
    return rows


def _subset(cs, idx: Sequence[int]):
    """A view of some clips of a ClipSet (rows read into memory)."""
    from kws.data.cache import ClipSet
    from kws.data.views import LabelView

    idx = np.asarray(idx, dtype=np.int64)
    return ClipSet(np.asarray(cs.waves[idx]), [cs.words[i] for i in idx], [cs.files[i] for i in idx],
                   [cs.speakers[i] for i in idx], LabelView(cs.labels), name=cs.name)


def cross_validate(recipe: Path, folds: Sequence[int] | None = None, runs_dir: Path = paths.RUNS / "cv",
                   threads: int = 0, out: Path | None = None, command: str = "") -> Path:
    from kws.data import parse_spec
    from kws.runinfo import write_results

    cfg = load_recipe(recipe)
    name = recipe.stem
    recorded = any(p.kind != "synth" for p in parse_spec(cfg.data))
    todo = [f"{k}/{FOLDS}" for k in (folds or range(1, FOLDS + 1))] if recorded else ["all"]
    rows: list[dict[str, Any]] = []
    for fold in todo:
        run = fold_dir(runs_dir, name, fold)
        print(f"== {name}: fold {fold} -> {run}", flush=True)
        train_fold(resolve_init(cfg, fold, runs_dir), fold, run, threads)
        rows += score_run(cfg, run, fold)
    summary = summarize(rows)
    for s in summary:
        print(f"{s['part']:>14} {s['metric']:>5}: {100 * s['pooled']:.1f} % "
              f"({100 * s['pooled_ci95'][0]:.1f}-{100 * s['pooled_ci95'][1]:.1f}), fold mean "
              f"{100 * s['fold_mean']:.1f} %, {s['clips']} clips", flush=True)
    path = out or RESULTS / "cv" / f"{name}.json"
    return write_results(path, summary + rows, command=command or None, recipe=str(recipe),
                         recipe_config=cfg.to_dict(), folds=todo, protocol=__doc__.split("\n\n")[2])


# --------------------------------------------------------------------------- held-out (continuity)

def evaluate_held_out(model, clips) -> dict:
    pred = [model.labels[i] for i in predict(model, np.asarray(clips.waves))]
    truth = [clips.labels[i] for i in clips.y]
    k12 = sum(to_12class(t) == to_12class(p) for t, p in zip(truth, pred))
    words = [i for i, w in enumerate(truth) if w != SILENCE]
    k35 = sum(pred[i] == truth[i] for i in words)
    return {"clips": len(truth), "word_clips": len(words), "speakers": len(set(clips.speakers)),
            "acc12": k12 / len(truth), "acc12_ci95": wilson_interval(k12, len(truth)),
            "acc35": k35 / max(len(words), 1), "acc35_ci95": wilson_interval(k35, len(words))}


def heard_held_out_speakers(training_data: str) -> bool:
    """Whether data of that spec holds the 14 held-out speakers: gsc12-dev read as a whole (the
    `gsc12-dev` shortcut or `gsc:` of it: its own split, or a CV fold of it) rather than through the
    `folder:` split that defined them."""
    for part in training_data.split("+"):
        spec = part.rsplit("*", 1)[0].strip()
        if spec == "gsc12-dev" or (spec.startswith("gsc:") and Path(spec[4:]).name == GSC12_DEV.name):
            return True
    return False


def held_out(weights: Sequence[str], out: Path, command: str) -> Path:
    import zoo
    from kws.data import open_source
    from kws.runinfo import write_results
    from zoo.meta import CheckpointMeta

    held = open_source(HELD_OUT, labels="35s").split("test")
    everything = open_source(ALL_CLIPS, labels="35s").split("test")
    rows = []
    for ref in weights:
        model, meta = zoo.load_model(ref)
        model.float().eval()
        trained_on = CheckpointMeta.from_dict(meta).training_data or "?"
        saw_real = any(s in trained_on for s in ("gsc12-dev", "fsdd", "gsc-v1", "folder:", "gsc:"))
        if heard_held_out_speakers(trained_on):
            print(f"{ref}: its training data ({trained_on}) holds gsc12-dev speakers of the held-out split: "
                  f"no held-out figure (its recipe's cross-validation gives the comparable one)", flush=True)
            continue
        row = {"weights": str(ref), "model": model.cfg.name, "trained_on": trained_on, "saw_real_clips": saw_real,
               "held_out_speakers": evaluate_held_out(model, held)}
        if not saw_real:
            row["all_gsc12_dev"] = evaluate_held_out(model, everything)
        rows.append(row)
        print(ref, row["held_out_speakers"]["acc12"], row.get("all_gsc12_dev", {}).get("acc12"), flush=True)
    return write_results(out, rows, command=command)


# --------------------------------------------------------------------------- report

def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _ci(ci: Sequence[float]) -> str:
    return f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}"


METRIC_NAMES = {"acc12": "12-class, every clip", "acc35": "35-class, word clips", "acc": "exact label, every clip"}


def report(results: Path = RESULTS, out: Path | None = None) -> Path:
    """results/real_speech.md from results/cv/*.json and results/real_speech.json."""
    from kws.fsutil import atomic_write_text

    lines = ["# Real-speech accuracy", "",
             "Every figure is on real recordings of speakers the model never heard in training. Rebuilt by "
             "`python -m bench.realspeech report` from the JSON files named below.", ""]
    # each result read once: with its clip rows a file is megabytes
    cv_docs = {f: json.loads(f.read_text()) for f in sorted((results / "cv").glob("*.json"))}
    if cv_docs:
        lines += ["## Speaker-disjoint cross-validation of each recipe", "",
                  __doc__.split("\n\n")[2].replace("\n", " "), "",
                  "| recipe | model | real set | figure | clips (speakers) | pooled (95 % speaker bootstrap) "
                  "| fold mean (95 % t) | folds |", "|---|---|---|---|---|---|---|---|"]
        for doc in cv_docs.values():
            md, res = doc["metadata"], [r for r in doc["results"] if r.get("kind") == "summary"]
            model = md.get("recipe_config", {}).get("model", "?")
            for r in res:
                folds = ", ".join(f"{_pct(v)}" for v in r["folds"].values()) if len(r["folds"]) > 1 else "one model"
                mean = f"{_pct(r['fold_mean'])} ({_ci(r['fold_mean_ci95'])})" if len(r["folds"]) > 1 else "–"
                lines.append(f"| [{Path(md['recipe']).stem}]({Path(md['recipe']).as_posix()}) | {model} | {r['part']} | "
                             f"{METRIC_NAMES[r['metric']]} | {r['clips']} ({r['speakers']}) | {_pct(r['pooled'])} "
                             f"({_ci(r['pooled_ci95'])}) | {mean} | {folds} |")
        lines += ["", "Commands and commits: " + "; ".join(
            f"`{doc['metadata']['command']}` at {doc['metadata']['git'].get('commit', '?')[:10]} "
            f"({f.relative_to(results.parent)})" for f, doc in cv_docs.items()), ""]
    legacy = results / "real_speech.json"
    if legacy.is_file():
        doc = json.loads(legacy.read_text())
        lines += ["## Shipped weights on gsc12-dev's 14 held-out speakers (190 clips)", "",
                  "The earlier protocol, kept for continuity: a seeded speaker-disjoint split of gsc12-dev, test "
                  "speakers only; 95 % Wilson intervals (clips of one speaker are not independent, so these are "
                  "too narrow).", "",
                  f"Command: `{doc['metadata']['command']}` at {doc['metadata']['git'].get('commit', '?')[:10]}", ""]
        if not doc["results"]:
            lines.append("No shipped file qualifies: each trained on some of these speakers (its cross-validation "
                         "folds mix them with the others), so the next section scores its recipe's fold models instead.")
        else:
            lines += ["| weights | trained on | eval set | clips (speakers) | 12-class (95 % CI) | 35-class (95 % CI) |",
                      "|---|---|---|---|---|---|"]
        for r in doc["results"]:
            for title, key in (("held-out speakers", "held_out_speakers"), ("all gsc12-dev", "all_gsc12_dev")):
                if key in r:
                    ev = r[key]
                    lines.append(f"| {r['weights']} | {r['trained_on']} | {title} | {ev['clips']} ({ev['speakers']}) | "
                                 f"{_pct(ev['acc12'])} ({_ci(ev['acc12_ci95'])}) | "
                                 f"{_pct(ev['acc35'])} ({_ci(ev['acc35_ci95'])}) |")
        lines.append("")
    lines += _cv_on_held_out(list(cv_docs.values()))
    path = out or results / "real_speech.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _clip_key(file: str) -> str:
    """<word>/<file name>: the same clip whichever source (folder: or gsc:) listed it."""
    return "/".join(Path(file).parts[-2:])


def _cv_on_held_out(cv_docs: Sequence[dict]) -> list[str]:
    """Each cross-validated recipe on the 190 clips of the earlier protocol, from its CV predictions.

    A model trained on every fold has heard those speakers, so its own 190-clip figure would be a
    training-set figure; the recipe's fold models never heard them, so their predictions on those
    clips are the comparable number."""
    if not GSC12_DEV.is_dir():
        return []
    from kws.data import open_source

    held = {_clip_key(f) for f in open_source(HELD_OUT, labels="35s").split("test").files}
    lines = []
    for doc in cv_docs:
        # a CV result's clip rows are all unseen-speaker predictions (a synthetic-only recipe's "all" too)
        rows = [r for r in doc["results"] if r.get("kind") == "clip" and r["part"] == "gsc12-dev"
                and _clip_key(r["file"]) in held]
        if len({_clip_key(r["file"]) for r in rows}) < len(held):  # only a full CV scored every one of them
            continue
        masks = _metric_masks(rows)
        cells = []
        for metric in ("acc12", "acc35"):
            if metric not in masks:  # a one-fold result may hold few of those clips
                cells.append("–")
                continue
            use, ok = masks[metric]
            k, n = int(ok[use].sum()), int(use.sum())
            cells.append(f"{_pct(k / n)} ({_ci(wilson_interval(k, n))})")
        lines.append(f"| {Path(doc['metadata']['recipe']).stem} (its fold models) | {len(rows)} "
                     f"({len({r['speaker'] for r in rows if not r['speaker'].startswith('clip:')})}) | "
                     f"{cells[0]} | {cells[1]} |")
    if not lines:
        return []
    return ["## Cross-validated recipes on the same 190 clips", "",
            "Each clip scored by the fold model that never heard its speaker (from results/cv/); the shipped "
            "model of a recipe trains on every fold, these speakers included, so this is the recipe's "
            "comparable figure. 95 % Wilson intervals.", "",
            "| recipe | clips (speakers) | 12-class (95 % CI) | 35-class (95 % CI) |", "|---|---|---|---|",
            *lines, ""]


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.realspeech", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    cv = sub.add_parser("cv", help="cross-validate a recipe (train every fold, score held-out speakers)")
    cv.add_argument("recipe", type=Path)
    cv.add_argument("--folds", help="comma-separated fold numbers (default: all 5)")
    cv.add_argument("--runs-dir", type=Path, default=paths.RUNS / "cv")
    cv.add_argument("--threads", type=int, default=0, help="torch threads for training (0: torch's default)")
    cv.add_argument("--out", type=Path, help="result JSON (default results/cv/<recipe>.json)")
    fi = sub.add_parser("final", help="train the recipe on every fold (nothing held out): the weights to ship")
    fi.add_argument("recipe", type=Path)
    fi.add_argument("--runs-dir", type=Path, default=paths.RUNS / "cv")
    fi.add_argument("--threads", type=int, default=0)
    ho = sub.add_parser("held-out", help="shipped weights on gsc12-dev's 190 held-out clips")
    ho.add_argument("--weights", action="append", help="zoo name, run folder or .safetensors (repeatable)")
    ho.add_argument("--out", type=Path, help="result JSON (default results/real_speech.json)")
    sub.add_parser("report", help="rebuild results/real_speech.md from the JSON files")
    args = ap.parse_args(argv)
    command = "python -m bench.realspeech " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.cmd == "report":
        print(report())
        return 0
    if not GSC12_DEV.is_dir():
        print(f"bench.realspeech: {GSC12_DEV} not found (real speech is read from ../shared/data)", file=sys.stderr)
        return 1
    if args.cmd in ("cv", "final") and not args.recipe.is_file():
        print(f"bench.realspeech: {args.recipe}: recipe not found", file=sys.stderr)
        return 2
    if args.cmd == "final":
        cfg = load_recipe(args.recipe)
        run = fold_dir(args.runs_dir, args.recipe.stem, "all")
        print(train_fold(resolve_init(cfg, "all", args.runs_dir), "all", run, args.threads))
        return 0
    if args.cmd == "cv":
        folds = [int(k) for k in args.folds.split(",")] if args.folds else None
        print(cross_validate(args.recipe, folds, args.runs_dir, args.threads, args.out, command))
    else:
        import zoo

        print(held_out(args.weights or zoo.shipped_models(), args.out or RESULTS / "real_speech.json", command))
    if args.out is None:  # the project's results changed: rebuild their report (not for a result kept elsewhere)
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
