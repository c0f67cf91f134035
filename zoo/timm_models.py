"""ImageNet CNN backbones from timm, wrapped with the log-mel frontend and the seed's head."""
from __future__ import annotations

from torch import nn

from zoo.factory import build_timm
from zoo.registry import register_model


@register_model
def efficientnet_b0(**kw) -> nn.Module:
    """The default: EfficientNet-B0 with stochastic depth 0.2, as in the seed."""
    kw.setdefault("drop_path_rate", 0.2)  # a checkpoint's saved kwargs carry it too: no duplicate argument
    return build_timm("efficientnet_b0", "efficientnet_b0", **kw)


@register_model
def mobilenetv3_small_100(**kw) -> nn.Module:
    return build_timm("mobilenetv3_small_100", "mobilenetv3_small_100", **kw)


@register_model
def mobilenetv3_large_100(**kw) -> nn.Module:
    return build_timm("mobilenetv3_large_100", "mobilenetv3_large_100", **kw)


@register_model
def resnet18(**kw) -> nn.Module:
    return build_timm("resnet18", "resnet18", **kw)


@register_model
def resnet34(**kw) -> nn.Module:
    return build_timm("resnet34", "resnet34", **kw)
