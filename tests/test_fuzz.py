"""The fuzz suite, bounded for CI: 2,000 cases per target, typed error or valid result only."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.__main__ import CI_CASES, run_targets
from fuzz.engine import Tally, have_atheris
from fuzz.targets import TARGETS, Target

REPO = Path(__file__).resolve().parents[1]


def _check(rows: list[dict], cases: int) -> None:
    assert [r["target"] for r in rows] == list(TARGETS)
    for r in rows:
        assert r["done"] and r["cases"] >= cases and r["unexpected"] == 0, r
        assert r["outcomes"].get("valid", 0) > 0, r  # the seeds (and some mutants) still read fine
        assert sum(v for k, v in r["outcomes"].items() if k != "valid") > 0, r  # and mutants hit the typed errors


@pytest.mark.slow
def test_every_reader_survives_the_ci_fuzz_budget(tmp_path):
    out = tmp_path / "fuzz.json"
    r = subprocess.run([sys.executable, "-m", "fuzz", "run", "--cases", str(CI_CASES), "--parallel", "3",
                        "--findings", str(tmp_path / "findings"), "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(out.read_text())
    rows = doc["results"]
    _check(rows, CI_CASES)
    assert all(row["engine"] == ("atheris" if have_atheris() else "mutate") for row in rows)
    assert all(row["seconds"] < 60 for row in rows), [(row["target"], row["seconds"]) for row in rows]
    assert doc["metadata"]["command"].startswith("python -m fuzz run")


def test_the_seeded_mutation_loop_is_reproducible(tmp_path):
    a = run_targets(list(TARGETS), 200, 7, "mutate", tmp_path / "f", parallel=3)
    b = run_targets(list(TARGETS), 200, 7, "mutate", tmp_path / "f", parallel=3)
    _check(a, 200)
    assert [r["outcomes"] for r in a] == [r["outcomes"] for r in b]


def test_a_finding_is_counted_and_its_input_kept(tmp_path):
    def run(data: bytes) -> str:
        if data.startswith(b"boom"):
            raise KeyError("not a typed error")
        return "valid"

    tally = Tally("demo", "mutate", 0, 3, tmp_path / "findings", tmp_path / "s.json")
    tgt = Target("demo", (), run, [b"ok"])
    for data in (b"ok", b"boom!", b"fine"):
        tally.case(tgt, data)
    out = tally.write(done=True)
    assert out["outcomes"] == {"UNEXPECTED": 1, "valid": 2} and out["unexpected"] == 1
    (finding,) = out["findings"]
    assert finding["type"] == "KeyError" and Path(finding["input"]).read_bytes() == b"boom!"


def test_most_audio_cases_reach_the_decoder(tmp_path):
    import soundfile as sf

    from fuzz.targets import STRUCTURED_FIELDS, structured_wav

    (row,) = run_targets(["audio"], 300, 3, "mutate", tmp_path / "f")
    assert row["unexpected"] == 0 and row["past_header_share"] >= 0.5, row
    for data in (b"", b"\x01", bytes(STRUCTURED_FIELDS), b"\x01\x00\x00" + bytes(5) + b"\x10\x20"):
        path = tmp_path / "s.wav"
        path.write_bytes(structured_wav(data))  # even a few bytes describe a clip the decoder reads
        assert sf.info(str(path)).frames >= 1600
