"""Crafted hostile files of the audit's kinds, one generator each, and a tracer of file opens.

`onnx_model(...)` is a small waveform-in graph with the kws metadata, valid except for what a
test changes; `put_external(model, placement)` moves one tensor of it to a data file beside the
model at each place an ONNX file can hold a tensor; `opens(folder)` lists the files of `folder`
opened (by this process, ONNX Runtime's C++ included) while it is active, through inotify.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import struct
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from kws.frontend import FrontendConfig

CLIP = 16000
DATA_FILE = "weights.bin"


def metadata(labels=("yes", "no"), **extra) -> dict[str, str]:
    return {"labels": json.dumps(list(labels)) if not isinstance(labels, str) else labels,
            "frontend": json.dumps(FrontendConfig().to_dict()), "input_kind": "waveform", **extra}


def onnx_model(nodes: list | None = None, n_out: int = 2, out_type=TensorProto.FLOAT, props: dict | None = None,
               initializers: list | None = None, opset: int = 17, out_shape=None) -> onnx.ModelProto:
    """waveform [batch, 16000] -> probs [batch, n_out]: by default a softmax over two slices' means."""
    x = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", CLIP])
    y = helper.make_tensor_value_info("probs", out_type, out_shape or ["batch", n_out])
    if nodes is None:
        nodes = [helper.make_node("Reshape", ["waveform", "shape"], ["r"]),
                 helper.make_node("ReduceMean", ["r"], ["m"], axes=[2], keepdims=0),
                 helper.make_node("Softmax", ["m"], ["probs"], axis=1)]
        initializers = [numpy_helper.from_array(np.array([0, n_out, -1], np.int64), "shape")]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=initializers or [])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    for k, v in (metadata() if props is None else props).items():
        m.metadata_props.add(key=k, value=v)
    return m


def external(name: str, n: int = 4, dtype=np.float32) -> TensorProto:
    """A tensor whose data is said to be in DATA_FILE, beside the model."""
    t = numpy_helper.from_array(np.zeros(n, dtype), name)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", DATA_FILE), ("offset", "0"), ("length", str(n * np.dtype(dtype).itemsize))):
        t.external_data.add(key=k, value=v)
    return t


def _sparse(values: TensorProto, indices: TensorProto) -> onnx.SparseTensorProto:
    s = onnx.SparseTensorProto()
    s.values.CopyFrom(values)
    s.indices.CopyFrom(indices)
    s.dims.extend([8])
    return s


def _plain(name: str, n: int = 4, dtype=np.float32) -> TensorProto:
    return numpy_helper.from_array(np.zeros(n, dtype), name)


def _const_graph(t_attr: dict) -> onnx.GraphProto:
    out = helper.make_tensor_value_info("c", TensorProto.FLOAT, None)
    return helper.make_graph([helper.make_node("Constant", [], ["c"], **t_attr)], "sub", [], [out])


def _with_node(m: onnx.ModelProto, node) -> None:
    m.graph.node.insert(0, node)


PLACEMENTS: dict[str, Callable[[onnx.ModelProto], None]] = {
    "initializer": lambda m: m.graph.initializer.append(external("w")),
    "sparse initializer values": lambda m: m.graph.sparse_initializer.append(
        _sparse(external("sv"), _plain("si", 4, np.int64))),
    "sparse initializer indices": lambda m: m.graph.sparse_initializer.append(
        _sparse(_plain("sv"), external("si", 4, np.int64))),
    "Constant value": lambda m: _with_node(m, helper.make_node("Constant", [], ["k"], value=external("kv"))),
    "Constant sparse_value values": lambda m: _with_node(m, helper.make_node(
        "Constant", [], ["k"], sparse_value=_sparse(external("kv"), _plain("ki", 4, np.int64)))),
    "Constant sparse_value indices": lambda m: _with_node(m, helper.make_node(
        "Constant", [], ["k"], sparse_value=_sparse(_plain("kv"), external("ki", 4, np.int64)))),
    "tensors attribute": lambda m: _with_node(m, helper.make_node(
        "Identity", ["waveform"], ["k"], blobs=[_plain("a"), external("b")])),
    "sparse_tensors attribute": lambda m: _with_node(m, _sparse_list_node()),
    "If subgraph": lambda m: _with_node(m, helper.make_node(
        "If", ["cond"], ["k"], then_branch=_const_graph({"value": external("then")}),
        else_branch=_const_graph({"value": _plain("else")}))),
    "nested subgraph": lambda m: _with_node(m, helper.make_node(
        "If", ["cond"], ["k"], then_branch=_nested_graph(), else_branch=_const_graph({"value": _plain("e")}))),
    "function node": lambda m: _add_function(m, helper.make_node("Constant", [], ["c"], value=external("fv"))),
    "function default attribute": lambda m: _add_function(m, None),
    "training_info graph": lambda m: _add_training(m),
}


def _sparse_list_node():
    n = helper.make_node("Identity", ["waveform"], ["k"])
    a = n.attribute.add(name="sparse_blobs", type=onnx.AttributeProto.SPARSE_TENSORS)
    a.sparse_tensors.append(_sparse(_plain("x"), _plain("y", 4, np.int64)))
    a.sparse_tensors.append(_sparse(external("z"), _plain("q", 4, np.int64)))
    return n


def _nested_graph() -> onnx.GraphProto:
    inner = helper.make_node("If", ["cond"], ["c"], then_branch=_const_graph({"value": external("deep")}),
                             else_branch=_const_graph({"value": _plain("e2")}))
    return helper.make_graph([inner], "mid", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])


def _add_function(m: onnx.ModelProto, node) -> None:
    f = onnx.FunctionProto()
    f.name, f.domain = "Steer", "local.kws"
    f.output.append("c")
    f.opset_import.append(helper.make_opsetid("", 17))
    if node is None:  # the external tensor is the default of an attribute of the function
        a = f.attribute_proto.add(name="w", type=onnx.AttributeProto.TENSOR)
        a.t.CopyFrom(external("fdefault"))
        node = helper.make_node("Constant", [], ["c"], value=_plain("fv"))
    f.node.append(node)
    m.functions.append(f)
    m.opset_import.append(helper.make_opsetid("local.kws", 1))
    _with_node(m, helper.make_node("Steer", [], ["k"], domain="local.kws"))


def _add_training(m: onnx.ModelProto) -> None:
    ti = m.training_info.add()
    ti.initialization.CopyFrom(helper.make_graph([], "init", [], [], initializer=[external("tw")]))


def put_external(m: onnx.ModelProto, placement: str) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(m)
    PLACEMENTS[placement](out)
    return out


@contextlib.contextmanager
def opens(folder: str | Path) -> Iterator[list[str]]:
    """The names of the files in `folder` opened while the block runs (any thread, any library)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    names: list[str] = []
    try:
        if libc.inotify_add_watch(fd, str(folder).encode(), 0x20) < 0:  # IN_OPEN
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
        yield names
        try:
            buf = os.read(fd, 1 << 20)
        except BlockingIOError:
            buf = b""
        i = 0
        while i + 16 <= len(buf):
            _, _, _, n = struct.unpack_from("iIII", buf, i)
            name = buf[i + 16:i + 16 + n].rstrip(b"\0").decode()
            if name:
                names.append(name)
            i += 16 + n
    finally:
        os.close(fd)


def external_weight_model(folder: Path) -> Path:
    """The default model with a weight read from DATA_FILE beside it: the audit's case of a file
    whose bytes become the weights (ONNX Runtime opens it when nothing refuses it)."""
    m = onnx_model()
    m.graph.node[2].input[0] = "scaled"
    m.graph.node.insert(2, helper.make_node("Mul", ["m", "w"], ["scaled"]))
    m.graph.initializer.append(external("w", 2))
    (folder / DATA_FILE).write_bytes(np.array([3.0, -3.0], np.float32).tobytes())
    onnx.save(m, str(folder / "weight_outside.onnx"))
    return folder / "weight_outside.onnx"


def loop_model(trips: int = 10**12) -> onnx.ModelProto:
    """The audit's hang: the default model behind a Loop of `trips` iterations that adds 1 to a counter."""
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "one_b"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(np.array(1.0, np.float32), "one_b")])
    m = onnx_model()
    m.graph.initializer.extend([numpy_helper.from_array(np.array(trips, np.int64), "trips"),
                                numpy_helper.from_array(np.array(True), "true"),
                                numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    m.graph.node.insert(0, helper.make_node("Loop", ["trips", "true", "zero"], ["count"], body=body))
    # the count joins the answer (times zero), so no optimiser may drop the loop
    m.graph.node[-1].input[0] = "m_plus"
    m.graph.node.extend([helper.make_node("Mul", ["count", "zero"], ["nothing"]),
                         helper.make_node("Add", ["m", "nothing"], ["m_plus"])])
    m.graph.node.append(m.graph.node.pop(-3))  # the Softmax last, after what it reads
    return m


def slow_model(nodes: int = 400, size: int = 1000) -> onnx.ModelProto:
    """A graph that passes every structural check and takes long to run: `nodes` [size, size] matmuls
    in a chain (about 50 ms each on one core), for batch 1."""
    w = numpy_helper.from_array(np.eye(size, dtype=np.float32), "w")
    lift = numpy_helper.from_array(np.full((size, 16), 1e-3, np.float32), "lift")
    shape = numpy_helper.from_array(np.array([16, CLIP // 16], np.int64), "shape16")
    back = numpy_helper.from_array(np.array([1, 2, -1], np.int64), "shape")
    cut = numpy_helper.from_array(np.array([0, 0, 0], np.int64), "zeros3")
    chain = [helper.make_node("Reshape", ["waveform", "shape16"], ["r16"]),
             helper.make_node("MatMul", ["lift", "r16"], ["x0"]),  # [size, 1000] from the input
             helper.make_node("Slice", ["x0", "zeros2", "sizes2"], ["h0"])]
    for i in range(nodes):
        chain.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]))
    chain += [helper.make_node("Reshape", [f"h{nodes}", "shape"], ["r"]),
              helper.make_node("ReduceMean", ["r"], ["m"], axes=[2], keepdims=0),
              helper.make_node("Softmax", ["m"], ["probs"], axis=1)]
    inits = [w, lift, shape, back, cut, numpy_helper.from_array(np.array([0, 0], np.int64), "zeros2"),
             numpy_helper.from_array(np.array([size, size], np.int64), "sizes2")]
    return onnx_model(chain, initializers=inits)


def constant_output_model(row, out_type=TensorProto.FLOAT, out_shape=None, props=None) -> onnx.ModelProto:
    """A graph that answers `row` for every clip (it still reads the input, so nothing folds it away)."""
    row = np.asarray(row)
    nodes = [helper.make_node("Reshape", ["waveform", "shape"], ["r"]),
             helper.make_node("ReduceMean", ["r"], ["m"], axes=[2], keepdims=0),  # [batch, 1]
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Cast", ["z"], ["zc"], to=helper.np_dtype_to_tensor_dtype(row.dtype)),
             helper.make_node("Add", ["zc", "row"], ["probs"])]
    inits = [numpy_helper.from_array(np.array([0, 1, -1], np.int64), "shape"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(row[None] if row.ndim == 1 else row, "row")]
    return onnx_model(nodes, n_out=row.shape[-1], out_type=out_type, props=props, initializers=inits,
                      out_shape=out_shape)


def _graph(nodes, inits, n_out=2, out_shape=None) -> onnx.ModelProto:
    return onnx_model(nodes, n_out=n_out, initializers=inits, out_shape=out_shape)


# The audit's out-of-contract ONNX files: name -> (model, where it is refused: "load" or "predict").
# Each must end as ModelFileError (load) or InferenceError (predict) naming the file, never an answer;
# ORT infers the output shape of some whose declared shape is symbolic, so they are refused at load.
def output_crafts() -> dict[str, tuple[onnx.ModelProto, str]]:
    def i64(v, name):
        return numpy_helper.from_array(np.array(v, np.int64), name)

    many = metadata(labels=[f"w{i}" for i in range(10**6)])
    return {
        "confidence 1e30": (constant_output_model(np.array([1e30, 0.0], np.float32)), "predict"),
        "negative scores": (constant_output_model(np.array([-0.5, 1.5], np.float32)), "predict"),
        "logits": (constant_output_model(np.array([3.0, 1.0], np.float32)), "predict"),
        "integer outputs": (constant_output_model(np.array([1, 0], np.int64), TensorProto.INT64), "load"),
        "integer outputs, type undeclared": (constant_output_model(np.array([1, 0], np.int64), TensorProto.INT64,
                                                                   out_shape=["batch", "n"]), "load"),
        "3 scores for 12 labels": (constant_output_model(np.full(3, 1 / 3, np.float32),
                                                         props=metadata(labels=[f"w{i}" for i in range(12)])), "load"),
        "3 scores for 12 labels, shape symbolic": (constant_output_model(
            np.full(3, 1 / 3, np.float32), out_shape=["batch", "n"],
            props=metadata(labels=[f"w{i}" for i in range(12)])), "load"),
        "labels as one string": (onnx_model(props=metadata(labels=json.dumps("yes"))), "load"),
        "duplicate labels": (onnx_model(props=metadata(labels=["yes", "yes"])), "load"),
        "one label": (onnx_model(props=metadata(labels=["yes"])), "load"),
        "1e6 labels": (onnx_model(props=many), "load"),
        "rank 1 output": (_graph([helper.make_node("ReduceMean", ["waveform"], ["probs"], axes=[1], keepdims=0)],
                                 [], out_shape=["batch"]), "load"),
        "rank 3 output, shape symbolic": (_graph([helper.make_node("Unsqueeze", ["sm", "ax"], ["probs"]),
                                                  *onnx_model().graph.node[:2],
                                                  helper.make_node("Softmax", ["m"], ["sm"], axis=1)],
                                                 [onnx_model().graph.initializer[0],
                                                  numpy_helper.from_array(np.array([2], np.int64), "ax")],
                                                 out_shape=["a", "b", "c"]), "load"),
        "failing Reshape": (_graph([helper.make_node("Reshape", ["waveform", "s2_7"], ["r"]),
                                    helper.make_node("ReduceMean", ["r"], ["m"], axes=[1], keepdims=0),
                                    helper.make_node("Reshape", ["m", "s2_1"], ["m2"]),
                                    helper.make_node("Concat", ["m2", "m2"], ["c"], axis=1),
                                    helper.make_node("Softmax", ["c"], ["probs"], axis=1)],
                                   [i64([7, -1], "s2_7"), i64([-1, 1], "s2_1")]), "predict"),
        "huge allocation": (_graph([helper.make_node("ConstantOfShape", ["huge"], ["big"]),
                                    helper.make_node("ReduceMean", ["big"], ["m"], axes=[1], keepdims=0),
                                    helper.make_node("Reshape", ["m", "s2_1"], ["m2"]),
                                    helper.make_node("Concat", ["m2", "m2"], ["c"], axis=1),
                                    helper.make_node("Softmax", ["c"], ["probs"], axis=1)],
                                   [i64([10**6, 10**12], "huge"), i64([-1, 1], "s2_1")], out_shape=["n", 2]), "predict"),
    }


def deny_writes(monkeypatch, folder: Path) -> None:
    """Make `folder` read-only for this process, as a read-only mount is (the tests run as root, which
    a chmod does not stop): creating or writing any path under it raises OSError EROFS."""
    import builtins
    import errno
    import io

    folder = Path(folder).resolve()

    def under(p) -> bool:
        try:
            return Path(os.fsdecode(p)).resolve().is_relative_to(folder)
        except (TypeError, ValueError, OSError):
            return False

    def refuse(p):
        raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(p))

    real_os_open, real_mkdir, real_open = os.open, os.mkdir, builtins.open

    def os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
            refuse(path)
        return real_os_open(path, flags, *a, **k)

    def mkdir(path, *a, **k):
        if under(path):
            refuse(path)
        return real_mkdir(path, *a, **k)

    def py_open(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and under(file):
            refuse(file)
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", py_open)
    monkeypatch.setattr(io, "open", py_open)
