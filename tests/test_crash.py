"""Crash safety: kill -9 a training run, a data-cache build and an export at 10 seeded random points each;
after every kill only whole files (or temporaries) remain, and the rerun ends where an uninterrupted run does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KILLS = 10


@pytest.mark.slow
@pytest.mark.parametrize("job, seed", [("train", 11), ("cache", 12), ("export", 13)])
def test_kill_at_random_points_then_rerun(tmp_path, job, seed):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "tests" / "_crash.py"), job, str(tmp_path), "--kills", str(KILLS),
                        "--seed", str(seed)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(res["kill_points_s"]) >= KILLS, res
    assert res["problems"] == [], res  # no half-written file after any kill, nothing left behind at the end
    assert res["identical"] and all(res["identical"]), res  # every rerun ended exactly where the reference did
