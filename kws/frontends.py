"""The frontends a model can declare, by kind: one registry, so configs round-trip through files.

A model's config names its frontend's kind ("logmel": the 128-band log-mel of the image
backbones; "speech_mel": the speech embedding's 32-band mel) with its settings; checkpoints
and ONNX files store `to_dict()`, and `config_from_dict` reads any of them back.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Union

from torch import nn

from kws.audio import SAMPLE_RATE
from kws.frontend import FrontendConfig, LogMel
from kws.speech_mel import SpeechMel, SpeechMelConfig

AnyFrontendConfig = Union[FrontendConfig, SpeechMelConfig]

FRONTENDS: dict[str, tuple[type, type[nn.Module]]] = {
    FrontendConfig.kind: (FrontendConfig, LogMel),
    SpeechMelConfig.kind: (SpeechMelConfig, SpeechMel),
}


# The integer settings a file may give, (lo, hi): a frontend allocates n_fft x n_fft/2 DFT
# kernels and clip-sized buffers, so a file must not be able to ask for gigabytes.
INT_LIMITS: dict[str, tuple[int, int]] = {
    "sample_rate": (SAMPLE_RATE, SAMPLE_RATE), "clip_samples": (1, 10 * SAMPLE_RATE),
    "context_samples": (1, 10 * SAMPLE_RATE), "n_fft": (2, 4096), "win_length": (1, 4096),
    "hop_length": (1, 4096), "n_mels": (1, 512), "in_chans": (1, 3), "window_frames": (1, 1000),
    "window_step": (1, 1000),
}


def config_from_dict(d: dict) -> AnyFrontendConfig:
    """A frontend config from its saved dict; files without a kind predate it and are log-mel.

    Every value is checked against its field's type and a plausible range (ValueError says
    which), since the dict comes from a file and the frontend is built from it.
    """
    if not isinstance(d, dict):
        raise ValueError(f"frontend settings must be a mapping, got {type(d).__name__}")
    kind = d.get("kind", FrontendConfig.kind)
    if not isinstance(kind, str) or kind not in FRONTENDS:
        raise ValueError(f"unknown frontend kind {kind!r}; known: {', '.join(FRONTENDS)}")
    cls = FRONTENDS[kind][0]
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    for name, value in d.items():
        if name == "kind" or name not in types:
            continue  # unknown names: from_dict names them
        if types[name] in ("int", int):
            lo, hi = INT_LIMITS.get(name, (0, 10**6))
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"frontend setting {name}={value!r}: expected an integer in [{lo}, {hi}]")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"frontend setting {name}={value!r}: expected a finite number")
    cfg = cls.from_dict(d)
    if isinstance(cfg, FrontendConfig) and not 0 <= cfg.f_min < cfg.f_max <= cfg.sample_rate / 2:
        raise ValueError(f"frontend f_min={cfg.f_min}, f_max={cfg.f_max}: expected 0 <= f_min < f_max <= "
                         f"{cfg.sample_rate / 2:g}")
    return cfg


def build_frontend(cfg: AnyFrontendConfig) -> nn.Module:
    """The torch module of a frontend config: waveform [B, clip_samples] -> features [B, C, M, F]."""
    for config_cls, module_cls in FRONTENDS.values():
        if type(cfg) is config_cls:
            return module_cls(cfg)
    raise TypeError(f"not a frontend config: {cfg!r}")
