"""A KWS-native tiny network: depthwise-separable CNN with early striding (~60 k parameters).

After "Hello Edge" (Zhang et al., 2017), DS-CNN. Two choices make it fast on a CPU:
the stem and the first block stride 2 in time *and* frequency, so most blocks run on a
16x8 map rather than the full 128x63 spectrogram that makes BC-ResNet slow to train
here; and every conv is followed by BN, which folds into the conv at export.
"""
from __future__ import annotations

from torch import nn

from zoo.factory import build_native
from zoo.registry import register_model

# (out_channels, stride) per depthwise-separable block, after a 32-channel stem of stride 2
DSCNN_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1))


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DSCNN(nn.Module):
    """The backbone: features [B, C, M, F] -> pooled [B, num_features]. Its dropout is the linear head's."""

    def __init__(self, in_chans: int = 1, stem: int = 32, blocks=DSCNN_BLOCKS) -> None:
        super().__init__()
        layers = _conv_bn(in_chans, stem, 3, 2)
        c = stem
        for cout, s in blocks:
            layers += _conv_bn(c, c, 3, s, groups=c)  # depthwise
            layers += _conv_bn(c, cout, 1, 1)  # pointwise
            c = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


@register_model
def dscnn(**kw) -> nn.Module:
    """The zoo's tiny KWS-native net; linear head (its own, smaller than the progressive MLP)."""
    return build_native("dscnn", lambda in_chans: DSCNN(in_chans=in_chans), **kw)
