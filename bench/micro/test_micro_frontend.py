"""The log-mel frontend: torch eager (FFT path and the export's DFT-conv path), numpy reference, ONNX Runtime."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kws.frontend import FrontendConfig, LogMel, log_mel_reference


@pytest.fixture(scope="module", params=[1, 3], ids=["1ch", "3ch"])
def cfg(request) -> FrontendConfig:
    return FrontendConfig(in_chans=request.param)


def _single_thread():
    torch.set_num_threads(1)  # comparable with ORT's intra_op_num_threads=1 below


def test_frontend_torch_eager_fft(benchmark, clip, cfg):
    _single_thread()
    fe = LogMel(cfg).eval()
    x = torch.from_numpy(clip)
    with torch.inference_mode():
        out = benchmark(fe, x)
    assert out.shape == (1, cfg.in_chans, cfg.n_mels, cfg.n_frames)


def test_frontend_torch_eager_dft_conv(benchmark, clip, cfg):
    _single_thread()
    fe = LogMel(cfg).eval()
    fe.use_fft = False  # the formulation the ONNX export traces
    x = torch.from_numpy(clip)
    with torch.inference_mode():
        out = benchmark(fe, x)
    assert out.shape == (1, cfg.in_chans, cfg.n_mels, cfg.n_frames)


def test_frontend_numpy_reference(benchmark, clip):
    out = benchmark(log_mel_reference, clip)
    assert out.shape[0] == 1


@pytest.fixture(scope="module")
def ort_frontend(tmp_path_factory, cfg):
    """The frontend alone as an ONNX graph (the same TorchScript exporter the backends use)."""
    ort = pytest.importorskip("onnxruntime")
    fe = LogMel(cfg).eval()
    fe.use_fft = False
    path = tmp_path_factory.mktemp("fe") / "frontend.onnx"
    with torch.no_grad():
        torch.onnx.export(fe, (torch.zeros(1, cfg.clip_samples),), str(path), input_names=["waveform"],
                          output_names=["features"], dynamic_axes={"waveform": {0: "b"}, "features": {0: "b"}},
                          opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_frontend_onnxruntime(benchmark, clip, ort_frontend, cfg):
    out = benchmark(ort_frontend.run, None, {"waveform": clip})[0]
    ref = LogMel(cfg)(torch.from_numpy(clip)).numpy()
    assert np.abs(out - ref).max() < 1e-2  # the graph computes the same features
