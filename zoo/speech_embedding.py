"""Google's pretrained speech embedding with a small trained head: the zoo's real-speech family.

Lin et al., "Training Keyword Spotters with Limited and Synthesized Speech Data" (ICASSP 2020,
arXiv 2002.01322): a 20-layer convnet trained on about 200 M real clips that maps 76 mel
frames (775 ms) to 96 values, one embedding every 8 frames (80 ms). The architecture is
written out below; its weights are read from the verified ONNX file of the openwakeword 0.4.0
wheel (kws.pretrained), never from a checkpoint unless they were fine-tuned.

Run as one fully convolutional pass over the whole mel sequence: its time convolutions are
unpadded and its time pooling strides multiply to 8, the window step, so output step j is
exactly the original model applied to the window starting at frame 8j (tested against ONNX
Runtime on the original files), at a fifth of the cost of nine separate windows.

    model = zoo.create_model("speech_embedding_mlp", labels=...)   # embedding + MLP head
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kws.speech_mel import SpeechMelConfig
from zoo.factory import PretrainedUnavailable, labels_for
from zoo.model import KWSModel, ModelConfig
from zoo.registry import register_model

EMBEDDING_DIM = 96
LEAK = 0.2  # LeakyReLU slope of every layer
FLOOR = -0.4  # every activation is also clamped from below (tf.math.maximum in the original)
BN_EPS = 1e-3  # the one unfused BatchNorm, after the stem

# The 19 convolutions after the stem, in order: (kernel (time, band), in, out); "pool" entries are
# max-pools (kernel = stride). 1x3 convs pad the band axis by one; time is never padded.
LAYERS: tuple = (
    ((1, 3), 24, 24), ((3, 1), 24, 24), ("pool", (2, 2)),
    ((1, 3), 24, 48), ((3, 1), 48, 48), ((1, 3), 48, 48), ((3, 1), 48, 48), ("pool", (1, 2)),
    ((1, 3), 48, 72), ((3, 1), 72, 72), ((1, 3), 72, 72), ((3, 1), 72, 72), ("pool", (2, 2)),
    ((1, 3), 72, 96), ((3, 1), 96, 96), ((1, 3), 96, 96), ((3, 1), 96, 96), ("pool", (1, 2)),
    ((1, 3), 96, 96), ((3, 1), 96, 96), ((1, 3), 96, 96), ((3, 1), 96, 96), ("pool", (2, 2)),
    ((3, 1), 96, EMBEDDING_DIM),  # the output layer: no bias, no activation
)
STEM = "model/conv2d/StatefulPartitionedCall/StatefulPartitionedCall/Conv2D/ReadVariableOp:0"
BN = ("model/batch_normalization/ReadVariableOp:0", "model/batch_normalization/ReadVariableOp_1:0",
      "model/batch_normalization/FusedBatchNormV3/ReadVariableOp:0",
      "model/batch_normalization/FusedBatchNormV3/ReadVariableOp_1:0")  # scale, shift, mean, var
LAST = "model/conv2d_19/Conv2D/ReadVariableOp:0"


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics: fine-tuning on small batches must not re-estimate them."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class SpeechEmbedding(nn.Module):
    """mel features [B, 1, 32, F] (frontend layout) -> embeddings [B, W, 96], W = (F - 76) // 8 + 1."""

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 24, (3, 3), bias=False)
        self.stem_bn = FrozenBatchNorm2d(24, BN_EPS)
        self.convs = nn.ModuleList()
        self.plan: list[tuple[str, tuple[int, int]]] = []  # ("conv", pad) or ("pool", kernel), in order
        for layer in LAYERS:
            if layer[0] == "pool":
                self.plan.append(("pool", layer[1]))
                continue
            (kt, kb), cin, cout = layer
            last = len(self.convs) == 18
            self.convs.append(nn.Conv2d(cin, cout, (kt, kb), bias=not last))
            self.plan.append(("conv", (0, 0, 0, 0) if kb == 1 else (1, 1, 0, 0)))  # F.pad order: band, time
        if pretrained:
            self.load_pretrained()

    def load_pretrained(self) -> None:
        """Copy the verified pretrained weights in (raises PretrainedFileError with the fix)."""
        import numpy as np

        from kws.pretrained import EMBEDDING, initializers, weight

        t = initializers(EMBEDDING)

        def put(param: torch.Tensor, name: str) -> None:
            param.data.copy_(torch.from_numpy(np.asarray(weight(t, name, tuple(param.shape), EMBEDDING))))

        put(self.stem.weight, STEM)
        for p, name in zip((self.stem_bn.weight, self.stem_bn.bias, self.stem_bn.running_mean,
                            self.stem_bn.running_var), BN):
            put(p, name)
        for i, conv in enumerate(self.convs, start=1):
            if conv.bias is None:
                put(conv.weight, LAST)
            else:
                put(conv.weight, f"model/conv2d_{i}/Conv2D_weights_fused_bn")
                put(conv.bias, f"model/conv2d_{i}/Conv2D_bias_fused_bn")

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = F.pad(feats.transpose(2, 3), (1, 1))  # [B, 1, frames, bands + 2]: the original pads the bands
        # The original's stem order: conv, ReLU, BatchNorm, then the LeakyReLU + floor every layer has.
        x = self.stem_bn(F.relu(self.stem(x)))
        x = torch.clamp_min(F.leaky_relu(x, LEAK), FLOOR)
        convs = iter(self.convs)
        for kind, arg in self.plan:
            if kind == "pool":
                x = F.max_pool2d(x, arg, arg)
                continue
            conv = next(convs)
            x = conv(F.pad(x, arg) if any(arg) else x)
            if conv.bias is not None:
                x = torch.clamp_min(F.leaky_relu(x, LEAK), FLOOR)
        return x[..., 0].transpose(1, 2)  # [B, W, 96]


class WindowMLP(nn.Module):
    """Every window's embedding, flattened, through a two-layer MLP.

    Word identity lives in how the embeddings change across the 9 windows, and a flat MLP
    sees their order. LayerNorm first: the embedding's values reach about +-70.
    """

    def __init__(self, windows: int, num_classes: int, hidden: int = 256, drop: float = 0.3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(EMBEDDING_DIM)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.1),
            nn.Linear(windows * EMBEDDING_DIM, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(drop),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(drop),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(emb))


class WindowConv(nn.Module):
    """A temporal convolution over the windows, then attention pooling over time.

    Shift-tolerant where the MLP is position-bound: the word may sit anywhere in the windows.
    """

    def __init__(self, windows: int, num_classes: int, hidden: int = 192, drop: float = 0.3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(EMBEDDING_DIM)
        self.conv = nn.Sequential(
            nn.Conv1d(EMBEDDING_DIM, hidden, 3, padding=1), nn.GELU(), nn.Dropout(drop),
            nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU(),
        )
        self.score = nn.Conv1d(hidden, 1, 1)
        self.out = nn.Sequential(nn.Dropout(drop), nn.Linear(hidden, num_classes))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.norm(emb).transpose(1, 2))  # [B, hidden, W]
        w = torch.softmax(self.score(h), dim=-1)  # [B, 1, W]
        return self.out((h * w).sum(-1))


HEADS = {"mlp": WindowMLP, "conv": WindowConv}


class SpeechEmbeddingModel(KWSModel):
    def package_weights(self) -> dict[str, torch.Tensor]:
        reference = SpeechEmbedding(pretrained=True)
        return {f"backbone.{k}": v for k, v in reference.state_dict().items()}


def build_speech_embedding(name: str, head: str, *, num_classes: int | None = None, labels=None,
                           pretrained: bool = False, pretrained_file=None,
                           frontend: SpeechMelConfig | None = None) -> KWSModel:
    if pretrained or pretrained_file:
        raise PretrainedUnavailable(f"{name}: the speech embedding is always pretrained (read from the "
                                    f"openwakeword package); --pretrained/--pretrained-file are for timm backbones")
    fe = frontend or SpeechMelConfig()
    if not isinstance(fe, SpeechMelConfig):
        raise ValueError(f"{name} reads the speech embedding's own mel frontend, not {type(fe).__name__}")
    cfg = ModelConfig(name=name, labels=labels_for(num_classes, labels), frontend=fe, head=head)
    return SpeechEmbeddingModel(cfg, SpeechEmbedding(pretrained=True),
                                head=HEADS[head](fe.n_windows, cfg.num_classes))


def _pretrained_files_present() -> None:
    """Both openwakeword files verified (PretrainedFileError names the file and the reinstall)."""
    from kws.pretrained import EMBEDDING, MELSPECTROGRAM, verified_path

    verified_path(MELSPECTROGRAM)
    verified_path(EMBEDDING)


@register_model(requires=_pretrained_files_present)
def speech_embedding_mlp(**kw) -> nn.Module:
    """Google's speech embedding (frozen or fine-tuned) + an MLP over its 9 windows."""
    return build_speech_embedding("speech_embedding_mlp", "mlp", **kw)


@register_model(requires=_pretrained_files_present)
def speech_embedding_conv(**kw) -> nn.Module:
    """Google's speech embedding + a temporal conv with attention pooling over its windows."""
    return build_speech_embedding("speech_embedding_conv", "conv", **kw)

