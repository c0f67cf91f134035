"""Where the project keeps things: its working folders and the real recordings beside it.

Every path the code uses starts here, so a checkout and an installed copy (`pip install .`)
agree on them. From a checkout the working folders are the checkout's own (`results/`,
`runs/`, `exports/`, `data_cache/`); an installed copy has no checkout, so they are made in
the current directory. Each can be moved by its environment variable.
"""
from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent.parent  # the folder that holds the kws package


def _checkout() -> Path | None:
    # A checkout is recognised by its pyproject.toml beside the packages; in site-packages
    # there is none, and the folder above the package is not the user's project.
    return _HERE if (_HERE / "pyproject.toml").is_file() and (_HERE / "zoo").is_dir() else None


CHECKOUT: Path | None = _checkout()  # the git checkout the code runs from, None when installed
PROJECT_ROOT: Path = CHECKOUT or Path.cwd()  # where the working folders below live

RESULTS = PROJECT_ROOT / "results"  # benchmark JSON, reports and plots (committed)
RUNS = PROJECT_ROOT / "runs"  # training runs (git-ignored)
DATA_CACHE_ENV = "KWS_CACHE"  # the decoded-clip cache, default PROJECT_ROOT / "data_cache"
RECIPES = PROJECT_ROOT / "recipes"  # training recipes (YAML) shipped with the checkout

# The real recordings sit beside the checkout (../shared/data); they are never copied into it.
SHARED_DATA = Path(os.environ.get("KWS_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
GSC12_DEV = SHARED_DATA / "gsc12-dev"  # Speech Commands v0.02 speakers, 12-class development set
GSC_V1_SAMPLE = SHARED_DATA / "gsc-v1-sample"  # a sample of Speech Commands v0.01
FSDD_DEV = SHARED_DATA / "fsdd-dev"  # Free Spoken Digit Dataset: 5 speakers, digits 0-9


def data_cache(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $KWS_CACHE, else `PROJECT_ROOT/data_cache/` (git-ignored)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(DATA_CACHE_ENV)
    return Path(env).expanduser() if env else PROJECT_ROOT / "data_cache"


def exports_dir() -> Path:
    """The ONNX export cache that the ort-* backends fill and read: $KWS_EXPORTS, else `PROJECT_ROOT/exports/`."""
    return Path(os.environ.get("KWS_EXPORTS", PROJECT_ROOT / "exports"))


def resolve_path(arg: str) -> Path:
    """A user path: as given (relative to the working directory), else relative to the project."""
    p = Path(arg).expanduser()
    if not p.is_absolute() and not p.exists() and (PROJECT_ROOT / p).exists():
        return (PROJECT_ROOT / p).resolve()
    return p.resolve()
