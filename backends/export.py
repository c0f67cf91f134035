"""PyTorch model -> ONNX (waveform in, probabilities out), checked for parity, cached by weights hash.

The graph is built from two traces joined at a named tensor: the frontend (whatever
`model.frontend` traces to with `use_fft=False`: plain ONNX ops, no STFT/DFT) and the
network (`forward_features` + softmax). The join tensor is called `features`, so that
int8 quantization can cut the graph there and never touch the log-mel part, whatever
exporter or frontend formulation made the graph.

Exporter: the TorchScript one (`dynamo=False`). It traces the frontend's real-valued DFT
and timm's backbones in seconds and gives stable, readable node names; the dynamo exporter
works too but takes several times longer per model and its output needs the same cleanup.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from backends.base import ModelFileError
from backends.clips import Clips, get_clips
from backends.meta import FEATURES_TENSOR, FORMAT, read_onnx_info
from backends.onnxgraph import cpu_session, join, run_batched
from backends.optimize import optimize
from kws import safejson
from kws.fsutil import LockedError, atomic_path, atomic_write_json, file_lock, sha256_of, sweep_temps, temp_files
from kws.metrics import top1_agreement
from kws.paths import exports_dir

if TYPE_CHECKING:
    import onnx
    import torch

    from zoo.model import KWSModel

DEFAULT_OPSET = 17  # >= 17 for LayerNormalization-era ops; 18 exports and runs identically (tested)
EXPORT_VERSION = "3"  # bump when the graph recipe changes: invalidates every cached export
WAVEFORM_INPUT, FEATURES_INPUT, OUTPUT = "waveform", FEATURES_TENSOR, "probs"
PARITY_CLIPS = 64


class ParityError(RuntimeError):
    """The exported graph does not give PyTorch's answers."""


class ExportCacheError(OSError):
    """The exports cache cannot be written (read-only, no space); the message names it and the way out."""


@dataclass(frozen=True)
class Parity:
    clips: str  # which clips (real / synthetic)
    n: int
    max_abs_diff: float  # on probabilities
    top1_agreement: float  # fraction of clips with the same argmax
    reference: str  # what the ONNX model was compared against

    def line(self) -> str:
        return (f"parity vs {self.reference} on {self.n} clips: top-1 agreement {self.top1_agreement:.2%}, "
                f"max |dprob| {self.max_abs_diff:.2e} ({self.clips})")


@dataclass(frozen=True)
class ExportReport:
    path: str
    input_kind: str
    opset: int
    parity: Parity | None
    seconds: float
    bytes: int


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "exporter": "torch.onnx (TorchScript, dynamo=False)", "export_version": EXPORT_VERSION}


# ---------------------------------------------------------------------------------------------
# torch side


def prepare_for_export(model: "KWSModel") -> "KWSModel":
    """A copy in eval mode with the export frontend and Linear+BatchNorm1d folded.

    The exporter folds Conv+BN itself but leaves BatchNorm1d after a Linear (the
    progressive head) as a separate op; folding it removes three ops per head at no cost.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_linear_bn_eval

    m = copy.deepcopy(model).eval().float()
    m.frontend.use_fft = False
    for seq in m.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            lin, bn = seq._modules[a], seq._modules[b]
            if isinstance(lin, nn.Linear) and isinstance(bn, nn.BatchNorm1d) and bn.track_running_stats:
                seq._modules[a] = fuse_linear_bn_eval(lin, bn)
                seq._modules[b] = nn.Identity()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _trace(module: "torch.nn.Module", example: "torch.Tensor", input_name: str, output_name: str,
           opset: int) -> "onnx.ModelProto":
    import onnx
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python ints
        torch.onnx.export(module, (example,), buf, input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def _net(model: "KWSModel") -> "torch.nn.Module":
    """features -> probabilities: the network part of a KWSModel, with the softmax in the graph."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, feats: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.model.forward_features(feats), dim=-1)

    return Net().eval()


# ---------------------------------------------------------------------------------------------
# graph cleanup


def reducemean_to_gap(model: "onnx.ModelProto") -> int:
    """ReduceMean over H,W with keepdims (timm's squeeze-excite) -> GlobalAveragePool.

    Same numbers, but ORT's NCHWc layout optimizer handles GlobalAveragePool in blocked
    layout and not ReduceMean, which forced a layout reorder around every SE block.
    """
    import onnx
    from onnx import numpy_helper

    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    inferred = onnx.shape_inference.infer_shapes(model)
    rank = {v.name: len(v.type.tensor_type.shape.dim)
            for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
            if v.type.tensor_type.HasField("shape")}
    count = 0
    for n in g.node:
        if n.op_type != "ReduceMean" or rank.get(n.input[0]) != 4:
            continue
        attrs = {a.name: a for a in n.attribute}
        keep = attrs["keepdims"].i if "keepdims" in attrs else 1
        if "axes" in attrs:
            axes = list(attrs["axes"].ints)
        elif len(n.input) > 1 and n.input[1] in consts:
            axes = consts[n.input[1]].tolist()
        else:
            continue
        if keep != 1 or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        n.op_type = "GlobalAveragePool"
        del n.input[1:]
        del n.attribute[:]
        count += 1
    return count


def ort_basic_optimize(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """ORT's portable (BASIC-level) rewrites saved into the file: constant folding, redundant
    node elimination, Conv+Add/Mul fusions. Only standard ONNX ops come out, so the file stays
    valid for every provider; the hardware-specific levels run at session creation instead.
    """
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(Path(d) / "opt.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        out = onnx.load(so.optimized_model_filepath)
    del out.metadata_props[:]
    # ORT writes every domain it knows (some twice); keep one entry per domain the nodes use,
    # or the quantizer cannot find "the" ai.onnx opset
    used = {n.domain for n in out.graph.node} | {""}
    versions: dict[str, int] = {}
    for o in out.opset_import:
        if o.domain in used:
            versions[o.domain] = max(versions.get(o.domain, 0), o.version)
    del out.opset_import[:]
    out.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in versions.items())
    return out


def finalize(model: "onnx.ModelProto", props: dict[str, str]) -> "onnx.ModelProto":
    """Shape inference, metadata, and onnx.checker (full check: types and shapes too)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name, model.producer_version = "kws-zoo backends.export", EXPORT_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def set_parity(model: "onnx.ModelProto", record: dict) -> None:
    """Record (or replace) the parity check in the model's metadata: one `parity` key, always."""
    kept = [(m.key, m.value) for m in model.metadata_props if m.key != "parity"]
    del model.metadata_props[:]
    for k, v in [*kept, ("parity", json.dumps(record))]:
        model.metadata_props.add(key=k, value=v)


def parity_passed(props: dict[str, str]) -> bool:
    """Whether the metadata holds a parity record of a check that passed (export or quantize wrote it)."""
    try:
        record = safejson.loads(props.get("parity", "null"), "metadata 'parity'")
    except ValueError:  # not JSON, not text, too large or too deep
        return False
    return isinstance(record, dict) and record.get("passed") is True


# ---------------------------------------------------------------------------------------------
# export + parity


def build_metadata(model: "KWSModel", input_kind: str, opset: int, checkpoint_meta: dict | None,
                   source: str | None) -> dict[str, str]:
    from zoo.checkpoint import CheckpointError
    from zoo.meta import CheckpointMeta

    meta = checkpoint_meta or {}
    cfg = model.cfg
    try:  # the figures are the checkpoint's own words: a malformed one is its file's error, said once
        facts = CheckpointMeta.from_dict(meta)
        accuracy_summary = facts.accuracy_line()
        if not isinstance(accuracy_summary, str):
            raise TypeError(f"accuracy_line gave {type(accuracy_summary).__name__}")
    except Exception as e:  # noqa: BLE001 - IndexError, KeyError, AttributeError, TypeError, a format error
        raise CheckpointError(f"{source or cfg.name}: malformed checkpoint metadata 'accuracy' "
                              f"({type(e).__name__}: {str(e)[:200]}); fix or remove it, then export again") from None
    return {
        "format": FORMAT,
        "model_name": cfg.name,
        "labels": json.dumps(list(cfg.labels)),
        "frontend": json.dumps(cfg.frontend.to_dict(), sort_keys=True),
        "model_config": cfg.to_json(),
        "input_kind": input_kind,
        "input_name": WAVEFORM_INPUT if input_kind == "waveform" else FEATURES_INPUT,
        "output": "softmax probabilities [batch, num_labels]",
        "precision": "fp32",
        "opset": str(opset),
        "training_data": json.dumps(facts.training_data or "unknown (not in checkpoint)"),
        "accuracy": json.dumps(facts.accuracy or "not measured (no real-speech figure in the checkpoint)"),
        "accuracy_summary": accuracy_summary,
        "latency": json.dumps(facts.latency),
        "pretrained": facts.pretrained or "none",
        "thresholds": json.dumps(facts.thresholds),  # calibrated per-word thresholds ({}: none), for live.py
        "checkpoint_meta": json.dumps(meta, default=str)[:20000],
        "source": source or "in-memory model",
        "export_tools": json.dumps(tool_versions()),
    }


def torch_probs(model: "KWSModel", waves: np.ndarray, batch: int = 32) -> np.ndarray:
    """The reference: the training-time PyTorch model (eager torch.fft frontend), softmax."""
    import torch

    m = model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(waves), batch):
            outs.append(torch.softmax(m(torch.from_numpy(waves[i:i + batch])).float(), -1).numpy())
    return np.concatenate(outs)


def torch_features(model: "KWSModel", waves: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model.frontend.eval()(torch.from_numpy(waves)).numpy()


def run_onnx(path_or_bytes: str | Path | bytes, x: np.ndarray, threads: int = 1, batch: int = 32) -> np.ndarray:
    return run_batched(cpu_session(path_or_bytes, threads), x, batch)


def compare(ref: np.ndarray, got: np.ndarray, clips: Clips, reference: str) -> Parity:
    return Parity(clips=clips.source, n=len(ref), max_abs_diff=float(np.abs(ref - got).max()),
                  top1_agreement=top1_agreement(ref.argmax(1), got.argmax(1)), reference=reference)


def check_parity(path: str | Path, model: "KWSModel", clips: Clips, features_in: bool = False) -> Parity:
    x = torch_features(model, clips.waves) if features_in else clips.waves
    got = run_onnx(path, x)
    return compare(torch_probs(model, clips.waves), got, clips, "PyTorch eager (torch.fft frontend)")


def export_onnx(model: "KWSModel", path: str | Path, features_in: bool = False, opset: int = DEFAULT_OPSET,
                checkpoint_meta: dict | None = None, source: str | None = None, clips: Clips | None = None,
                min_agreement: float = 1.0, parity: bool = True,
                log: Callable[[str], None] | None = print) -> ExportReport:
    """Export `model` to `path`; raise ParityError when top-1 agreement < min_agreement.

    waveform in: float32 [batch, clip_samples] -> probabilities [batch, N] (default), or
    features in: float32 [batch, *frontend.feature_shape] (`features_in=True`).
    """
    import torch

    if opset < 17:
        raise ValueError(f"opset {opset} < 17 is not supported (the frontend needs opset 17 ops)")
    t0 = time.time()
    kind = "features" if features_in else "waveform"
    props = build_metadata(model, kind, opset, checkpoint_meta, source)  # first: a malformed meta fails fast
    m = prepare_for_export(model)
    fe = m.cfg.frontend
    feats = torch.zeros(2, *fe.feature_shape)
    net = _trace(_net(m), feats, FEATURES_INPUT, OUTPUT, opset)
    if features_in:
        graph = net
    else:
        front = _trace(m.frontend, torch.zeros(2, fe.clip_samples), WAVEFORM_INPUT, FEATURES_TENSOR, opset)
        graph = join(front, net)
    n_gap = reducemean_to_gap(graph)
    rewrites = optimize(graph)
    graph = ort_basic_optimize(graph)
    graph = finalize(graph, props)
    if not features_in and FEATURES_TENSOR not in {o for n in graph.graph.node for o in n.output}:
        raise RuntimeError(f"internal: the {FEATURES_TENSOR!r} tensor did not survive optimisation")
    report_parity = None
    # Checked under a temporary name and renamed only with its parity record inside: a kill at
    # any point leaves no file at `path`, or the checked one; never an unchecked model there.
    with atomic_path(path) as tmp:
        tmp.write_bytes(graph.SerializeToString())
        if parity:
            # parity clips of the model's own length (1 s clips centred in it, when it is not 1 s)
            clips = (clips if clips is not None else get_clips(PARITY_CLIPS)).fitted(fe.clip_samples)
            report_parity = check_parity(tmp, model, clips, features_in)
            if log:
                log(f"{Path(path).name}: {report_parity.line()}")
            if report_parity.top1_agreement < min_agreement:
                Path(path).unlink(missing_ok=True)  # never leave a wrong model where a backend would find it
                raise ParityError(f"{path}: ONNX export disagrees with PyTorch: {report_parity.line()}; "
                                  f"required agreement {min_agreement:.0%}. The export was deleted.")
            set_parity(graph, {**asdict(report_parity), "required": min_agreement, "passed": True})
            tmp.write_bytes(graph.SerializeToString())
    if log and n_gap:
        log(f"{Path(path).name}: {n_gap} ReduceMean(H,W) -> GlobalAveragePool")
    if log and any(rewrites.values()):
        log(f"{Path(path).name}: rewrites {', '.join(f'{k} x{v}' for k, v in rewrites.items() if v)}")
    return ExportReport(path=str(path), input_kind=kind, opset=opset, parity=report_parity,
                        seconds=time.time() - t0, bytes=Path(path).stat().st_size)


# ---------------------------------------------------------------------------------------------
# model references and the exports/ cache


def resolve_onnx(ref: str | Path, precision: str = "fp32", features_in: bool = False,
                 log: Callable[[str], None] | None = print) -> Path:
    """Any model reference -> an ONNX file of the wanted precision, exported/quantized once and cached.

    ref: a .onnx file (used as is; int8 from an fp32 .onnx is quantized from it), a zoo
    name (shipped weights), a run folder, or a .safetensors checkpoint. Cache key: the
    sha256 of the weights (or ONNX) file + the export recipe version (and, for int8, the
    quantization recipe's key), so retraining or a new recipe never serves a stale graph.
    Only an entry with a passed parity record is a hit, and an entry is built under a lock:
    parallel callers export it once, and a killed export leaves nothing that a later call
    would serve.
    """
    if precision not in ("fp32", "int8"):
        raise ValueError(f"precision must be 'fp32' or 'int8', got {precision!r}")
    p = Path(ref)
    if p.suffix == ".onnx":
        info = read_onnx_info(p)
        if precision == "fp32" or info.precision == "int8" or "quantization" in info.props:
            return p
        out = exports_dir() / f"{p.stem}-{sha256_of(p)[:16]}-v{EXPORT_VERSION}" / _int8_name()
        if _cached(out):
            return out
        with _entry_lock(out.parent):
            return out if _cached(out) else _quantize(p, out, log)
    from zoo import load_checkpoint, resolve_weights
    from zoo.checkpoint import model_name

    weights = resolve_weights(ref)
    if weights.suffix == ".onnx":
        return resolve_onnx(weights, precision, features_in, log)
    folder = exports_dir() / f"{model_name(weights)}-{sha256_of(weights)[:16]}-v{EXPORT_VERSION}"
    fp32 = folder / ("model.features.onnx" if features_in else "model.onnx")
    if not _cached(fp32):
        with _entry_lock(folder):
            if not _cached(fp32):  # another process may have exported it while we waited
                model, meta = load_checkpoint(weights)
                if log:
                    log(f"exporting {weights} -> {fp32}")
                export_onnx(model, fp32, features_in=features_in, checkpoint_meta=meta, source=str(weights),
                            log=log)
    if precision == "fp32":
        return fp32
    if features_in:
        raise ValueError("int8 exports are waveform-in only (the frontend stays float)")
    out = folder / _int8_name()
    if _cached(out):
        return out
    with _entry_lock(folder):
        return out if _cached(out) else _quantize(fp32, out, log)


def _int8_name() -> str:
    """The int8 graph's file in a cache entry: named by the quantization recipe that chose it."""
    from backends.quantize import recipe_key

    return f"model.int8-{recipe_key()}.onnx"


@contextlib.contextmanager
def _entry_lock(folder: Path) -> Iterator[None]:
    """Exclusive while one process exports or quantizes into a cache entry; on entry, what a
    killed exporter left there (temporaries) is swept: under this lock nobody else writes them."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(folder / ".lock", what="this export cache entry"))
        except LockedError:
            raise
        except OSError as e:
            raise ExportCacheError(e.errno, f"the exports cache is not writable ({e.strerror or e}); an ONNX backend "
                                   f"exports a checkpoint there on first use: set $KWS_EXPORTS to a writable "
                                   f"folder, or pass an exported .onnx file", str(folder)) from None
        sweep_temps(temp_files(folder))
        yield


def _cached(path: Path) -> bool:
    """A usable cache entry: a readable export of this recipe whose parity check passed.

    Entries appear only whole (renamed in with their parity record), so a file without a
    passed record is not one this code wrote as checked: it is exported again, never served.
    """
    if not path.is_file():
        return False
    try:
        info = read_onnx_info(path)
        tools = safejson.loads(info.props.get("export_tools", "{}"), "metadata 'export_tools'")
    except (ModelFileError, OSError, ValueError):
        return False
    return isinstance(tools, dict) and tools.get("export_version") == EXPORT_VERSION and parity_passed(info.props)


def _quantize(fp32: Path, out: Path, log) -> Path:
    from backends.quantize import quantize_int8

    report = quantize_int8(fp32, out, log=log)
    atomic_write_json(out.with_suffix(".json"), asdict(report))
    return out
