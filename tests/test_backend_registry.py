"""Adding a backend is one file and one registry line: a test backend registered here shows up everywhere."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import backends
from backends import backend_spec, create_backend, register_backend
from backends.base import BackendBase
from backends.registry import auto_order, bench_order, default_fallbacks, fp32_counterpart, unregister_backend
from tests._backend_fixtures import clips, make_run

NAME = "test-numpy"


@pytest.fixture
def numpy_backend():
    """A whole backend in one class: the checkpoint's model run eagerly, reached only through the registry."""

    @register_backend(NAME, artifact="checkpoint", device="cpu", auto_rank=35)
    class NumpyBackend(BackendBase):
        def __init__(self, model: str | Path, threads: int | None = None) -> None:
            from zoo import load_model, resolve_weights

            self.model_file = resolve_weights(model)
            self.model, self.meta = load_model(self.model_file)
            self.labels, self.frontend = self.model.cfg.labels, self.model.cfg.frontend
            self.model_name, self.threads, self.device, self.providers = self.model.cfg.name, threads, "cpu", ("numpy",)

        @classmethod
        def availability(cls) -> tuple[bool, str]:
            return True, "ok: always"

        def model_meta(self):
            from zoo.meta import CheckpointMeta

            return CheckpointMeta.from_dict(self.meta)

        def _run(self, x: np.ndarray) -> np.ndarray:
            import torch

            with torch.inference_mode():
                return torch.softmax(self.model.eval()(torch.from_numpy(x)), -1).numpy()

    yield NumpyBackend
    unregister_backend(NAME)


def test_a_registered_backend_is_listed_created_and_checked(numpy_backend, tmp_path):
    assert NAME in backends.backend_names() and NAME in bench_order()
    assert [s.name for s in backends.list_backends()][-1] == NAME
    assert auto_order().index(NAME) == auto_order().index("ort-cpu") + 1  # rank 35: between ort-cpu and torch-cpu
    assert NAME in default_fallbacks()
    run = make_run(tmp_path)
    be = create_backend(NAME, run, log=None)  # `log` is for ONNX backends: never passed to a checkpoint one
    assert isinstance(be, backends.Backend) and be.spec is backend_spec(NAME) and be.name == NAME
    ref = create_backend("torch-cpu", run).predict(clips(4))
    np.testing.assert_allclose(be.predict(clips(4)), ref, atol=1e-5)
    assert be.features_predictor(run) == (None, f"{NAME} has no features-in entry point")


def test_the_live_app_and_the_cli_offer_it(numpy_backend, tmp_path):
    from cli import live
    from cli.predict import build_parser
    from realtime.predictor import load_predictor

    assert NAME in live.build_parser().format_help() and NAME in build_parser().format_help()
    pred = load_predictor(str(make_run(tmp_path)), NAME, streaming=True)
    assert pred.backend == NAME and pred.providers == ("numpy",)
    assert pred.open_stream is None and "no streaming path" in pred.stream_note


def test_registration_is_checked(numpy_backend):
    with pytest.raises(ValueError, match="registered twice"):
        register_backend(NAME, artifact="checkpoint", device="cpu")(type("Again", (BackendBase,), {}))
    with pytest.raises(ValueError, match="artifact must be one of"):
        register_backend("test-bad", artifact="tflite", device="cpu")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        backend_spec("nope")


def test_the_shipped_entries():
    assert backend_spec("ort-int8").min_agreement == 0.99 and backend_spec("ort-cpu").min_agreement == 1.0
    assert fp32_counterpart("ort-int8") == "ort-cpu" and fp32_counterpart("ort-cpu") is None
    assert auto_order()[0] == "ort-cuda" and "ort-int8" not in auto_order()
    assert not backend_spec("torch-cpu").runs_onnx_files and backend_spec("ort-cuda").runs_onnx_files
