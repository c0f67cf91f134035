"""Fixtures shared by the micro-benchmarks: one real-looking clip and a model to run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE

MODEL = "dscnn"  # the zoo's smallest model: the benchmark measures the runtime, not the network


@pytest.fixture(scope="session")
def clip() -> np.ndarray:
    """float32 [1, 16000]: a 300 Hz tone with harmonics in noise, the shape of a spoken word's energy."""
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    env = np.exp(-((t - 0.5) / 0.15) ** 2)
    x = env * sum(np.sin(2 * np.pi * 300 * k * t) / k for k in range(1, 6)) + 0.01 * rng.standard_normal(t.size)
    return (0.3 * x / np.abs(x).max())[None].astype(np.float32)


@pytest.fixture(scope="session")
def model_ref(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The shipped dscnn weights, or (before any are shipped) a random dscnn checkpoint.

    Random weights time exactly like trained ones: the same graph, the same shapes.
    """
    from zoo.model import model_dir

    shipped = model_dir() / f"{MODEL}.safetensors"
    if shipped.is_file():
        return MODEL
    import torch

    import zoo

    torch.manual_seed(0)
    model = zoo.create_model(MODEL).eval()
    path = Path(tmp_path_factory.mktemp("micro")) / f"{MODEL}-random.safetensors"
    zoo.save_checkpoint(model, path, {"training_data": "none (random weights, for micro-benchmarks)"})
    return str(path)
