"""Batch-1 inference (waveform in, probabilities out) on every backend available here, 1 thread."""
from __future__ import annotations

import numpy as np
import pytest

from backends import BackendUnavailable, backend_names, create_backend, list_backends

STATUS = {s.name: s for s in list_backends()}


@pytest.fixture(scope="module", params=backend_names())
def backend(request, model_ref):
    s = STATUS.get(request.param)
    if s is None or not s.available:
        pytest.skip(f"{request.param}: {s.reason if s else 'unknown backend'}")
    try:
        be = create_backend(request.param, model=model_ref, threads=1)
    except BackendUnavailable as e:
        pytest.skip(f"{request.param}: {e}")
    be.warmup()
    return be


def test_batch1_inference(benchmark, backend, clip):
    benchmark.extra_info.update(backend=backend.name, device=str(backend.device),
                                providers=list(backend.providers), model=backend.model_name)
    probs = benchmark(backend.predict, clip)
    assert probs.shape == (1, len(backend.labels))
    assert np.isclose(float(probs.sum()), 1.0, atol=1e-3)
