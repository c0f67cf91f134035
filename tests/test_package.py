"""The installable package: a wheel built from the checkout holds every package, the shipped weights
and the console scripts, and its dependencies are the ones requirements.txt pins.

Built offline (`--no-build-isolation --no-index`, with the pinned setuptools and wheel) from a copy
of the checkout, so the test writes nothing into it.
"""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.test_layers import LAYERS

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"kws-train": "cli.train:main", "kws-export": "cli.export:main", "kws-live": "cli.live:main",
           "kws-predict": "cli.predict:main", "kws-bench": "bench.__main__:main"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "data_cache", "runs", "exports", "build", "*.egg-info", "__pycache__", ".pytest_cache",
        "results", ".benchmarks"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (path,) = (tmp / "dist").glob("kws_zoo-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_every_module_and_no_test(wheel):
    names = set(wheel.namelist())
    modules = {p.relative_to(ROOT).as_posix() for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py")}
    assert modules and not modules - names, f"missing from the wheel: {sorted(modules - names)[:10]}"
    assert not [n for n in names if n.startswith("tests/")]


def test_the_wheel_ships_the_weights_and_their_cards(wheel):
    shipped = sorted((ROOT / "zoo" / "weights").rglob("*.safetensors")) + sorted((ROOT / "zoo" / "weights").rglob("*.md"))
    assert shipped
    for p in shipped:
        info = wheel.getinfo(p.relative_to(ROOT).as_posix())
        assert info.file_size == p.stat().st_size, p


def test_the_console_scripts_point_at_command_lines(wheel):
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(meta).decode()
    got = dict(re.findall(r"^(kws-[a-z]+) = (\S+)$", text, re.M))
    assert got == SCRIPTS
    for target in got.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_every_dependency_is_pinned_in_requirements(wheel):
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    requires = re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)(.*)$", wheel.read(meta).decode(), re.M)
    pinned = {re.split(r"[=<>; ]", line)[0].lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    names = {name.lower() for name, _ in requires}
    assert {"torch", "onnxruntime", "numpy", "openwakeword", "pyqt6", "pytest"} <= names
    assert names <= pinned, f"in pyproject.toml but not pinned in requirements.txt: {sorted(names - pinned)}"
