"""int8 policies (backends.quantize): weight-bound layers, and finding the layers int8 damages most."""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from backends.onnxgraph import cpu_session, run_batched
from backends.quantize import (Variant, _float_sensitive, _quantize_net, layer_sensitivity,
                               node_groups)


def _export(module: nn.Module, shape: tuple[int, ...], path) -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(2, *shape),), buf, input_names=["features"],
                          output_names=["probs"], dynamic_axes={"features": {0: "batch"}, "probs": {0: "batch"}},
                          opset_version=17, dynamo=False)
    path.write_bytes(buf.getvalue())


class Pyramid(nn.Module):
    """A conv at 16 x 16 positions, then two at 4 x 4, then a dense head."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Conv2d(1, 16, 3, padding=1)
        self.down = nn.Conv2d(16, 32, 4, stride=4)
        self.small = nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.small(torch.relu(self.down(torch.relu(self.big(x))))))
        return torch.softmax(self.fc(x.mean((2, 3))), -1)


def test_weight_bound_layers_are_the_ones_with_few_positions(tmp_path):
    _export(Pyramid(), (1, 16, 16), tmp_path / "net.onnx")
    net = onnx.load(str(tmp_path / "net.onnx"))
    names = {n.op_type + ":" + n.name for n in net.graph.node}
    groups = node_groups(net)
    assert groups["spatial"] == ["/big/Conv"], (groups, names)  # 256 positions; the 4 x 4 convs are weight-bound


class Fragile(nn.Module):
    """conv1 -> a float Mul that gives one channel a 1000x larger range -> conv2 -> head.

    conv2 ignores that channel, but quantized alone it reads its input with 8 bits over the
    outlier's range, which rounds the seven channels it uses to a few levels; conv1 alone
    quantizes only its own, normal, output.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        with torch.no_grad():
            self.conv2.weight[:, 0] = 0
        self.fc = nn.Linear(8 * 4, 6)
        self.register_buffer("gain", torch.tensor([1000.0] + [1.0] * 7).view(1, 8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x)) * self.gain
        x = nn.functional.adaptive_avg_pool2d(torch.relu(self.conv2(x)), 2).flatten(1)
        return torch.softmax(self.fc(x) * 20.0, -1)


def test_sensitivity_ranks_the_fragile_layer_first_and_keeps_it_float(tmp_path):
    pre = tmp_path / "net.onnx"
    _export(Fragile(), (1, 12, 12), pre)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((64, 1, 12, 12)).astype(np.float32)
    feats += np.kron(rng.uniform(-3, 3, (64, 1, 2, 2)), np.ones((6, 6))).astype(np.float32)  # answers that vary
    ref = run_batched(cpu_session(str(pre), 1), feats)
    assert np.bincount(ref.argmax(1)).max() < 0.6 * len(ref)  # not a constant answer: agreement can fail
    cache = tmp_path / "calibration.json"
    ranked = layer_sensitivity(pre, tmp_path, ["/conv1/Conv", "/conv2/Conv", "/fc/Gemm"], feats, ref, cache)
    assert [r["node"] for r in ranked][0] == "/conv2/Conv", ranked
    assert ranked[0]["kl"] > 10 * ranked[-1]["kl"] and cache.is_file()  # calibrated once, reused after
    chosen, agree = _float_sensitive(pre, tmp_path, [], [r["node"] for r in ranked], feats, ref, cache,
                                     min_agreement=0.95, threads=1)
    assert chosen[0] == "/conv2/Conv" and agree >= 0.95
    # against every layer in int8
    _quantize_net(pre, tmp_path / "all.onnx", Variant("all"), feats, cache=cache)
    got = run_batched(cpu_session(str(tmp_path / "all.onnx"), 1), feats)
    assert (got.argmax(1) == ref.argmax(1)).mean() < 0.9 < agree


def test_calibration_cache_is_not_needed(tmp_path):
    # without a cache every call calibrates on its own: the same graph as with one
    pre = tmp_path / "net.onnx"
    _export(Pyramid(), (1, 16, 16), pre)
    feats = np.random.default_rng(1).standard_normal((16, 1, 16, 16)).astype(np.float32)
    _quantize_net(pre, tmp_path / "a.onnx", Variant("a"), feats)
    _quantize_net(pre, tmp_path / "b.onnx", Variant("b"), feats, cache=tmp_path / "c.json")
    a, b = (run_batched(cpu_session(str(tmp_path / f"{k}.onnx"), 1), feats) for k in "ab")
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("only", [["/small/Conv"], ["/fc/Gemm"]])
def test_only_the_named_layer_is_quantized(tmp_path, only):
    pre = tmp_path / "net.onnx"
    _export(Pyramid(), (1, 16, 16), pre)
    feats = np.random.default_rng(2).standard_normal((16, 1, 16, 16)).astype(np.float32)
    _quantize_net(pre, tmp_path / "q.onnx", Variant("q"), feats, only=only)
    q = onnx.load(str(tmp_path / "q.onnx"))
    producer = {o: n.op_type for n in q.graph.node for o in n.output}
    int8 = [n.name for n in q.graph.node if n.op_type in ("Conv", "Gemm") and producer.get(n.input[1]) == "DequantizeLinear"]
    assert int8 == only


def test_int8_of_a_squeeze_excite_model(tmp_path, monkeypatch):
    """The export's gate Resizes (backends.optimize) are undone in the int8 graph, and the sensitive
    variant names the layers it kept float, from a ranking the report carries."""
    from backends.clips import Clips
    from backends.export import export_onnx
    import backends.quantize as bq
    from backends.quantize import VARIANTS, quantize_int8
    from tests._backend_fixtures import clips, make_run

    # int8 timed faster than fp32, so that an int8 graph is written and can be inspected
    monkeypatch.setattr(bq, "interleaved_latency", lambda fns, **kw: {k: np.full(4, 2e-3 if k == "fp32" else 1e-3)
                                                                        for k in fns})
    from zoo import load_model

    model, _ = load_model(make_run(tmp_path, "mobilenetv3_small_100"))
    fp32 = tmp_path / "m.onnx"
    export_onnx(model, fp32, clips=Clips(clips(4), None, "synthetic"), log=None)
    assert any(n.op_type == "Resize" for n in onnx.load(str(fp32)).graph.node)
    variants = [v for v in VARIANTS if v.name in ("qdq-dense", "qdq-dense-float-sensitive")]
    r = quantize_int8(fp32, tmp_path / "m.int8.onnx", calib=Clips(clips(8, seed=5), None, "syn"),
                      evalset=Clips(clips(8, seed=6), None, "syn"), variants=variants, min_agreement=0.0,
                      timing_rounds=1, log=None)
    assert r.sensitivity and all(a["kl"] >= b["kl"] for a, b in zip(r.sensitivity, r.sensitivity[1:]))
    by_name = {c.variant: c for c in r.candidates}
    assert set(by_name) == {"qdq-dense", "qdq-dense-float-sensitive"} and not any(c.note.startswith("failed")
                                                                                 for c in r.candidates)
    sens = by_name["qdq-dense-float-sensitive"]
    assert sens.sensitive_float and sens.sensitive_float[0] == r.sensitivity[0]["node"]
    assert sens.float_layers > by_name["qdq-dense"].float_layers
    assert r.chosen != "fp32"
    assert not any(n.op_type == "Resize" for n in onnx.load(str(tmp_path / "m.int8.onnx")).graph.node)


def test_failed_shape_inference_leaves_nothing_in_the_cwd(tmp_path, monkeypatch):
    """ORT saves a partial model (sym_shape_infer_temp.onnx + a weights-sized uuid .data file) into the
    current directory when symbolic shape inference is incomplete: the quantizer runs it in its temp dir,
    and the failure is a ModelFileError naming the file."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from backends.base import ModelFileError
    from backends.clips import Clips
    from backends.export import resolve_onnx
    from backends.quantize import QUICK_VARIANTS, quantize_int8
    from tests._backend_fixtures import clips, make_run

    monkeypatch.setenv("KWS_EXPORTS", str(tmp_path / "exports"))
    fp32 = resolve_onnx(make_run(tmp_path / "runs"), log=None)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    def incomplete(self) -> bool:  # one pass that ends with shapes left unknown: ORT's own failure path
        self.run_ = False
        return False

    monkeypatch.setattr(SymbolicShapeInference, "_infer_impl", incomplete)
    with pytest.raises(ModelFileError, match="symbolic shape inference"):
        quantize_int8(fp32, tmp_path / "m.int8.onnx", calib=Clips(clips(4), None, "syn"),
                      evalset=Clips(clips(4, seed=6), None, "syn"), variants=QUICK_VARIANTS[:1], log=None)
    assert list(cwd.iterdir()) == []


def test_percentile_calibration_clips_an_outlier_that_minmax_keeps(tmp_path):
    """One huge activation in the calibration data stretches MinMax's range; the percentile range ignores it,
    so the bulk of the values keeps its resolution."""
    import json

    pre = tmp_path / "net.onnx"
    _export(Pyramid(), (1, 16, 16), pre)
    feats = np.random.default_rng(3).standard_normal((32, 1, 16, 16)).astype(np.float32)
    feats[0, 0, 0, 0] = 1e4
    ranges = {}
    for calibration in ("minmax", "percentile"):
        cache = tmp_path / f"{calibration}.json"
        _quantize_net(pre, tmp_path / f"{calibration}.onnx", Variant("v", calibration=calibration), feats, cache=cache)
        ranges[calibration] = json.loads(cache.read_text())
    text = {k: json.dumps(v) for k, v in ranges.items()}
    assert "10000" in text["minmax"] and "10000" not in text["percentile"]
    with pytest.raises(ValueError, match="calibration 'kl'"):
        _quantize_net(pre, tmp_path / "x.onnx", Variant("x", calibration="kl"), feats)


def test_a_changed_quantization_recipe_is_a_new_cache_entry(monkeypatch):
    """The export cache files int8 graphs under the recipe's key: new variants quantize again."""
    import backends.quantize as bq
    from backends import export

    before, name = bq.recipe_key(), export._int8_name()
    assert before in name and name.endswith(".onnx")
    monkeypatch.setattr(bq, "VARIANTS", bq.VARIANTS[:-1])
    assert bq.recipe_key() != before and export._int8_name() != name
    monkeypatch.setattr(bq, "MIN_AGREEMENT", 0.98)
    assert bq.recipe_key() != before
