"""Shared helpers for the backend/export/predict tests: small random-init checkpoints with
spread logits (so top-1 parity means something) and a private exports/ cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backends.clips import speechlike_clips


def make_run(tmp: Path, name: str = "dscnn") -> Path:
    from bench.selfcheck import random_checkpoint

    return random_checkpoint(name, tmp)


def clips(n: int = 12, seed: int = 3) -> np.ndarray:
    return speechlike_clips(n, seed=seed)
