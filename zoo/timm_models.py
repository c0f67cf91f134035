"""ImageNet CNN backbones from timm, wrapped with the log-mel frontend and the progressive MLP head."""
from __future__ import annotations

from torch import nn

from zoo.factory import build_timm
from zoo.registry import FileKwarg, register_model

# The timm arguments a checkpoint may carry: regularisation strengths, which change training
# and not the weights' shapes. build_timm accepts these and no others.
TIMM_FILE_KWARGS = {"drop_path_rate": FileKwarg(float, 0.0, 1.0), "drop_rate": FileKwarg(float, 0.0, 1.0)}


@register_model(file_kwargs=TIMM_FILE_KWARGS)
def efficientnet_b0(**kw) -> nn.Module:
    """The default backbone: EfficientNet-B0 with stochastic depth 0.2."""
    kw.setdefault("drop_path_rate", 0.2)  # a checkpoint's saved kwargs carry it too: no duplicate argument
    return build_timm("efficientnet_b0", "efficientnet_b0", **kw)


@register_model(file_kwargs=TIMM_FILE_KWARGS)
def mobilenetv3_small_100(**kw) -> nn.Module:
    return build_timm("mobilenetv3_small_100", "mobilenetv3_small_100", **kw)


@register_model(file_kwargs=TIMM_FILE_KWARGS)
def mobilenetv3_large_100(**kw) -> nn.Module:
    return build_timm("mobilenetv3_large_100", "mobilenetv3_large_100", **kw)


@register_model(file_kwargs=TIMM_FILE_KWARGS)
def resnet18(**kw) -> nn.Module:
    return build_timm("resnet18", "resnet18", **kw)


@register_model(file_kwargs=TIMM_FILE_KWARGS)
def resnet34(**kw) -> nn.Module:
    return build_timm("resnet34", "resnet34", **kw)
