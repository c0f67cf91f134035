"""Graph rewrites (backends.optimize): the same numbers, and the layout ORT runs them in."""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from backends.optimize import broadcast_gates_to_resize, optimize, resize_gates_to_broadcast


class SE(nn.Module):
    """A squeeze-excite block as timm builds it, plus Muls the rewrite must leave alone."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, c, 3, padding=1)
        self.reduce, self.expand = nn.Conv2d(c, 16, 1), nn.Conv2d(16, c, 1)
        self.out = nn.Conv2d(c, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        s = nn.functional.adaptive_avg_pool2d(x, 1)  # GlobalAveragePool, as backends.export makes it
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(s))))
        y = self.out(x * gate)  # the SE gate: [N, C, 1, 1] over [N, C, H, W]
        return (y * y * 0.5) * (s * gate).sum()  # same shapes, a scalar, 1x1 by 1x1: not gates


def _graph() -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(SE().eval(), (torch.zeros(2, 16, 12, 10),), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def _ort_all(model: onnx.ModelProto, tmp_path, name: str):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp_path / f"{name}.onnx")
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess, [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


def test_se_gate_becomes_resize_with_same_numbers(tmp_path):
    before = _graph()
    after = onnx.ModelProto()
    after.CopyFrom(before)
    assert broadcast_gates_to_resize(after) == 1  # the gate only, not the other three Muls
    onnx.checker.check_model(after, full_check=True)
    resize = [n for n in after.graph.node if n.op_type == "Resize"]
    assert len(resize) == 1
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in after.graph.value_info}
    assert shapes[resize[0].output[0]] == ["batch", 32, 12, 10]  # the batch symbol the layout pass needs
    x = np.random.default_rng(0).standard_normal((3, 16, 12, 10)).astype(np.float32)
    sess_a, ops_a = _ort_all(before, tmp_path, "before")
    sess_b, ops_b = _ort_all(after, tmp_path, "after")
    np.testing.assert_array_equal(sess_a.run(None, {"x": x})[0], sess_b.run(None, {"x": x})[0])
    reorders_a, reorders_b = (sum(o in ("ReorderInput", "ReorderOutput") for o in ops) for ops in (ops_a, ops_b))
    if not reorders_a:
        pytest.skip("ORT's NCHWc layout is not used on this CPU: nothing to keep blocked")
    # before: the gate's Mul ran in NCHW between reorders; after: blocked, so fewer reorders
    assert reorders_b <= reorders_a - 2, (ops_a, ops_b)


def test_optimize_reports_each_rewrite_and_is_idempotent():
    g = _graph()
    assert optimize(g) == {"broadcast_gates_to_resize": 1}
    assert optimize(g) == {"broadcast_gates_to_resize": 0}  # the Mul now has equal shapes


def test_resize_undone_for_int8_graphs():
    g = _graph()
    mul_inputs = [list(n.input) for n in g.graph.node if n.op_type == "Mul"]
    broadcast_gates_to_resize(g)
    assert resize_gates_to_broadcast(g) == 1
    assert not [n for n in g.graph.node if n.op_type == "Resize"]
    assert [list(n.input) for n in g.graph.node if n.op_type == "Mul"] == mul_inputs
    assert not [t for t in g.graph.initializer if t.name.endswith("/scales")]
    onnx.checker.check_model(g, full_check=True)


def test_a_resize_that_changes_the_product_is_kept():
    # Mul(Resize(g [N,C,1,1]) -> [N,C,4,4], y [N,C,1,1]): undoing it would shrink the product to 1x1
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        [helper.make_node("Resize", ["g", "", "s"], ["r"], mode="nearest"), helper.make_node("Mul", ["r", "y"], ["out"])],
        "g", [helper.make_tensor_value_info("g", TensorProto.FLOAT, ["n", 8, 1, 1]),
              helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, 1, 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1, 1, 4, 4], np.float32), "s")],
        value_info=[helper.make_tensor_value_info("r", TensorProto.FLOAT, ["n", 8, 4, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert resize_gates_to_broadcast(m) == 0
