"""Fuzz the readers of outside files: audio loader, ONNX metadata reader, safetensors header reader.

Usage:
  python -m fuzz run                                   # 2,000 cases per target (what CI runs)
  nice -n 10 python -m fuzz run --cases 100000 --out results/fuzz.json   # the long run
  python -m fuzz report results/fuzz.json -o results/fuzz.md
  python -m fuzz run --targets audio --engine mutate --seed 7

Each target runs in its own worker process (atheris where it is installed, else the seeded
mutation loop; --engine chooses). The only allowed outcomes are the reader's typed error or
a valid result; anything else is counted as unexpected, its input saved under --findings,
and the exit status is 1.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fuzz.targets import TARGETS
from kws.paths import PROJECT_ROOT

CI_CASES = 2000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="fuzz the targets, one worker process each")
    r.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    r.add_argument("--cases", type=int, default=CI_CASES, help=f"cases per target (default {CI_CASES})")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto",
                   help="auto: atheris when installed, else the seeded mutation loop")
    r.add_argument("--max-seconds", type=float, default=None, help="stop a target after this long")
    r.add_argument("--parallel", type=int, default=1, help="targets fuzzed at once")
    r.add_argument("--findings", default=None, help="where unexpected inputs are saved (default: a temp folder)")
    r.add_argument("--out", default=None, help="results JSON (kws.runinfo format)")
    w = sub.add_parser("worker", help=argparse.SUPPRESS)
    w.add_argument("target", choices=list(TARGETS))
    for flag in ("--engine", "--summary", "--findings", "--work"):
        w.add_argument(flag, required=True)
    w.add_argument("--cases", type=int, required=True)
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--max-seconds", type=float, default=None)
    rep = sub.add_parser("report", help="Markdown from a results JSON")
    rep.add_argument("json")
    rep.add_argument("-o", "--output", default=None)
    return p


def run_targets(targets: list[str], cases: int, seed: int, engine: str, findings: Path,
                max_seconds: float | None = None, parallel: int = 1) -> list[dict]:
    """Fuzz each target in a worker process; their summaries, in target order."""
    from fuzz.engine import have_atheris

    if engine == "auto":
        engine = "atheris" if have_atheris() else "mutate"
    with tempfile.TemporaryDirectory(prefix="kws-fuzz-") as d:  # corpora grow under libFuzzer: never left behind
        return _run_workers(targets, cases, seed, engine, findings, max_seconds, parallel, Path(d))


def _run_workers(targets: list[str], cases: int, seed: int, engine: str, findings: Path,
                 max_seconds: float | None, parallel: int, tmp: Path) -> list[dict]:
    procs: dict[str, tuple[subprocess.Popen, Path, Path]] = {}
    results: dict[str, dict] = {}
    pending = list(targets)

    def start(name: str) -> None:
        summary, log = tmp / f"{name}.json", tmp / f"{name}.log"
        cmd = [sys.executable, "-m", "fuzz", "worker", name, "--engine", engine, "--cases", str(cases),
               "--seed", str(seed), "--summary", str(summary), "--findings", str(findings),
               "--work", str(tmp / name)]
        if max_seconds is not None:
            cmd += ["--max-seconds", str(max_seconds)]
        with open(log, "wb") as f:
            procs[name] = (subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=f, stderr=subprocess.STDOUT), summary, log)

    while pending or procs:
        while pending and len(procs) < max(1, parallel):
            start(pending.pop(0))
        for name, (proc, summary, log) in list(procs.items()):
            if proc.poll() is None:
                continue
            del procs[name]
            res = json.loads(summary.read_text()) if summary.is_file() else {"target": name, "cases": 0}
            if proc.returncode != 0 or not res.get("done"):
                # a crash in native code, a libFuzzer timeout or out-of-memory: a finding too
                tail = log.read_text(errors="replace")[-2000:]
                res.update(done=False, worker_exit=proc.returncode, unexpected=res.get("unexpected", 0) + 1,
                           worker_log_tail=tail)
            results[name] = res
        time.sleep(0.2)
    return [results[t] for t in targets]


def report_markdown(doc: dict) -> str:
    md, rows = doc["metadata"], doc["results"]
    lines = ["# Fuzz results: readers of outside files", "",
             f"Command: `{md.get('command', '?')}`  ",
             f"Commit {str(md.get('git', {}).get('commit', '?'))[:10]}, {md.get('time_utc', '')}, "
             f"{md.get('machine', {}).get('description', '')}; engine {rows[0].get('engine', '?') if rows else '?'}"
             f" (seed {rows[0].get('seed', '?') if rows else '?'}).", "",
             "Allowed outcomes: the reader's typed error (AudioError, ModelFileError, CheckpointError) or a valid, "
             "checked result. Anything else is *unexpected*.", "",
             "| target | reader | cases | seconds | cases/s | valid | typed errors | unexpected |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    readers = {"audio": "kws.audio.load_audio", "onnx": "backends.meta.read_onnx_info + parity record",
               "safetensors": "zoo.checkpoint.load_checkpoint (header fuzzed)"}
    for r in rows:
        out = r.get("outcomes", {})
        typed = sum(v for k, v in out.items() if k not in ("valid", "UNEXPECTED"))
        lines.append(f"| {r['target']} | {readers.get(r['target'], '')} | {r.get('cases', 0):,} | "
                     f"{r.get('seconds', 0):.0f} | {r.get('cases_per_s') or 0:.0f} | {out.get('valid', 0):,} | "
                     f"{typed:,} | {r.get('unexpected', 0)} |")
    for r in rows:
        if "past_header_share" in r:
            lines += ["", f"{r['target']}: {r['past_header']:,} of {r.get('cases', 0):,} cases "
                      f"({100 * r['past_header_share']:.1f} %) got past the header to the decoder (the rest ended as "
                      f"not audio or a broken header); slowest case {r.get('slowest_case_s', 0):.2f} s."]
    lines += ["", "Typed errors by kind:", ""]
    for r in rows:
        kinds = ", ".join(f"{k} {v:,}" for k, v in r.get("outcomes", {}).items() if k not in ("valid",))
        lines.append(f"- {r['target']}: {kinds or 'none'}")
    found = [f for r in rows for f in r.get("findings", [])]
    lines += ["", f"Findings: {len(found)}" + ("" if not found else ":")]
    lines += [f"- {f['type']}: {f['message']}" for f in found[:20]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        from fuzz.engine import worker

        return worker(args.target, args.engine, args.cases, args.seed, Path(args.summary), Path(args.findings),
                      args.max_seconds, Path(args.work))
    if args.command == "report":
        from kws.fsutil import atomic_write_text, read_json

        text = report_markdown(read_json(args.json, "fuzz results"))
        if args.output:
            atomic_write_text(args.output, text)
        else:
            print(text, end="")
        return 0
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or args.cases < 1:
        print(f"error: unknown targets {unknown}" if unknown else "error: --cases must be >= 1", file=sys.stderr)
        return 2
    findings = Path(args.findings) if args.findings else Path(tempfile.mkdtemp(prefix="kws-fuzz-findings-"))
    rows = run_targets(targets, args.cases, args.seed, args.engine, findings, args.max_seconds, args.parallel)
    for r in rows:
        past = f"  past header {100 * r['past_header_share']:.1f} %" if "past_header_share" in r else ""
        print(f"{r['target']:12s} {r.get('cases', 0):8,} cases in {r.get('seconds', 0):6.1f} s  "
              f"unexpected {r.get('unexpected', 0)}{past}  {r.get('outcomes', {})}", file=sys.stderr)
    if args.out:
        from kws.runinfo import write_results

        from importlib import metadata

        try:
            atheris_version = metadata.version("atheris")
        except metadata.PackageNotFoundError:
            atheris_version = None
        write_results(args.out, rows, command="python -m fuzz " + " ".join(argv if argv is not None else sys.argv[1:]),
                      atheris=atheris_version)
    return 1 if any(r.get("unexpected") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
