"""The metadata an exported ONNX model carries, so that a backend needs nothing but the file.

Written by backends.export into `ModelProto.metadata_props` (string -> string, JSON where
structured); read back here from onnxruntime's `custom_metadata_map` or from onnx.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from kws.frontends import AnyFrontendConfig

FORMAT = "kws-onnx/1"
INPUT_KINDS = ("waveform", "features", "stream")  # stream: backends.streaming's chunk + state graph
FEATURES_TENSOR = "features"  # the frontend -> network boundary inside a waveform-in graph
REQUIRED = ("labels", "frontend", "input_kind")


@dataclass(frozen=True)
class ModelInfo:
    model_name: str
    labels: tuple[str, ...]
    frontend: AnyFrontendConfig
    input_kind: str  # "waveform", "features" or "stream"
    precision: str  # "fp32" or "int8" (an int8 export that fell back to fp32 says "fp32")
    props: dict[str, str] = field(default_factory=dict)  # every metadata_props entry, raw

    def json(self, key: str, default=None):
        """A JSON-valued property, decoded (default when absent)."""
        return json.loads(self.props[key]) if key in self.props else default


def parse_metadata(props: Mapping[str, str], path: str | Path) -> ModelInfo:
    """Validate and decode the metadata of `path`; ModelFileError names the file and the problem."""
    from backends.base import ModelFileError
    from kws.frontends import config_from_dict  # the frontend modules (torch) load with a model, not before

    missing = [k for k in REQUIRED if k not in props]
    if missing:
        raise ModelFileError(
            f"{path}: ONNX model without the kws frontend metadata (missing {', '.join(missing)}); a backend "
            f"needs the labels and the frontend config to feed the model. Export it with `python export.py REF`.")
    try:
        labels = tuple(json.loads(props["labels"]))
        frontend = config_from_dict(json.loads(props["frontend"]))
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: unreadable labels/frontend metadata ({e})") from None
    if not labels or not all(isinstance(s, str) for s in labels):
        raise ModelFileError(f"{path}: metadata 'labels' is not a non-empty list of strings")
    kind = props["input_kind"]
    if kind not in INPUT_KINDS:
        raise ModelFileError(f"{path}: metadata input_kind={kind!r}, expected one of {INPUT_KINDS}")
    return ModelInfo(model_name=props.get("model_name", Path(path).stem), labels=labels, frontend=frontend,
                     input_kind=kind, precision=props.get("precision", "fp32"), props=dict(props))


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
    external = external_tensors(model.graph)
    if external:
        # An external-data entry names a file to read: a model file must not choose what else is
        # opened. KWS models are a few MB, far from protobuf's 2 GB limit, so exports never need it.
        raise ModelFileError(f"{p}: keeps {len(external)} tensors in external data files (e.g. {external[0]!r}); "
                             f"only self-contained ONNX files are run: re-save it with onnx.save(model, path)")
    props: dict[str, str] = {}
    for m in model.metadata_props:
        # protobuf hands out bytes for a string field that is not valid UTF-8
        if not isinstance(m.key, str) or not isinstance(m.value, str):
            raise ModelFileError(f"{p}: metadata entry {m.key!r} is not UTF-8 text")
        if m.key in props:
            raise ModelFileError(f"{p}: metadata key {m.key!r} appears twice (onnx.checker refuses such a model)")
        props[m.key] = m.value
    return parse_metadata(props, p)


def external_tensors(graph) -> list[str]:
    """Names of the tensors of `graph` (initializers, constants, subgraphs) stored in external files."""
    from onnx import TensorProto

    out = [t.name for t in [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
           if t.data_location == TensorProto.EXTERNAL]
    for node in graph.node:
        for a in node.attribute:
            tensors = [*([a.t] if a.HasField("t") else []), *a.tensors]
            out += [t.name or node.name for t in tensors if t.data_location == TensorProto.EXTERNAL]
            for g in [*([a.g] if a.HasField("g") else []), *a.graphs]:
                out += external_tensors(g)
    return out
