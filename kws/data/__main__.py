"""Data-layer CLI.

    python -m kws.data summary [--source SPEC ...]     clip counts per split, bad files
    python -m kws.data build --source SPEC [...]        decode sources into the cache
    python -m kws.data bench-load --source SPEC [...]   clips/s cold vs warm -> results/data_loading.json
    python -m kws.data download --version v0.02 [--dest DIR]   the official Speech Commands archive
                                                        (`download v0.02` works too)
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from kws.data.bench import LoadBenchConfig, bench_load
from kws.data.cache import DEFAULT_WORKERS
from kws.paths import RESULTS
from kws.data.download import ARCHIVES, DownloadError, download_speech_commands
from kws.data.index import SPLITS, DataError
from kws.data.source import DataSource, available_shortcuts, describe_labels, open_source
from kws.data.views import DEFAULT_LABELS, DEFAULT_RULE
from kws.fsutil import atomic_write_json
from kws.runinfo import write_results

DEFAULT_RESULTS = RESULTS / "data_loading.json"
MAX_BAD_SHOWN = 10


def default_sources() -> list[str]:
    """The embedded synthetic set plus every ../shared/data set present on this machine."""
    return ["synth", *available_shortcuts()]


def _open(spec: str, args: argparse.Namespace) -> DataSource:
    return open_source(spec, labels=args.labels, fast=args.fast, seed=args.seed,
                       cache_dir=args.cache_dir, workers=args.workers)


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain-text table: numbers right-aligned, text left-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = (str(c).rjust(w) if str(c).replace(".", "").isdigit() else str(c).ljust(w)
                 for c, w in zip(row, widths))
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def cmd_summary(args: argparse.Namespace) -> int:
    specs = args.source or default_sources()
    rows, details, summaries, failed = [], [], [], 0
    for spec in specs:
        try:
            s = _open(spec, args).summary()
        except DataError as e:
            failed += 1
            rows.append([spec, "-", "-", "-", "-", "-", "-", "-", f"error: {e}"])
            continue
        summaries.append(s)
        c, spk = s["clips"], s["speakers"]
        rows.append([spec, describe_labels(s["labels"]), *(str(c[x]) for x in SPLITS),
                     "/".join(str(spk[x]) for x in SPLITS), str(len(s["bad_files"])),
                     f"{s['noise_seconds']:.0f}", s["split_rule"]])
        extra = [f"  note: {n}" for n in s["notes"]]
        extra += [f"  bad: {b['path']}: {b['problem']}" for b in s["bad_files"][:MAX_BAD_SHOWN]]
        if len(s["bad_files"]) > MAX_BAD_SHOWN:
            extra.append(f"  ... and {len(s['bad_files']) - MAX_BAD_SHOWN} more bad files")
        if extra:
            details.append(f"{spec} ({s['root']}):\n" + "\n".join(extra))
    print(format_table(rows, ["source", "labels", *SPLITS, "speakers", "bad", "noise s", "split"]))
    for d in details:
        print("\n" + d)
    if args.json:
        atomic_write_json(args.json, summaries)
    return 1 if failed else 0


def cmd_build(args: argparse.Namespace) -> int:
    failed = 0
    for spec in args.source:
        try:
            src = _open(spec, args)
            for split, cs in src.build().items():
                print(f"{spec} {split}: {len(cs)} clips, {len(cs.bad)} bad -> {cs.path}")
        except DataError as e:
            failed += 1
            print(f"{spec}: error: {e}", file=sys.stderr)
    return 1 if failed else 0


def cmd_bench_load(args: argparse.Namespace, argv: Sequence[str]) -> int:
    results = []
    for spec in args.source:
        cfg = LoadBenchConfig(spec, labels=args.labels, fast=args.fast, seed=args.seed, split=args.split,
                              batch_size=args.batch_size, workers=args.workers)
        results.append(bench_load(cfg))
    rows = [[r["source"], r["split"], str(r["clips"]), str(r["workers"]), f"{r['cold_clips_per_s']:.0f}",
             f"{r['warm_batch_clips_per_s']:.0f}", f"{r['warm_item_clips_per_s']:.0f}",
             f"{r['warm_vs_cold_speedup']}"] for r in results]
    print(format_table(rows, ["source", "split", "clips", "workers", "cold clips/s",
                              "warm batch clips/s", "warm item clips/s", "speedup"]))
    path = write_results(args.out, results, command="python -m kws.data " + shlex.join(argv))
    print(f"\nwrote {path}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    try:
        dest = download_speech_commands(args.version, dest=args.dest, sha256=args.sha256, url=args.url,
                                        keep_archive=not args.no_keep_archive)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Speech Commands {args.version} ready in {dest}\nuse it with --source gsc:{dest}")
    return 0


def download_version(parser: argparse.ArgumentParser, positional: str | None, flag: str | None) -> str:
    """The archive version from `download VERSION` or `download --version VERSION` (one of them)."""
    if positional and flag and positional != flag:
        parser.error(f"download: two versions given ({positional} and --version {flag}); give one")
    version = positional or flag
    if version is None:
        parser.error(f"download: which version? e.g. `download --version v0.02` ({', '.join(sorted(ARCHIVES))})")
    return version


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kws.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add_source_opts(sp: argparse.ArgumentParser, required: bool) -> None:
        sp.add_argument("--source", action="append", required=required, metavar="SPEC",
                        help="synth, synth:tiny, gsc:PATH, folder:PATH, gsc12-dev, A+B (repeatable)")
        sp.add_argument("--labels", default=DEFAULT_LABELS,
                        help=f"35, 35s, 12, auto (the source's own words) or default: {DEFAULT_RULE}")
        sp.add_argument("--fast", action="store_true", help="5,000-clip stratified training subset")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--cache-dir", type=Path, default=None, help="default $KWS_CACHE or <repo>/data_cache")
        sp.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="decoding threads")

    sp = sub.add_parser("summary", help="table of sources with clip counts per split and bad files")
    add_source_opts(sp, required=False)
    sp.add_argument("--json", type=Path, help="also write the full summaries as JSON")
    sp = sub.add_parser("build", help="decode sources into the cache")
    add_source_opts(sp, required=True)
    sp = sub.add_parser("bench-load", help="loading speed, cold (decode) vs warm (memmap)")
    add_source_opts(sp, required=True)
    sp.add_argument("--split", default="auto", choices=("auto", *SPLITS), help="default: the largest split")
    sp.add_argument("--batch-size", type=int, default=256)
    sp.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    sp = sub.add_parser("download", help="download and extract the official Speech Commands archive")
    # Both spellings work: `download v0.02` and `download --version v0.02` (the README's form).
    sp.add_argument("version", nargs="?", choices=sorted(ARCHIVES), help="archive version (or --version)")
    sp.add_argument("--version", dest="version_flag", choices=sorted(ARCHIVES), metavar="VERSION",
                    help=f"archive version: {', '.join(sorted(ARCHIVES))}")
    sp.add_argument("--dest", type=Path, help="extracted folder (default <cache>/speech_commands_<version>)")
    sp.add_argument("--sha256", help="expected sha256 (default: the published one)")
    sp.add_argument("--url", help="mirror URL (default: the official one)")
    sp.add_argument("--no-keep-archive", action="store_true", help="delete the .tar.gz after extraction")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd == "download":
        args.version = download_version(parser, args.version, args.version_flag)
    if args.cmd == "summary":
        return cmd_summary(args)
    if args.cmd == "build":
        return cmd_build(args)
    if args.cmd == "bench-load":
        return cmd_bench_load(args, argv)
    return cmd_download(args)


if __name__ == "__main__":
    sys.exit(main())
