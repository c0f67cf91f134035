"""The fuzz targets: the three readers of files from outside, and what each may answer.

Each target turns fuzzer bytes into a file, reads it with the project's own reader, and
classifies the outcome: the reader's typed error (by kind), or a valid result (checked,
not just "no exception"). Anything else -- another exception, a result that breaks the
reader's contract -- is an `Unexpected` and a finding.

- audio: `kws.audio.load_audio` on WAV/FLAC/OGG bytes (typed error: AudioError);
- onnx: `backends.meta.read_onnx_info` plus the export cache's parity check on an ONNX file
  (typed error: ModelFileError);
- safetensors: `zoo.checkpoint.load_checkpoint` on a checkpoint whose header (the length
  prefix and the JSON with the model config and metadata) is the fuzzed input, followed by
  the real tensor bytes (typed error: CheckpointError).
"""
from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

MAX_LEN = 1 << 16  # the fuzzer never grows an input past this (libFuzzer -max_len)


class Unexpected(Exception):
    """An outcome other than the reader's typed error or a valid result."""


@dataclass
class Target:
    name: str
    typed: tuple[type[BaseException], ...]  # the reader's own errors
    run: Callable[[bytes], str]  # bytes -> outcome label; raises Unexpected or anything else on a finding
    seeds: list[bytes]
    # outcomes of cases that never got past the format's header (the share that did is reported)
    header_outcomes: tuple[str, ...] = ()


def _error_kind(e: BaseException) -> str:
    return f"{type(e).__name__}:{getattr(e, 'kind', '')}".rstrip(":")


# ----------------------------------------------------------------------------- audio

def _audio_seeds() -> list[bytes]:
    import soundfile as sf

    rng = np.random.default_rng(0)

    def enc(x: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, x, sr, format=fmt, subtype=subtype)
        return buf.getvalue()

    tone = (0.3 * np.sin(np.arange(4000) * 0.05)).astype(np.float32)
    stereo = np.stack([tone[:3000], rng.uniform(-1, 1, 3000).astype(np.float32)], 1)
    return [
        enc(tone, 16000, "WAV", "PCM_16"),
        enc(stereo, 44100, "WAV", "FLOAT"),
        enc(tone[:2000], 8000, "WAV", "PCM_24"),
        enc(tone[:2000], 22050, "WAV", "PCM_U8"),
        enc(tone, 16000, "FLAC", "PCM_16"),
        enc(stereo, 48000, "OGG", "VORBIS"),
        enc(tone[:1000], 16000, "WAV", "DOUBLE"),
    ]


_SUFFIX = {b"RIFF": ".wav", b"RIFX": ".wav", b"RF64": ".wav", b"fLaC": ".flac", b"OggS": ".ogg"}
# Structure-aware inputs: bytes that do not begin like an audio file are the fields of a WAV header
# (format, channels, rate, a size fudge) followed by its sample data, written as a well-formed
# RIFF file. Byte-level mutations of such an input change the header's values and the samples
# but keep a parseable header, so most cases reach the decoder instead of ending as "not audio".
_FORMATS = ((1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64), (6, 8), (7, 8), (1, 12), (3, 16))  # (tag, bits)
_RATES = (16000, 8000, 44100, 48000, 22050, 11025, 32000, 96000, 383999, 4000, 3999, 384001, 1, 0)
STRUCTURED_FIELDS = 8  # format, channels, rate index, 4 bytes raw rate, size fudge
RAW_MARK = b"\xff"  # an input that starts with it is written as the bytes after it (the unstructured cases)


def structured_wav(data: bytes) -> bytes:
    """The WAV file a structured input describes (see above)."""
    import struct

    head = data[:STRUCTURED_FIELDS].ljust(STRUCTURED_FIELDS, b"\0")
    body = data[STRUCTURED_FIELDS:]
    tag, bits = _FORMATS[head[0] % len(_FORMATS)]
    channels = 1 + head[1] % 3  # 3: refused as a layout, after the header
    rate = _RATES[head[2] % len(_RATES)] if head[2] < 0xF0 else int.from_bytes(head[3:7], "little")
    fudge = head[7]  # 0-239: sizes as written; above: the data chunk claims more than the file holds
    align = channels * max(1, bits // 8)
    # a short input still describes a clip: its body repeated to 0.1 s (bounded), so that libFuzzer's
    # many few-byte inputs reach the decoder too instead of ending as zero-length audio
    need = min(MAX_LEN, align * int(0.1 * min(max(rate, 4000), 48000)))
    if len(body) < need:
        fill = body or head
        body = (fill * (need // len(fill) + 1))[:need]
    declared = len(body) + (0 if fudge < 0xF0 else 1 + (fudge - 0xF0) * 997)
    fmt = struct.pack("<HHIIHH", tag, channels, rate & 0xFFFFFFFF, (rate * align) & 0xFFFFFFFF, align & 0xFFFF, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared) + body
    if len(body) % 2:
        chunks += b"\0"
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _structured_seeds() -> list[bytes]:
    rng = np.random.default_rng(1)
    tone = (0.3 * np.sin(np.arange(4000) * 0.05) * 32767).astype("<i2").tobytes()
    floats = rng.uniform(-1, 1, 3000).astype("<f4").tobytes()
    return [bytes([1, 0, 0, 0, 0, 0, 0, 0]) + tone,  # PCM16 mono 16 kHz
            bytes([4, 1, 2, 0, 0, 0, 0, 0]) + floats,  # float32 stereo 44.1 kHz
            bytes([0, 0, 1, 0, 0, 0, 0, 0]) + bytes(rng.integers(0, 256, 2000, dtype=np.uint8)),  # PCM_U8 8 kHz
            bytes([2, 0, 3, 0, 0, 0, 0, 0]) + rng.integers(-2**23, 2**23, 3000).astype("<i4").tobytes()[:9000],
            RAW_MARK + b"this is a text file called case.wav\n", RAW_MARK + b"RIF"]


def _audio_target(tmp: Path) -> Target:
    from kws.audio import AudioError, load_audio

    def run(data: bytes) -> str:
        # the suffix follows the content (as a user's file would be named), the reader judges by content
        if data[:1] == RAW_MARK:  # raw bytes as they are: text, truncated magic, other formats
            data = data[1:]
        elif data[:4] not in _SUFFIX:
            data = structured_wav(data)
        path = tmp / f"case{_SUFFIX.get(data[:4], '.wav')}"
        path.write_bytes(data)
        try:
            x = load_audio(path)
        except AudioError as e:
            if not str(e).startswith(str(path)):
                raise Unexpected(f"AudioError that does not name the file: {e}") from None
            if e.kind == "truncated" and "header" in e.problem:
                return "AudioError:bad_header"
            return _error_kind(e)
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 1 and x.size > 0):
            raise Unexpected(f"load_audio returned {type(x).__name__} {getattr(x, 'dtype', '')} "
                             f"{getattr(x, 'shape', '')}")
        if not np.isfinite(x).all():
            raise Unexpected("load_audio returned non-finite samples")
        return "valid"

    return Target("audio", (AudioError,), run, _audio_seeds() + _structured_seeds(),
                  header_outcomes=("AudioError:not_audio", "AudioError:bad_header", "AudioError:missing", "AudioError:empty"))


# ----------------------------------------------------------------------------- onnx metadata

def _onnx_seeds() -> list[bytes]:
    import onnx
    from onnx import TensorProto, helper

    from kws.frontend import FrontendConfig
    from kws.labels import GSC12_LABELS
    from kws.speech_mel import SpeechMelConfig

    x = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", 16000])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 1])
    node = helper.make_node("ReduceMean", ["waveform"], ["probs"], keepdims=1, axes=[1])
    seeds = []
    for frontend, kind, extra in (
        (FrontendConfig(), "waveform", {"precision": "fp32"}),
        (SpeechMelConfig(), "waveform", {"precision": "int8", "quantization": json.dumps({"chosen": "qdq"})}),
        (FrontendConfig(in_chans=3), "features", {}),
    ):
        m = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
        props = {"format": "kws-onnx/1", "model_name": "dscnn", "labels": json.dumps(list(GSC12_LABELS)),
                 "frontend": json.dumps(frontend.to_dict()), "input_kind": kind,
                 "parity": json.dumps({"n": 64, "top1_agreement": 1.0, "required": 1.0, "passed": True}),
                 "export_tools": json.dumps({"export_version": "1"}), **extra}
        for k, v in props.items():
            m.metadata_props.add(key=k, value=v)
        seeds.append(m.SerializeToString())
    onnx.checker.check_model(onnx.load_from_string(seeds[0]))
    return seeds


def _onnx_target(tmp: Path) -> Target:
    from backends.base import ModelFileError
    from backends.export import parity_passed
    from backends.meta import INPUT_KINDS, read_onnx_info

    def run(data: bytes) -> str:
        path = tmp / "case.onnx"
        path.write_bytes(data)
        try:
            info = read_onnx_info(path)
        except ModelFileError as e:
            if not str(e).startswith(str(path)):
                raise Unexpected(f"ModelFileError that does not name the file: {e}") from None
            return _error_kind(e)
        fe = info.frontend
        if not (info.labels and all(isinstance(s, str) for s in info.labels) and info.input_kind in INPUT_KINDS
                and isinstance(fe.clip_samples, int) and fe.clip_samples > 0 and isinstance(info.model_name, str)):
            raise Unexpected(f"read_onnx_info accepted an unusable model: {info}")
        if not isinstance(parity_passed(info.props), bool):
            raise Unexpected("parity_passed did not answer with a bool")
        return "valid"

    return Target("onnx", (ModelFileError,), run, _onnx_seeds())


# ----------------------------------------------------------------------------- safetensors header

def _checkpoint_parts(tmp: Path) -> list[tuple[bytes, bytes]]:
    """(header incl. its 8-byte length, tensor bytes) of small real checkpoints."""
    import torch

    import zoo

    torch.manual_seed(0)
    parts = []
    for labels in (None, ("yes", "no", "_silence_")):
        model = zoo.create_model("dscnn", labels=labels)
        raw = zoo.save_checkpoint(model, tmp / "seed.safetensors", {"epoch": 3, "training_data": "synth:tiny"}).read_bytes()
        n = int.from_bytes(raw[:8], "little")
        # safetensors writes its metadata map in hash order: re-serialised with sorted keys (padded to
        # 8 bytes, as it pads), the seeds -- and so a seeded run -- are the same in every process
        header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)
        parts.append((len(header).to_bytes(8, "little") + header, raw[8 + n:]))
    return parts


def _safetensors_target(tmp: Path) -> Target:
    import torch

    from zoo.checkpoint import CheckpointError, load_checkpoint
    from zoo.model import KWSModel

    parts = _checkpoint_parts(tmp)
    body = parts[0][1]  # every case reads its header against the tensors of the first seed

    def run(data: bytes) -> str:
        path = tmp / "case.safetensors"
        path.write_bytes(data + body)
        try:
            model, meta = load_checkpoint(path)
        except CheckpointError as e:
            if not str(e).startswith(str(path)):
                raise Unexpected(f"CheckpointError that does not name the file: {e}") from None
            return _error_kind(e)
        if not isinstance(model, KWSModel) or not isinstance(meta, dict):
            raise Unexpected(f"load_checkpoint returned {type(model).__name__}, {type(meta).__name__}")
        if not all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()):
            raise Unexpected("load_checkpoint accepted non-finite weights")
        return "valid"

    return Target("safetensors", (CheckpointError,), run, [h for h, _ in parts])


TARGETS: dict[str, Callable[[Path], Target]] = {
    "audio": _audio_target,
    "onnx": _onnx_target,
    "safetensors": _safetensors_target,
}


def make_target(name: str, tmp: Path | None = None) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown fuzz target {name!r}; choose from {', '.join(TARGETS)}")
    work = Path(tmp) if tmp is not None else Path(tempfile.mkdtemp(prefix=f"kws-fuzz-{name}-"))
    work.mkdir(parents=True, exist_ok=True)
    return TARGETS[name](work)
