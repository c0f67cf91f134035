"""ONNX graph plumbing shared by the export and the quantizer: join and cut a graph at its
`features` tensor, save it atomically, and the session options every ORT session uses.

The export joins the frontend and network graphs; the quantizer cuts them apart again, so
that int8 never touches the log-mel part. Both need these, and neither may import the other.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backends.base import ModelFileError
from backends.meta import FEATURES_TENSOR
from kws.fsutil import atomic_path

if TYPE_CHECKING:
    import onnx


def join(frontend: "onnx.ModelProto", net: "onnx.ModelProto") -> "onnx.ModelProto":
    """frontend (waveform -> features) + net (features -> probs) as one graph, joined at `features`."""
    import onnx
    from onnx import compose

    frontend = _prefix_internal(frontend, "frontend/")
    frontend.ir_version = net.ir_version = min(frontend.ir_version, net.ir_version)
    # the quantizer may add the com.microsoft domain to the net: give both sides the union
    ops: dict[str, int] = {}
    for m in (frontend, net):
        for o in m.opset_import:
            ops[o.domain] = max(ops.get(o.domain, 0), o.version)
    for m in (frontend, net):
        del m.opset_import[:]
        m.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in ops.items())
    return compose.merge_models(frontend, net, io_map=[(FEATURES_TENSOR, FEATURES_TENSOR)])


def _prefix_internal(model: "onnx.ModelProto", prefix: str) -> "onnx.ModelProto":
    """Prefix node names and internal tensor names (not the graph's inputs/outputs), so two graphs
    can be joined without clashes and the frontend's nodes are recognisable by name.
    (onnx.compose.add_prefix renames the graph outputs of some graphs despite rename_outputs=False.)"""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output} | {""}

    def ren(name: str) -> str:
        return name if name in keep else prefix + name

    for n in g.node:
        n.name = prefix + n.name
        n.input[:] = [ren(x) for x in n.input]
        n.output[:] = [ren(x) for x in n.output]
    for t in g.initializer:
        t.name = ren(t.name)
    for v in g.value_info:
        v.name = ren(v.name)
    return m


def split(model: "onnx.ModelProto") -> tuple["onnx.ModelProto", "onnx.ModelProto"]:
    """The inverse of join: (frontend, net) of a waveform-in export, cut at `features`."""
    from onnx.utils import Extractor

    names = {o for n in model.graph.node for o in n.output}
    if FEATURES_TENSOR not in names:
        raise ModelFileError(f"graph has no {FEATURES_TENSOR!r} tensor between frontend and network "
                             f"(not exported by backends.export?)")
    inp, out = model.graph.input[0].name, model.graph.output[0].name
    ex = Extractor(model)
    return ex.extract_model([inp], [FEATURES_TENSOR]), ex.extract_model([FEATURES_TENSOR], [out])


def save_model(model: "onnx.ModelProto", path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return Path(path)


def session_options(threads: int = 1):
    """The options of every ORT session here: `threads` intra-op threads, one graph at a time (inter-op
    threads only add wake-ups), every graph optimisation, warnings and below kept quiet."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def run_options():
    """Options of one session.run: its `terminate` flag is what backends.base.run_bounded sets on a
    deadline; ORT's own log line about a terminated run is kept quiet (the caller raises instead)."""
    import onnxruntime as ort

    ro = ort.RunOptions()
    ro.log_severity_level = 4
    return ro


def cpu_session(src: str | Path | bytes, threads: int = 1):
    """A CPU-provider session of a file or serialized graph, `threads` intra-op threads."""
    import onnxruntime as ort

    return ort.InferenceSession(src if isinstance(src, bytes) else str(src), session_options(threads),
                                providers=["CPUExecutionProvider"])


def run_batched(sess, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """The session's first output on `x`, `batch` rows per call (bounds memory on long sets)."""
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])
