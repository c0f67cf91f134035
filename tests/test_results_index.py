"""results/README.md indexes every results file, from the files' own metadata (`python -m bench index`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main as bench_main
from bench.index import INDEX_NAME, collect, describe_command
from kws.runinfo import write_results

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_every_results_json_has_an_index_entry():
    index = (RESULTS / INDEX_NAME).read_text()
    missing = [p.relative_to(RESULTS).as_posix() for p in sorted(RESULTS.rglob("*.json"))
               if f"]({p.relative_to(RESULTS).as_posix()})" not in index]
    assert not missing, f"not in results/{INDEX_NAME} (run `python -m bench index`): {missing}"


def test_every_results_file_is_listed():
    index = (RESULTS / INDEX_NAME).read_text()
    missing = [p.relative_to(RESULTS).as_posix() for p in sorted(RESULTS.rglob("*"))
               if p.is_file() and p.name != INDEX_NAME and f"]({p.relative_to(RESULTS).as_posix()})" not in index]
    assert not missing, f"not in results/{INDEX_NAME} (run `python -m bench index`): {missing}"


def test_index_reads_each_kind_of_file(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = tmp_path / "results"
    write_results(res / "train_throughput.json", [{"model": "dscnn"}, {"model": "resnet18"}],
                  command="python -m training.bench --quick")
    (res / "train_throughput.md").write_text("# report\n")
    (res / "micro").mkdir()
    (res / "micro" / "abc.json").write_text(json.dumps({
        "machine_info": {}, "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "benchmarks": [{}, {}], "datetime": "2026-01-02T03:04:05", "version": "5.3.1"}))
    fig, _ = plt.subplots()
    fig.savefig(res / "pic.png", metadata={"Description": "a caption", "Command": "python -m bench gallery",
                                           "Commit": "feedbeef00", "Creation Time": "2026-01-01T00:00:00+00:00"})
    plt.close(fig)
    (res / "stray.txt").write_text("?")
    (res / "odd.json").write_text(json.dumps([1, 2]))
    by = {e.path: e for e in collect(res)}
    assert set(by) == {"train_throughput.json", "train_throughput.md", "micro/abc.json", "pic.png", "stray.txt",
                       "odd.json"}
    t = by["train_throughput.json"]
    assert t.command == "python -m training.bench --quick" and "training throughput" in t.what
    assert "2 rows (dscnn, resnet18)" in t.what and t.date.startswith("20")
    assert by["train_throughput.md"].made_from == "train_throughput.json" and by["train_throughput.md"].date == t.date
    assert by["micro/abc.json"].commit == "`0123456789`" and "2 benchmarks" in by["micro/abc.json"].what
    assert by["pic.png"].what == "a caption" and by["pic.png"].commit == "`feedbeef00`"
    assert "not a recognised results file" in by["odd.json"].what and "no metadata" in by["stray.txt"].what
    assert bench_main(["index", "--results", str(res)]) == 0
    md = (res / INDEX_NAME).read_text()
    assert "| [train_throughput.json](train_throughput.json) |" in md and "`python -m training.bench --quick`" in md


@pytest.mark.parametrize("command, expected", [
    (".venv/bin/python -m bench --quick", "the benchmark suite"),
    ("python -m bench report results/bench/x.json", "reports, tables and plots"),
    ("python -m bench.realspeech --weights x", "real-speech accuracy"),
    ("python3 -m pytest bench/micro --benchmark-json=x.json", "micro-benchmarks"),
    ("python -m something.else", "unknown producer"),
])
def test_commands_map_to_their_producer(command, expected):
    assert expected in describe_command(command)
