"""`python -m bench index`: results/README.md, an index of every results file, from the files' own metadata.

- JSON result files (`{"metadata", "results"}`, kws.runinfo) carry their command, git commit
  and date; pytest-benchmark files carry their commit and date (not the command);
- PNGs written by `python -m bench report` and `python -m bench gallery` carry a caption,
  their command or source files, the commit and the date in their PNG text;
- Markdown and CSV reports are made from a JSON: the one beside them with the same name, or,
  for the benchmark report and its CSVs, the run files the report names in its first lines.

What each producer measures is written once, in PRODUCERS, keyed by the command that ran. The
command only picks a description: nothing is imported or run because a file says so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import REPORT_NAME, RESULTS
from kws.fsutil import atomic_write_text, read_json

INDEX_NAME = "README.md"
# (command prefix, what its files hold); the first matching prefix wins, so longer ones come first.
PRODUCERS: tuple[tuple[str, str], ...] = (
    ("python -m bench report", "reports, tables and plots rebuilt from benchmark run files"),
    ("python -m bench gallery", "signal gallery: per class, a clip's waveform, spectrum and model features, "
                                "clean and augmented by the trainer's augmenter"),
    ("python -m bench wakeword", "wake-word detection through the live engine: DET curves (miss rate vs false "
                                 "accepts/h) on held-out speakers at 20/10/0 dB, FA/h on hours of keyword-free "
                                 "speech, per-word calibrated thresholds, the stream form's cost"),
    ("python -m bench.realspeech cv", "speaker-disjoint 5-fold cross-validation of a training recipe: every real "
                                      "clip scored once by a model that never heard its speaker (pooled accuracy "
                                      "with a speaker-bootstrap 95 % CI, fold mean with a t interval)"),
    ("python -m bench.fewshot_gsc", "few-shot learning curves on real Speech Commands speakers: gsc12-dev's rare "
                                    "words from k recordings (k = 1, 5; 5 draws of speakers each), with and without "
                                    "synthetic examples, accuracy on speakers heard in no training clip"),
    ("python -m bench.fewshot", "few-shot learning curves: new words from k recordings of one FSDD speaker "
                                "(k = 1, 5, 10, 25, with and without synthetic examples, and synthetic only), "
                                "accuracy on the other speakers with 95 % CIs, and each run's wall time"),
    ("python -m bench.realspeech", "real-speech accuracy (12- and 35-class, 95 % CI) of trained weights on "
                                   "gsc12-dev speakers they never heard"),
    ("python -m bench.int8", "int8 against fp32 in ONNX Runtime: every quantization variant's batch-1 speed-up "
                             "(interleaved, one run) and top-1 agreement with fp32 on held-out real clips"),
    ("python -m bench", "the benchmark suite: every model x backend (accuracy, latency, throughput, memory), "
                        "streaming false accepts through the live engine, accuracy under noise"),
    ("python -m bench.latency", "batch-1 latency of every backend, int8 against fp32, interleaved in one run"),
    ("python -m realtime.measure", "the live detector: mic-to-decision latency, decisions/s and CPU on a real-time "
                                   "replay"),
    ("python -m realtime.screenshot", "a screenshot of the live window"),
    ("python -m realtime.soak replay-memory", "replay memory: peak RSS of live.py replaying a 1-minute and a 1-hour "
                                              "48 kHz stereo file"),
    ("python -m realtime.soak run", "the soak: RSS and the engine's counters (decided, shed, dropped) over a long "
                                    "real-time replay"),
    ("python -m fuzz run", "fuzzing of the audio loader, the ONNX metadata reader and the safetensors header "
                           "reader: cases and outcomes per target"),
    ("python -m training.bench", "training throughput (samples/s) per model, and the data path's clips/s"),
    ("python -m kws.data bench-load", "clip loading speed: decoding (cold) against the memory-mapped cache (warm)"),
    ("pytest bench/micro", "micro-benchmarks (pytest-benchmark) of the frontend and the backends"),
)
# Commands as older result files recorded them, before their modules moved: old prefix -> new
RENAMED: tuple[tuple[str, str], ...] = (
    ("python -m kws.train.bench", "python -m training.bench"),
    ("python -m backends.bench_latency", "python -m bench.latency"),
    ("python -m backends.selfcheck", "python -m bench.selfcheck"),
)
_PYTHON = re.compile(r"^\S*python[0-9.]*\s+")  # ".venv/bin/python3 -m x" -> "python -m x"


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the results folder
    what: str
    command: str
    commit: str
    date: str
    made_from: str = ""  # derived files: what they were made from


def describe_command(command: str) -> str:
    cmd = _PYTHON.sub("python ", command.strip())
    if cmd.startswith(("pytest ", "python -m pytest ")):
        cmd = "pytest " + cmd.split("pytest", 1)[1].strip()
    for old, new in RENAMED:
        if cmd == old or cmd.startswith(old + " "):
            cmd = new + cmd[len(old):]
    for prefix, what in PRODUCERS:
        if cmd == prefix or cmd.startswith(prefix + " "):
            return what
    return "(unknown producer: describe its command in bench/index.py PRODUCERS)"


def _commit(commit: Any, dirty: Any = None) -> str:
    if not commit:
        return "not recorded"
    return f"`{str(commit)[:10]}`" + (" (uncommitted changes)" if dirty else "")


def _contents(rows: list) -> str:
    """A short account of what the rows cover: how many, and for which models or weights."""
    names = []
    for r in rows:
        if isinstance(r, dict):
            n = r.get("model") or r.get("weights") or r.get("source") or r.get("config")
            if isinstance(n, str) and n not in names:
                names.append(n)
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"{len(rows)} rows" + (f" ({shown})" if shown else "")


def json_entry(path: Path, rel: str) -> Entry:
    try:
        data = read_json(path, "results file")
    except ValueError as e:
        return Entry(rel, f"unreadable: {e}", "?", "?", "?")
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict) and isinstance(data.get("results"), list):
        m = data["metadata"]
        command = str(m.get("command") or "not recorded")
        what = describe_command(command)
        extra = [_contents(data["results"])]
        if m.get("datasets"):
            extra.append("data: " + ", ".join(str(d.get("name")) for d in m["datasets"] if isinstance(d, dict)))
        if m.get("quick"):
            extra.append("quick mode, not for publication")
        git = m.get("git") if isinstance(m.get("git"), dict) else {}
        return Entry(rel, f"{what}; {'; '.join(extra)}", command, _commit(git.get("commit"), git.get("dirty")),
                     str(m.get("time_utc") or "not recorded"))
    if isinstance(data, dict) and isinstance(data.get("benchmarks"), list) and "commit_info" in data:
        info = data.get("commit_info") if isinstance(data.get("commit_info"), dict) else {}
        return Entry(rel, f"{describe_command('pytest bench/micro')}; {len(data['benchmarks'])} benchmarks (the "
                          "file stores no command: the one below is the documented one)",
                     "pytest bench/micro --benchmark-json=...",
                     _commit(info.get("id"), info.get("dirty")), str(data.get("datetime") or "not recorded"))
    return Entry(rel, "not a recognised results file (no metadata)", "?", "?", "?")


def png_entry(path: Path, rel: str) -> Entry:
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or {})
    except OSError as e:
        return Entry(rel, f"unreadable image: {e}", "?", "?", "?")
    if not text.get("Description"):  # e.g. matplotlib's own "Software" tag only
        return Entry(rel, "image without metadata", "not recorded", "not recorded", "not recorded")
    command = text.get("Command") or text.get("Software", "")
    return Entry(rel, text.get("Description") or describe_command(command), command, _commit(text.get("Commit")),
                 text.get("Creation Time", "not recorded"), made_from=text.get("Source", ""))


def report_sources(results: Path) -> list[str]:
    """The run files the benchmark report says it was built from (its 'Generated by' line)."""
    md = results / REPORT_NAME
    if not md.is_file():
        return []
    for line in md.read_text(errors="replace").splitlines()[:6]:
        if line.startswith("Generated by"):
            return re.findall(r"`([^`]+\.json)`", line)
    return []


def derived_entry(path: Path, rel: str, results: Path, by_path: dict[str, Entry]) -> Entry:
    """A Markdown or CSV file: described by the JSON it was made from."""
    twin = path.with_suffix(".json")
    if twin.is_file():
        src = by_path.get(twin.relative_to(results).as_posix())
        if src is not None:
            return Entry(rel, f"report of {twin.name}", src.command, src.commit, src.date,
                         made_from=twin.relative_to(results).as_posix())
    if path.name == REPORT_NAME or (path.name.startswith("bench_") and path.suffix == ".csv"):
        sources = report_sources(results)
        runs = [by_path.get(Path(s).relative_to("results").as_posix() if s.startswith("results/") else s)
                for s in sources]
        runs = [r for r in runs if r is not None]
        kind = "the benchmark report" if path.name == REPORT_NAME else "a flat table of the benchmark report"
        return Entry(rel, f"{kind} (`python -m bench report`)", "python -m bench report " + " ".join(sources),
                     ", ".join(r.commit for r in runs) or "not recorded", ", ".join(r.date for r in runs) or "?",
                     made_from=", ".join(sources))
    return Entry(rel, "no metadata (not made by a known command)", "?", "?", "?")


def collect(results: Path = RESULTS) -> list[Entry]:
    """An entry for every file under `results` except the index itself, JSON first."""
    results = Path(results)
    files = sorted(p for p in results.rglob("*") if p.is_file() and p.relative_to(results).as_posix() != INDEX_NAME)
    by_path: dict[str, Entry] = {}
    for p in files:
        rel = p.relative_to(results).as_posix()
        if p.suffix == ".json":
            by_path[rel] = json_entry(p, rel)
        elif p.suffix == ".png":
            by_path[rel] = png_entry(p, rel)
    for p in files:
        rel = p.relative_to(results).as_posix()
        if rel not in by_path:
            by_path[rel] = derived_entry(p, rel, results, by_path)
    return [by_path[p.relative_to(results).as_posix()] for p in files]


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _code(s: str) -> str:
    return f"`{s}`" if s and s not in ("?", "not recorded") and not s.startswith("`") else s


def render(entries: list[Entry]) -> str:
    runs = [e for e in entries if e.path.endswith(".json")]
    made = [e for e in entries if not e.path.endswith(".json")]
    L = ["# Results index", "",
         "Every file in `results/`: what it measured, the command that made it, the git commit and the date, read "
         "from the files' own metadata by `python -m bench index` (run it after every new result; "
         "`tests/test_results_index.py` fails when a JSON file has no entry). Figures quoted in the "
         "[top README](../README.md) come from these files.", "",
         "## Measurements (one JSON per run)", "",
         "| file | what it measured | command | commit | date (UTC) |", "|---|---|---|---|---|"]
    L += [f"| [{e.path}]({e.path}) | {_cell(e.what)} | {_cell(_code(e.command))} | {e.commit} | {e.date} |"
          for e in runs]
    L += ["", "## Reports, tables and pictures made from them", "",
          "| file | what it shows | made from | command | commit | date (UTC) |", "|---|---|---|---|---|---|"]
    L += [f"| [{e.path}]({e.path}) | {_cell(e.what)} | {_cell(e.made_from) or '–'} | {_cell(_code(e.command))} | "
          f"{e.commit} | {e.date} |" for e in made]
    return "\n".join(L) + "\n"


def write_index(results: Path = RESULTS) -> Path:
    path = Path(results) / INDEX_NAME
    atomic_write_text(path, render(collect(results)))
    return path
