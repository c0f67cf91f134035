"""The frontends a model can declare, by kind: one registry, so configs round-trip through files.

A model's config names its frontend's kind ("logmel": the 128-band log-mel of the image
backbones; "speech_mel": the speech embedding's 32-band mel) with its settings; checkpoints
and ONNX files store `to_dict()`, and `config_from_dict` reads any of them back.
"""
from __future__ import annotations

from typing import Union

from torch import nn

from kws.frontend import FrontendConfig, LogMel
from kws.speech_mel import SpeechMel, SpeechMelConfig

AnyFrontendConfig = Union[FrontendConfig, SpeechMelConfig]

FRONTENDS: dict[str, tuple[type, type[nn.Module]]] = {
    FrontendConfig.kind: (FrontendConfig, LogMel),
    SpeechMelConfig.kind: (SpeechMelConfig, SpeechMel),
}


def config_from_dict(d: dict) -> AnyFrontendConfig:
    """A frontend config from its saved dict; files without a kind predate it and are log-mel."""
    if not isinstance(d, dict):
        raise ValueError(f"frontend settings must be a mapping, got {type(d).__name__}")
    kind = d.get("kind", FrontendConfig.kind)
    if kind not in FRONTENDS:
        raise ValueError(f"unknown frontend kind {kind!r}; known: {', '.join(FRONTENDS)}")
    return FRONTENDS[kind][0].from_dict(d)


def build_frontend(cfg: AnyFrontendConfig) -> nn.Module:
    """The torch module of a frontend config: waveform [B, clip_samples] -> features [B, C, M, F]."""
    for config_cls, module_cls in FRONTENDS.values():
        if type(cfg) is config_cls:
            return module_cls(cfg)
    raise TypeError(f"not a frontend config: {cfg!r}")
