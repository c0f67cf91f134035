"""A zoo model is frontend + backbone + head, and carries its own input contract."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kws import safejson
from kws.frontend import FrontendConfig
from kws.frontends import AnyFrontendConfig, build_frontend, config_from_dict
from kws.labels import GSC_V2_WORDS, MAX_LABELS, valid_labels




@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it: saved in checkpoints and ONNX metadata."""

    name: str
    labels: tuple[str, ...] = GSC_V2_WORDS
    frontend: AnyFrontendConfig = field(default_factory=FrontendConfig)
    head: str = "progressive"  # "progressive" (the 1024-512-256 GELU MLP head), "linear" (tiny nets), or the family's own
    kwargs: dict = field(default_factory=dict)  # extra constructor arguments (e.g. drop_path_rate)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        d = {**dataclasses.asdict(self), "frontend": self.frontend.to_dict()}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "ModelConfig":
        """The config a file carries, checked field by field (ValueError says what is wrong; the
        caller names the file): a registered model, plain labels, a bounded frontend, and only
        the constructor arguments that model's family accepts from a file (zoo.registry)."""
        from zoo.registry import check_file_kwargs, is_model

        d = safejson.loads(s, "model config")  # ValueError: not text, not JSON, too large or too deep
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a JSON object, got {type(d).__name__}")
        name, labels, head = d.get("name"), d.get("labels"), d.get("head", "progressive")
        if not isinstance(name, str) or not is_model(name):
            raise ValueError(f"model config names no registered model ({name!r})")
        if not isinstance(labels, list) or not valid_labels(labels):
            raise ValueError(f"model config labels must be 2-{MAX_LABELS} distinct non-empty strings")
        if not isinstance(head, str):
            raise ValueError(f"model config head must be a name, got {head!r}")
        if "frontend" not in d:
            raise ValueError("model config has no frontend settings")
        try:
            frontend = config_from_dict(d["frontend"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"model config frontend: {e}") from None
        return cls(name=name, labels=tuple(labels), frontend=frontend, head=head,
                   kwargs=check_file_kwargs(name, d.get("kwargs", {})))


class ProgressiveHead(nn.Sequential):
    """The progressive classifier: three shrinking GELU blocks with decreasing dropout."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        def block(p: float, i: int, o: int) -> list[nn.Module]:
            return [nn.Dropout(p), nn.Linear(i, o), nn.BatchNorm1d(o), nn.GELU()]

        super().__init__(
            nn.Dropout(0.2),  # on the pooled backbone features
            *block(0.5, in_features, 1024),
            *block(0.35, 1024, 512),
            *block(0.25, 512, 256),
            nn.Dropout(0.4),
            nn.Linear(256, num_classes),
        )


class LinearHead(nn.Sequential):
    def __init__(self, in_features: int, num_classes: int, drop: float = 0.1) -> None:
        super().__init__(nn.Dropout(drop), nn.Linear(in_features, num_classes))


HEADS = {"progressive": ProgressiveHead, "linear": LinearHead}


class KWSModel(nn.Module):
    """waveform [B, T] -> logits [B, N]; `forward_features` takes the frontend's features [B, C, M, F].

    The head is `HEADS[cfg.head]` over `num_features` pooled features, or a module the
    family builds itself (`head=`) when its backbone returns more than a vector.
    """

    def __init__(self, cfg: ModelConfig, backbone: nn.Module, num_features: int | None = None,
                 head: nn.Module | None = None) -> None:
        super().__init__()
        if (head is None) == (num_features is None):
            raise TypeError("KWSModel takes either num_features (for a HEADS head) or a head module")
        self.cfg = cfg
        self.frontend = build_frontend(cfg.frontend)
        self.backbone = backbone
        self.head = head if head is not None else HEADS[cfg.head](num_features, cfg.num_classes)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.cfg.labels

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(feats))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.frontend(wave))

    def package_weights(self) -> dict[str, torch.Tensor]:
        """Weights that come from an installed package, by state-dict key (none for most models).

        A checkpoint leaves out those that are still exactly as installed, so a model over a
        frozen pretrained part ships only what it trained; loading fills them back in.
        """
        return {}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: KWSModel, batch: int = 1, include_frontend: bool = False) -> int:
    """Multiply-accumulates of one forward pass, from torch's FLOP counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.cfg.frontend
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        if include_frontend:
            fft = getattr(model.frontend, "use_fft", None)
            if fft is not None:
                model.frontend.use_fft = False  # count the DFT as the exported graph runs it
            model(torch.zeros(batch, cfg.clip_samples))
            if fft is not None:
                model.frontend.use_fft = fft
        else:
            model.forward_features(torch.zeros(batch, *cfg.feature_shape))
    model.train(was_training)
    return fc.get_total_flops() // 2


def model_dir() -> Path:
    return Path(__file__).resolve().parent / "weights"
