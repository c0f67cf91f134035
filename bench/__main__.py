"""`python -m bench`: run the benchmark suite;  `python -m bench report`: rebuild the reports.

    python -m bench --quick                       # < 5 min on 2 cores: smoke-test figures
    python -m bench                               # the full suite (publishable)
    python -m bench --data gsc12-dev --run runs/x # any data source, a trained run folder
    python -m bench --resume results/bench/<run-id>.json
    python -m bench report [results/bench/<run-id>.json ...]
    python -m bench gallery [--data SPEC] [--model NAME]   # per class: waveform, spectrum, features
    python -m bench index                         # results/README.md: every results file, from its metadata
    python -m bench negatives [--hours 2]         # build the keyword-free speech stream (cached, resumable)
    python -m bench wakeword [--models ...]       # DET curves and FA/h on it: results/wakeword.json
    python -m bench calibrate --model REF --input room.wav   # per-word thresholds refitted on your recording
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

from bench.report import RESULTS, build_report, latest_runs, read_run
from bench.suite import SECTIONS, make_config, run_suite


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="Benchmark every zoo model on every backend: "
                                "accuracy, latency, throughput, memory, streaming detection and noise robustness. "
                                "`python -m bench report [JSON ...]` rebuilds the reports from result files.")
    p.add_argument("--quick", action="store_true", help="the quick preset: 2 small models, fewer runs, "
                   "subsets, a 2-minute false-accept stream (< 5 min on 2 cores); flagged in the report")
    p.add_argument("--data", action="append", metavar="SPEC",
                   help="a kws.data source spec (repeatable; each is reported separately). Default: synth, "
                        "plus gsc12-dev when ../shared/data/gsc12-dev exists")
    p.add_argument("--split", default="test", help="the split to evaluate (default: test)")
    p.add_argument("--max-clips", type=int, help="balanced subset of at most N clips per data set")
    p.add_argument("--run", action="append", default=[], metavar="PATH",
                   help="a training run folder or .safetensors checkpoint to measure instead of that "
                        "architecture's shipped weights (repeatable)")
    p.add_argument("--models", type=_csv, help="comma-separated model names (default: all registered; "
                   "quick: the default model, dscnn and efficientnet_b0); the others get n/a rows")
    p.add_argument("--backends", type=_csv, help="comma-separated backends (default: every registered backend)")
    p.add_argument("--eval-backend", help="backend for the streaming and noise evaluations (default: ort-cpu, "
                   "the live app's default, falling back to torch-cpu)")
    p.add_argument("--eval-threads", type=int, help="threads for the streaming and noise evaluations "
                   "(default 1, the live app's default)")
    p.add_argument("--only", type=_csv, help=f"sections to run, from {','.join(SECTIONS)} (default: all)")
    p.add_argument("--threads", type=lambda s: tuple(int(x) for x in _csv(s)),
                   help="thread settings for the matrix (default: all cores and 1)")
    p.add_argument("--stream-words", type=int, help="words per streaming test stream (full: 100, quick: 30)")
    p.add_argument("--free-minutes", type=float, help="length of the keyword-free stream for false accepts "
                   "(full: 10, quick: 2; under 10 is flagged in the report)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: results/)")
    p.add_argument("--no-report", action="store_true", help="measure only; build reports later with "
                   "`python -m bench report`")
    p.add_argument("--resume", type=Path, metavar="JSON", help="continue an interrupted run with its original "
                   "settings (other arguments are ignored)")
    return p


def report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench report",
                                description="Build CSVs, plots and the Markdown report from bench JSON files.")
    p.add_argument("json", nargs="*", type=Path, help="run files (default: the newest in results/bench/); "
                   "several are merged, later files winning for the same measurement")
    p.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: results/)")
    return p


def gallery_parser() -> argparse.ArgumentParser:
    from bench.gallery import DEFAULT_MODEL, GALLERY_DIR

    p = argparse.ArgumentParser(prog="python -m bench gallery",
                                description="Per class, one real clip's waveform, spectrum and the model's own "
                                            "features, above one augmented version made by the trainer's Augmenter "
                                            "(TrainConfig defaults); one PNG per class.")
    p.add_argument("--data", metavar="SPEC", help="a kws.data spec (default: gsc12-dev when ../shared/data/gsc12-dev "
                   "exists, else synth)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="zoo model name, run folder or checkpoint whose frontend "
                   f"makes the features (default: {DEFAULT_MODEL})")
    p.add_argument("--split", default="test", help="split to take the clips from (default: test)")
    p.add_argument("--classes", type=_csv, help="comma-separated classes (default: every class with a clip)")
    p.add_argument("--seed", type=int, default=0, help="picks the clips and seeds the augmenter (default 0)")
    p.add_argument("--out", type=Path, default=GALLERY_DIR, help="folder for the PNGs (default: results/gallery/)")
    return p


def index_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench index",
                                description="Write results/README.md: every file in results/ with what it measured, "
                                            "the command, the commit and the date, read from the files' own metadata.")
    p.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: results/)")
    return p


def config_from_args(a: argparse.Namespace):
    from bench.evalsets import default_specs

    kw = {"split": a.split, "max_clips": a.max_clips, "runs": tuple(a.run), "models": a.models,
          "backends": a.backends, "eval_backend": a.eval_backend, "eval_threads": a.eval_threads,
          "sections": a.only}
    cfg = make_config(a.data or default_specs(), a.quick, **kw)
    if a.threads:
        cfg = dataclasses.replace(cfg, matrix=dataclasses.replace(cfg.matrix, threads=a.threads))
    stream = {k: v for k, v in (("words_per_stream", a.stream_words),
                                ("free_seconds", None if a.free_minutes is None else a.free_minutes * 60)) if v}
    if stream:
        cfg = dataclasses.replace(cfg, streaming=dataclasses.replace(cfg.streaming, **stream))
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        a = report_parser().parse_args(argv[1:])
        paths = a.json or latest_runs(a.out / "bench")
        files = build_report(paths, a.out)
        print(f"report: {files.markdown}\ncsv: {', '.join(map(str, files.csvs))}\nplots: {len(files.plots)} in "
              f"{files.markdown.parent / 'plots'}")
        return 0
    if argv[:1] == ["gallery"]:
        from bench.gallery import GalleryConfig, build_gallery

        a = gallery_parser().parse_args(argv[1:])
        cfg = GalleryConfig(**{k: v for k, v in (("data", a.data), ("model", a.model), ("split", a.split),
                                                  ("classes", a.classes), ("seed", a.seed), ("out", a.out))
                               if v is not None})
        paths = build_gallery(cfg, command=shlex.join(["python", "-m", "bench", *argv]))
        print(f"gallery: {len(paths)} PNGs in {cfg.out}")
        return 0
    if argv[:1] == ["index"]:
        from bench.index import write_index

        a = index_parser().parse_args(argv[1:])
        print(f"index: {write_index(a.results)}")
        return 0
    if argv[:1] == ["calibrate"]:
        from bench.calibrate import main as calibrate_main

        return calibrate_main(argv[1:])
    if argv[:1] == ["wakeword"]:
        from bench.wakeword import main as wakeword_main

        return wakeword_main(argv[1:])
    if argv[:1] == ["negatives"]:
        from bench.negatives import main as negatives_main

        return negatives_main(argv[1:])
    if argv[:1] == ["run"]:
        argv = argv[1:]
    a = run_parser().parse_args(argv)
    resume = None
    if a.resume is not None:
        resume = read_run(a.resume)
        stored = resume["metadata"].get("argv")
        if stored is None:
            raise SystemExit(f"{a.resume}: no stored arguments (not written by `python -m bench`); cannot resume")
        out = a.resume.resolve().parent.parent  # results/bench/<id>.json -> results/
        a = run_parser().parse_args(stored)
        a.out = out
        argv = stored
    cfg = config_from_args(a)
    t0 = time.perf_counter()
    command = shlex.join(["python", "-m", "bench", *argv])
    path = run_suite(cfg, a.out, command=command, argv=argv, resume=resume)
    print(f"results: {path} ({time.perf_counter() - t0:.0f} s)")
    if not a.no_report:
        files = build_report([path], a.out)
        print(f"report: {files.markdown} ({len(files.plots)} plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
