"""Backends: parity with torch, int8, availability, and the CUDA/DirectML selection logic
exercised through the real onnxruntime API (providers monkeypatched, sessions inspected)."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from backends import (Backend, BackendUnavailable, as_batch, backend_class, backend_names, create_backend,
                      list_backends)
from backends.clips import Clips
from backends.export import resolve_onnx
from tests._backend_fixtures import clips, make_run


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KWS_EXPORTS", str(tmp_path_factory.mktemp("exports")))
    run = make_run(tmp_path_factory.mktemp("runs"))
    yield run, resolve_onnx(run, log=None)
    mp.undo()


@pytest.fixture(scope="module")
def torch_ref(env):
    be = create_backend("torch-cpu", env[0])
    return be, be.predict(clips(24))


def test_list_backends_says_why():
    status = {s.name: s for s in list_backends()}
    assert tuple(status) == backend_names()
    for s in status.values():
        assert s.reason, s
    assert status["ort-cpu"].available and status["torch-cpu"].available
    if not status["ort-cuda"].available:
        assert "onnxruntime-gpu" in status["ort-cuda"].reason
    if not status["ort-directml"].available:
        assert "onnxruntime-directml" in status["ort-directml"].reason and "Windows" in status["ort-directml"].reason
    if not status["torch-cuda"].available:
        assert "GPU" in status["torch-cuda"].reason or "CUDA" in status["torch-cuda"].reason


@pytest.mark.parametrize("name", ["ort-cpu", "ort-int8"])
def test_ort_backends_match_torch(env, torch_ref, name):
    run, fp32 = env
    if name == "ort-int8":  # a quick two-variant quantization into the cache ort-int8 reads
        from backends.quantize import QUICK_VARIANTS, quantize_int8

        quantize_int8(fp32, fp32.with_name("model.int8.onnx"), calib=Clips(clips(16, seed=9), None, "syn"),
                      evalset=Clips(clips(64, seed=11), None, "syn"), variants=QUICK_VARIANTS, timing_rounds=2,
                      log=None)
    tb, ref = torch_ref
    be = create_backend(name, run, threads=1)
    assert isinstance(be, Backend)
    assert be.name == name and be.device == "cpu" and be.providers[0] == "CPUExecutionProvider"
    assert be.labels == tb.labels and be.frontend == tb.frontend and be.model_name == "dscnn" and be.threads == 1
    be.warmup()
    got = be.predict(clips(24))
    agree = (got.argmax(1) == ref.argmax(1)).mean()
    if name == "ort-cpu":
        assert agree == 1.0 and np.abs(got - ref).max() < 1e-3
    else:
        q = json.loads(be.info.props["quantization"])
        # int8 is served only when it measured faster and kept >= 99 % agreement; else the fp32 graph
        assert q["chosen"] == "fp32" or (q["speedup"] >= 1.05 and q["top1_agreement"] >= 0.99)
        assert agree >= (1.0 if q["chosen"] == "fp32" else 0.9)


def test_predict_input_checks(env):
    be = create_backend("ort-cpu", env[1])
    assert be.predict(clips(1)[0]).shape == (1, len(be.labels))  # 1-D clip = batch of one
    with pytest.raises(ValueError, match="16000 samples"):
        be.predict(np.zeros((2, 8000), np.float32))
    with pytest.raises(ValueError, match="fit_length"):
        as_batch(np.zeros(100), 16000)
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tpu", env[1])


def test_torch_cpu_refuses_onnx(env):
    from backends import ModelFileError

    with pytest.raises(ModelFileError, match="ort-"):
        create_backend("torch-cpu", env[1])


def test_torch_cuda_unavailable_says_why():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: torch-cuda runs (see bench.selfcheck)")
    with pytest.raises(BackendUnavailable, match="torch-cuda"):
        create_backend("torch-cuda", "dscnn")


# ---- provider selection with the real onnxruntime API --------------------------------------


class RecordingSession:
    """Wraps a real CPU InferenceSession; records how it was asked for and claims `claim` providers."""

    created: list = []
    claim: list[str] = []

    def __init__(self, path, sess_options=None, providers=None):
        self.path, self.options, self.asked = path, sess_options, providers
        self._real = _REAL_SESSION(path, providers=["CPUExecutionProvider"])
        RecordingSession.created.append(self)

    def get_providers(self):
        return list(self.claim)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def io_binding(self):
        return RecordingBinding(self._real)

    def run_with_iobinding(self, binding, run_options=None):
        binding.run()


class RecordingBinding:
    calls: list = []

    def __init__(self, sess):
        self.sess, self.inputs, self.out = sess, {}, None

    def bind_ortvalue_input(self, name, value):
        RecordingBinding.calls.append(("input", name, value.device))
        self.inputs[name] = value.array

    def bind_output(self, name, device_type="cpu", device_id=0):
        RecordingBinding.calls.append(("output", name, device_type, device_id))

    def run(self):
        self.out = self.sess.run(None, self.inputs)

    def copy_outputs_to_cpu(self):
        return self.out


class FakeOrtValue:
    def __init__(self, array, device):
        self.array, self.device = array, device

    @staticmethod
    def ortvalue_from_numpy(array, device_type="cpu", device_id=0):
        return FakeOrtValue(array, (device_type, device_id))


_REAL_SESSION = ort.InferenceSession


@pytest.fixture()
def fake_ort(monkeypatch):
    RecordingSession.created, RecordingBinding.calls = [], []

    def use(available: list[str], claim: list[str]):
        monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
        monkeypatch.setattr(ort, "InferenceSession", RecordingSession)
        monkeypatch.setattr(ort, "OrtValue", FakeOrtValue)
        RecordingSession.claim = claim
    return use


def test_cuda_provider_options_and_io_binding(env, fake_ort, torch_ref):
    fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"])
    be = create_backend("ort-cuda", env[1], device_id=1, provider_options={"gpu_mem_limit": 1 << 30})
    (sess,) = RecordingSession.created
    assert sess.asked == [("CUDAExecutionProvider", {
        "device_id": 1, "cudnn_conv_algo_search": "EXHAUSTIVE", "arena_extend_strategy": "kSameAsRequested",
        "do_copy_in_default_stream": True, "gpu_mem_limit": 1 << 30})]  # only the provider asked for
    assert sess.options.intra_op_num_threads == 1 and sess.options.inter_op_num_threads == 1
    assert be.device == "cuda:1" and be.providers[0] == "CUDAExecutionProvider"
    got = be.predict(clips(24))
    assert ("input", "waveform", ("cuda", 1)) in RecordingBinding.calls
    assert ("output", "probs", "cuda", 1) in RecordingBinding.calls
    assert (got.argmax(1) == torch_ref[1].argmax(1)).all()


def test_cuda_silent_cpu_fallback_is_refused(env, fake_ort):
    # onnxruntime-gpu without its CUDA libraries: the session quietly runs on the CPU
    fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="asked for CUDAExecutionProvider but the session runs on "
                                                 "CPUExecutionProvider.*cuDNN"):
        create_backend("ort-cuda", env[1])


def test_cuda_missing_from_build(env, fake_ort):
    fake_ort(["CPUExecutionProvider"], ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        create_backend("ort-cuda", env[1])
    assert not RecordingSession.created  # refused before any session was made


def test_directml_session_options(env, fake_ort, monkeypatch):
    import backends.ort as bo

    monkeypatch.setattr(bo.platform, "system", lambda: "Windows")
    fake_ort(["DmlExecutionProvider", "CPUExecutionProvider"], ["DmlExecutionProvider", "CPUExecutionProvider"])
    be = create_backend("ort-directml", env[1], threads=2)
    (sess,) = RecordingSession.created
    assert sess.asked == [("DmlExecutionProvider", {"device_id": 0})]
    assert sess.options.enable_mem_pattern is False
    assert sess.options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert sess.options.intra_op_num_threads == 2
    assert be.device == "dml:0" and be.predict(clips(2)).shape[0] == 2
    fake_ort(["DmlExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="asked for DmlExecutionProvider.*driver"):
        create_backend("ort-directml", env[1])


def test_directml_off_windows():
    ok, why = backend_class("ort-directml").availability()
    import platform

    if platform.system() != "Windows":
        assert not ok and "Windows" in why


# ---- int8: what stays float, and the never-slower rule ----------------------------------------


def _q_nodes(model):
    return [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


def test_int8_keeps_frontend_and_depthwise_float(env, tmp_path):
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from backends.onnxgraph import join, split
    from backends.quantize import Variant, _quantize_net, node_groups

    front, net = split(onnx.load(str(env[1])))
    onnx.save(net, str(tmp_path / "net.onnx"))
    quant_pre_process(str(tmp_path / "net.onnx"), str(tmp_path / "pre.onnx"))
    groups = node_groups(onnx.load(str(tmp_path / "pre.onnx")))
    assert len(groups["depthwise"]) == 6 and groups["first"] and groups["last"]  # DS-CNN: 6 depthwise blocks
    feats = np.random.default_rng(0).standard_normal((8, 1, 128, 63)).astype(np.float32)
    _quantize_net(tmp_path / "pre.onnx", tmp_path / "q.onnx", Variant("t"), feats, exclude=groups["depthwise"])
    q = onnx.load(str(tmp_path / "q.onnx"))
    merged = join(front, q)
    assert _q_nodes(q) and not [n for n in _q_nodes(merged) if n.name.startswith("frontend/")]
    assert not [n for n in merged.graph.node if n.name.startswith("frontend/") and n.op_type.startswith("QLinear")]
    producers = {o: n for n in q.graph.node for o in n.output}
    for n in q.graph.node:
        if n.name in groups["depthwise"]:  # float weights: no DequantizeLinear feeds them
            w = producers.get(n.input[1])
            assert w is None or w.op_type != "DequantizeLinear", n.name


@pytest.mark.parametrize("int8_faster", [False, True])
def test_int8_is_never_slower(env, tmp_path, monkeypatch, int8_faster):
    import backends.quantize as bq
    from backends.meta import read_onnx_info

    def fake_timing(fns, rounds=1, per_round=1, warmup=0):  # fp32 and every variant, timed together
        fast, slow = np.full(10, 0.001), np.full(10, 0.002)
        return {k: (slow if (k == "fp32") == int8_faster else fast) for k in fns}

    monkeypatch.setattr(bq, "interleaved_latency", fake_timing)
    out = tmp_path / "m.int8.onnx"
    r = bq.quantize_int8(env[1], out, calib=Clips(clips(8, seed=5), None, "syn"),
                         evalset=Clips(clips(16, seed=6), None, "syn"), variants=bq.QUICK_VARIANTS[:1],
                         min_agreement=0.0, log=None)
    info = read_onnx_info(out)
    import onnx

    n_q = len(_q_nodes(onnx.load(str(out))))
    if int8_faster:
        assert r.chosen == "qdq-dense" and info.precision == "int8" and n_q > 0 and r.speedup == pytest.approx(2.0)
    else:
        assert r.chosen == "fp32" and info.precision == "fp32" and n_q == 0 and "fp32 graph" in r.reason
    assert json.loads(info.props["quantization"])["chosen"] == r.chosen
