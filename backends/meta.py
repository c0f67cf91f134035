"""The metadata an exported ONNX model carries, so that a backend needs nothing but the file.

Written by backends.export into `ModelProto.metadata_props` (string -> string, JSON where
structured); read back here from onnxruntime's `custom_metadata_map` or from onnx.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

from kws import safejson

if TYPE_CHECKING:
    import onnx

    from kws.frontends import AnyFrontendConfig

FORMAT = "kws-onnx/1"
INPUT_KINDS = ("waveform", "features", "stream")  # stream: backends.streaming's chunk + state graph
FEATURES_TENSOR = "features"  # the frontend -> network boundary inside a waveform-in graph
REQUIRED = ("labels", "frontend", "input_kind")
MAX_PROPS = 256  # metadata entries (an export writes about 20)
# Ops that run a subgraph a data-dependent number of times (or pick one): no export of this
# project contains them (the TorchScript traces unroll every loop), and a Loop of 1e12 trips would
# hold a session for hours. A graph that holds one, at any depth, is refused before it is run.
CONTROL_FLOW_OPS = ("Loop", "Scan", "If", "SequenceMap")


@dataclass(frozen=True)
class ModelInfo:
    model_name: str
    labels: tuple[str, ...]
    frontend: AnyFrontendConfig
    input_kind: str  # "waveform", "features" or "stream"
    precision: str  # "fp32" or "int8" (an int8 export that fell back to fp32 says "fp32")
    props: dict[str, str] = field(default_factory=dict)  # every metadata_props entry, raw

    path: str = ""  # the file the metadata came from (what a ModelFileError names)

    def json(self, key: str, default=None):
        """A JSON-valued property, decoded (default when absent); ModelFileError naming the file when bad."""
        from backends.base import ModelFileError

        if key not in self.props:
            return default
        try:
            return safejson.loads(self.props[key], f"metadata {key!r}")
        except ValueError as e:
            raise ModelFileError(f"{self.path or self.model_name}: {e}") from None


def parse_metadata(props: Mapping[str, str], path: str | Path) -> ModelInfo:
    """Validate and decode the metadata of `path`; ModelFileError names the file and the problem."""
    from backends.base import ModelFileError
    from kws.frontends import config_from_dict  # the frontend modules (torch) load with a model, not before
    from kws.labels import MAX_LABELS, valid_labels

    missing = [k for k in REQUIRED if k not in props]
    if missing:
        raise ModelFileError(
            f"{path}: ONNX model without the kws frontend metadata (missing {', '.join(missing)}); a backend "
            f"needs the labels and the frontend config to feed the model. Export it with `python export.py REF`.")
    try:
        labels = safejson.loads(props["labels"], "metadata 'labels'")
        frontend = config_from_dict(safejson.loads(props["frontend"], "metadata 'frontend'"))
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: unreadable labels/frontend metadata ({e})") from None
    if not isinstance(labels, list) or not valid_labels(labels):
        raise ModelFileError(f"{path}: metadata 'labels' is not a list of 2-{MAX_LABELS} distinct non-empty strings "
                             f"(got {_describe(labels)})")
    labels = tuple(labels)
    kind = props["input_kind"]
    if kind not in INPUT_KINDS:
        raise ModelFileError(f"{path}: metadata input_kind={kind!r}, expected one of {INPUT_KINDS}")
    return ModelInfo(model_name=props.get("model_name", Path(path).stem), labels=labels, frontend=frontend,
                     input_kind=kind, precision=props.get("precision", "fp32"), props=dict(props), path=str(path))


def _describe(x) -> str:
    if isinstance(x, list):
        return f"a list of {len(x)}" + (f" holding {type(next((v for v in x if not isinstance(v, str)), '')).__name__}"
                                        if not all(isinstance(v, str) for v in x) else "")
    return f"{type(x).__name__} {str(x)[:40]!r}"


def read_onnx_info(path: str | Path) -> ModelInfo:
    """Metadata of an ONNX file via the onnx package (the export/quantize side)."""
    import onnx

    from backends.base import ModelFileError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: ONNX model not found")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # DecodeError, truncated file, not protobuf at all
        raise ModelFileError(f"{p}: not a valid ONNX model ({type(e).__name__}: {str(e)[:200]})") from None
    if not model.graph.node:
        raise ModelFileError(f"{p}: not a valid ONNX model (empty graph)")
    external = external_tensors(model)
    if external:
        # An external-data entry names a file to read: a model file must not choose what else is
        # opened. KWS models are a few MB, far from protobuf's 2 GB limit, so exports never need it.
        raise ModelFileError(f"{p}: keeps {len(external)} tensors in external data files (e.g. {external[0]}); "
                             f"only self-contained ONNX files are run: re-save it with onnx.save(model, path)")
    loops = control_flow_nodes(model)
    if loops:
        raise ModelFileError(f"{p}: holds {len(loops)} control-flow nodes (e.g. {loops[0]}); the exports of this "
                             f"project never do ({', '.join(CONTROL_FLOW_OPS)}), and such a graph can run unbounded")
    props: dict[str, str] = {}
    for m in model.metadata_props:
        # protobuf hands out bytes for a string field that is not valid UTF-8
        if not isinstance(m.key, str) or not isinstance(m.value, str):
            raise ModelFileError(f"{p}: metadata entry {m.key!r} is not UTF-8 text")
        if m.key in props:
            raise ModelFileError(f"{p}: metadata key {m.key!r} appears twice (onnx.checker refuses such a model)")
        if len(m.value) > safejson.MAX_CHARS or len(props) >= MAX_PROPS:
            raise ModelFileError(f"{p}: metadata {m.key!r} is {len(m.value):,} characters long or one of over "
                                 f"{MAX_PROPS} entries; kws metadata is a few kB")
        props[m.key] = m.value
    return parse_metadata(props, p)


def iter_tensors(model) -> Iterator[tuple[str, "onnx.TensorProto"]]:
    """Every TensorProto a model (or a graph, or a function) holds, with where it sits.

    The places ONNX Runtime reads tensor data from: a graph's initializers, a sparse
    initializer's values and its indices, every node attribute that holds tensors (`t`,
    `tensors`, `sparse_tensor`, `sparse_tensors`: a Constant's `value` or `sparse_value`, a
    ConstantOfShape's `value`), the subgraphs of `g`/`graphs` attributes (If, Loop, Scan, at any
    depth), the nodes of `model.functions` and their default attributes, and the training-info
    graphs. A check that must hold for every tensor (no external data) walks this one list.
    """
    import onnx

    if isinstance(model, onnx.ModelProto):
        yield from iter_tensors(model.graph)
        for f in model.functions:
            yield from _function_tensors(f)
        for k, ti in enumerate(model.training_info):
            for part in ("initialization", "algorithm"):
                if ti.HasField(part):
                    yield from ((f"training_info[{k}].{part}/{w}", t) for w, t in iter_tensors(getattr(ti, part)))
        return
    if isinstance(model, onnx.FunctionProto):
        yield from _function_tensors(model)
        return
    graph = model
    where = graph.name or "graph"
    for t in graph.initializer:
        yield f"{where}: initializer {t.name!r}", t
    for s in graph.sparse_initializer:
        yield from _sparse(f"{where}: sparse initializer", s)
    for node in graph.node:
        yield from _node_tensors(f"{where}: node {node.name or node.op_type!r}", node)


def _function_tensors(f) -> Iterator[tuple[str, "onnx.TensorProto"]]:
    where = f"function {f.domain}:{f.name}"
    for a in f.attribute_proto:  # default values of the function's attributes
        yield from _attribute_tensors(f"{where}: default", a)
    for node in f.node:
        yield from _node_tensors(f"{where}: node {node.name or node.op_type!r}", node)


def _node_tensors(where: str, node) -> Iterator[tuple[str, "onnx.TensorProto"]]:
    for a in node.attribute:
        yield from _attribute_tensors(where, a)


def _attribute_tensors(where: str, a) -> Iterator[tuple[str, "onnx.TensorProto"]]:
    at = f"{where} attribute {a.name!r}"
    if a.HasField("t"):
        yield at, a.t
    for t in a.tensors:
        yield at, t
    if a.HasField("sparse_tensor"):
        yield from _sparse(at, a.sparse_tensor)
    for s in a.sparse_tensors:
        yield from _sparse(at, s)
    for g in [*([a.g] if a.HasField("g") else []), *a.graphs]:
        yield from ((f"{at} / {w}", t) for w, t in iter_tensors(g))


def _sparse(where: str, s) -> Iterator[tuple[str, "onnx.TensorProto"]]:
    yield f"{where} {s.values.name!r} (values)", s.values
    yield f"{where} {s.values.name!r} (indices)", s.indices


def iter_nodes(model) -> Iterator[tuple[str, "onnx.NodeProto"]]:
    """Every node of a model: its graph's, its subgraphs' (at any depth), its functions'."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        yield from iter_nodes(model.graph)
        for f in model.functions:
            yield from ((f"function {f.domain}:{f.name}: {w}", n) for w, n in _nodes(f.node))
        return
    yield from ((f"{model.name or 'graph'}: {w}", n) for w, n in _nodes(model.node))


def _nodes(nodes) -> Iterator[tuple[str, "onnx.NodeProto"]]:
    for n in nodes:
        yield f"node {n.name or n.op_type!r}", n
        for a in n.attribute:
            for g in [*([a.g] if a.HasField("g") else []), *a.graphs]:
                yield from ((f"node {n.name or n.op_type!r} attribute {a.name!r} / {w}", m) for w, m in iter_nodes(g))


def control_flow_nodes(model) -> list[str]:
    """Where each Loop, Scan, If or SequenceMap node of `model` sits (the default domain's ops)."""
    return [f"{n.op_type} at {where}" for where, n in iter_nodes(model)
            if n.op_type in CONTROL_FLOW_OPS and n.domain in ("", "ai.onnx")]


def external_tensors(model) -> list[str]:
    """Where each tensor of `model` (a ModelProto, or a graph) that names an external data file sits.

    A tensor counts when its data_location says EXTERNAL or when it carries any external_data
    entry at all: either way the file names something else on disk to read.
    """
    from onnx import TensorProto

    return [f"{where} -> {_location(t)!r}" for where, t in iter_tensors(model)
            if t.data_location == TensorProto.EXTERNAL or len(t.external_data)]


def _location(t) -> str:
    return next((e.value for e in t.external_data if e.key == "location"), "?")
