"""What the settings of every frontend share: a kind, a dict form for files, the feature shape.

Torch-free, so that reading a model file's frontend settings needs no torch; each frontend
(kws.frontend's log-mel, kws.speech_mel's speech mel) subclasses it as a frozen dataclass.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

S = TypeVar("S", bound="FrontendSettings")


class FrontendSettings:
    """Mixin for a frozen dataclass of frontend settings (the fields are the subclass's)."""

    kind: ClassVar[str]  # how files name the frontend ("logmel", "speech_mel")
    in_chans: int
    n_mels: int

    @property
    def n_frames(self) -> int:
        raise NotImplementedError

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(channels, bands, frames) of one clip's features: what the network after the frontend reads."""
        return (self.in_chans, self.n_mels, self.n_frames)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[S], d: dict[str, Any]) -> S:
        d = {k: v for k, v in d.items() if k != "kind"}  # files written before frontends had kinds lack it
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown {cls.kind} frontend settings: {sorted(unknown)}")
        return cls(**d)
