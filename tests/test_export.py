"""ONNX export: graph shape, metadata round trip, parity gate, cache, bad files, the CLI."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from backends import ModelFileError, create_backend
from backends.clips import Clips
from backends.export import FEATURES_TENSOR, ParityError, export_onnx, resolve_onnx
from backends.meta import read_onnx_info
from kws.frontend import FrontendConfig
from tests._backend_fixtures import clips, make_run
from zoo import load_model
from zoo.model import ModelConfig


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    model, meta = load_model(run_dir)
    path = tmp_path_factory.mktemp("onnx") / "dscnn.onnx"
    report = export_onnx(model, path, checkpoint_meta={**meta, "accuracy": {"gsc12": 0.9}}, source=str(run_dir),
                         clips=Clips(clips(16), None, "synthetic test clips"), log=None)
    return model, path, report


@pytest.fixture(autouse=True)
def private_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("KWS_EXPORTS", str(tmp_path / "exports"))


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_waveform_graph_dynamic_batch_and_no_spectral_ops(exported):
    model, path, report = exported
    assert report.input_kind == "waveform" and report.opset == 17
    g = onnx.load(str(path))
    onnx.checker.check_model(g, full_check=True)
    assert not {n.op_type for n in g.graph.node} & {"STFT", "DFT"}
    assert FEATURES_TENSOR in {o for n in g.graph.node for o in n.output}  # int8 cuts the graph here
    sess = _session(path)
    (inp,) = sess.get_inputs()
    assert inp.name == "waveform" and inp.shape[1] == 16000 and not isinstance(inp.shape[0], int)
    for batch in (1, 5):
        probs = sess.run(None, {"waveform": clips(batch)})[0]
        assert probs.shape == (batch, len(model.labels))
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_parity_report_is_recorded(exported):
    _, path, report = exported
    assert report.parity.top1_agreement == 1.0 and report.parity.n == 16
    assert report.parity.max_abs_diff < 1e-3
    recorded = json.loads(read_onnx_info(path).props["parity"])
    assert recorded["top1_agreement"] == 1.0 and recorded["clips"] == "synthetic test clips"


def test_metadata_round_trip(exported):
    model, path, _ = exported
    info = read_onnx_info(path)
    assert info.labels == model.labels
    assert info.frontend == model.cfg.frontend and isinstance(info.frontend, FrontendConfig)
    assert ModelConfig.from_json(info.props["model_config"]) == model.cfg
    assert info.model_name == "dscnn" and info.input_kind == "waveform" and info.precision == "fp32"
    assert info.json("accuracy") == {"gsc12": 0.9}
    assert "random init" in info.json("training_data")
    tools = info.json("export_tools")
    assert tools["torch"] and tools["onnx"] == onnx.__version__ and tools["onnxruntime"] == ort.__version__
    assert info.props["opset"] == "17"
    # the same metadata through onnxruntime, which is what the backends read
    assert json.loads(_session(path).get_modelmeta().custom_metadata_map["labels"]) == list(model.labels)


def test_features_in_export_and_waveform_backend_refuses_it(run_dir, tmp_path):
    model, _ = load_model(run_dir)
    path = tmp_path / "f.onnx"
    r = export_onnx(model, path, features_in=True, clips=Clips(clips(8), None, "synthetic"), log=None)
    assert r.parity.top1_agreement == 1.0
    shape = _session(path).get_inputs()[0].shape
    assert shape[1:] == [1, 128, 63]
    assert read_onnx_info(path).input_kind == "features"
    with pytest.raises(ModelFileError, match="features-in model"):
        create_backend("ort-cpu", path)


def test_opset_18_and_timm_model_with_three_channels(tmp_path):
    run = make_run(tmp_path, "mobilenetv3_small_100")
    model, _ = load_model(run)
    assert model.cfg.frontend.in_chans == 3
    r = export_onnx(model, tmp_path / "m.onnx", opset=18, clips=Clips(clips(8), None, "synthetic"), log=None)
    # a random-init deep net amplifies the frontend's 1e-5 float differences; top-1 is the gate
    assert r.opset == 18 and r.parity.top1_agreement == 1.0 and r.parity.max_abs_diff < 1e-2
    ops = [n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert ops.count("Resize") == 9  # its squeeze-excite gates, kept in ORT's blocked layout (backends.optimize)


def test_parity_failure_is_loud_and_leaves_no_file(run_dir, tmp_path, monkeypatch):
    import backends.export as ex

    model, _ = load_model(run_dir)
    real = ex.torch_probs
    monkeypatch.setattr(ex, "torch_probs", lambda m, w: np.roll(real(m, w), 1, axis=1))  # a "wrong" reference
    path = tmp_path / "bad.onnx"
    with pytest.raises(ParityError, match="disagrees with PyTorch"):
        export_onnx(model, path, clips=Clips(clips(8), None, "synthetic"), log=None)
    assert not path.exists()
    from cli.export import main

    assert main([str(run_dir), "-o", str(tmp_path / "cli.onnx"), "--clips", "8"]) == 2


def test_invalid_onnx_and_missing_metadata(exported, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf at all" * 10)
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        read_onnx_info(junk)
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        create_backend("ort-cpu", junk)
    g = onnx.load(str(exported[1]))
    del g.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(g, str(bare))
    with pytest.raises(ModelFileError, match="frontend metadata"):
        create_backend("ort-cpu", bare)


def test_pickles_are_never_loaded(tmp_path):
    import torch

    pt = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, pt)
    with pytest.raises(ValueError, match="safetensors"):
        create_backend("torch-cpu", pt)
    with pytest.raises(ValueError, match="safetensors"):
        create_backend("ort-cpu", pt)


def test_cache_by_weights_hash(run_dir, tmp_path):
    a = resolve_onnx(run_dir, log=None)
    mtime = a.stat().st_mtime_ns
    assert resolve_onnx(run_dir / "best.safetensors", log=None) == a and a.stat().st_mtime_ns == mtime
    assert a.parent.parent == tmp_path / "exports" and a.parent.name.startswith("dscnn-")
    other = make_run(tmp_path / "other", "dscnn")  # same architecture, other weights
    model, meta = load_model(other)
    import torch

    with torch.no_grad():
        model.head[-1].bias.add_(1.0)
    from zoo import save_checkpoint

    save_checkpoint(model, other / "best.safetensors", meta)
    assert resolve_onnx(other, log=None).parent != a.parent


def test_cli(run_dir, tmp_path, capsys):
    from cli.export import main

    out = tmp_path / "cli.onnx"
    assert main([str(run_dir), "-o", str(out), "--clips", "8", "--json", str(tmp_path / "r.json")]) == 0
    assert read_onnx_info(out).model_name == "dscnn"
    assert json.loads((tmp_path / "r.json").read_text())["export"]["parity"]["top1_agreement"] == 1.0
    assert main([str(out)]) == 1  # already ONNX and no --int8
    assert "already ONNX" in capsys.readouterr().err
    assert main(["no_such_model_xyz"]) == 1
