"""Weight-only quantized storage, for shipped checkpoints that would be over the size limit in fp16.

The model still computes in float: `decode` turns the stored integers back into fp32 weights
when the checkpoint loads. Only conv and linear weights (tensors of 2+ dimensions) are stored
this way; biases and norms stay fp16. A weight `k` of shape (out, ...), n = prod(shape[1:]):

- 8 bits: `k` as int8 of its own shape, and `Q8_SCALE + k`, fp32 (out,): symmetric, one scale
  per output channel (|q| <= 127);
- 4 bits: `Q4_DATA + k`, uint8 (out, m / 2) with two values a byte (low nibble first, stored as
  q + 8), and `Q4_SCALE + k`, fp16 (out, m / Q4_BLOCK), where m is n rounded up to a whole
  block: symmetric, one scale per block of Q4_BLOCK inputs of one output channel (|q| <= 7),
  GGUF's Q4_0 layout. The shape comes from the model the file is loaded into.

The prefixes cannot collide with a parameter name: PyTorch's names are dotted identifiers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch

Q8_SCALE = "__scale__."
Q4_DATA = "__q4__."
Q4_SCALE = "__q4scale__."
PREFIXES = (Q8_SCALE, Q4_DATA, Q4_SCALE)
Q4_BLOCK = 32  # inputs per 4-bit scale: 4 + 16/32 = 4.5 bits a weight
BITS = (4, 8)


class WeightStorageError(ValueError):
    """Quantized weights in a file that cannot be decoded; the message names the file and the tensor."""


def storable(v: torch.Tensor) -> bool:
    """A conv or linear weight: what may be stored in fewer bits."""
    return v.is_floating_point() and v.ndim >= 2


def stored_bytes(numel: int, bits: int | None) -> float:
    """About how many bytes a weight of `numel` values takes at `bits` (None: fp16)."""
    if bits is None:
        return 2.0 * numel
    return numel if bits == 8 else numel / 2 + 2 * numel / Q4_BLOCK


def encode(k: str, v: torch.Tensor, bits: int) -> dict[str, torch.Tensor]:
    """The tensors that store weight `k` at `bits` (4 or 8)."""
    if bits not in BITS:
        raise ValueError(f"{k}: weights are stored at {BITS} bits, not {bits}")
    flat = v.detach().float().reshape(v.shape[0], -1)
    if bits == 8:
        amax = flat.abs().amax(dim=1)
        scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))  # an all-zero channel stays zero
        q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        return {k: q.reshape(v.shape).contiguous(), Q8_SCALE + k: scale.contiguous()}
    n = flat.shape[1]
    m = math.ceil(n / Q4_BLOCK) * Q4_BLOCK
    blocks = torch.nn.functional.pad(flat, (0, m - n)).reshape(v.shape[0], m // Q4_BLOCK, Q4_BLOCK)
    amax = blocks.abs().amax(dim=2)
    scale = torch.where(amax > 0, amax / 7.0, torch.ones_like(amax)).half()
    q = torch.round(blocks / scale.float()[..., None]).clamp_(-7, 7).to(torch.int16) + 8  # 1..15
    q = q.reshape(v.shape[0], m).to(torch.uint8)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)
    return {Q4_DATA + k: packed.contiguous(), Q4_SCALE + k: scale.contiguous()}


def decode(path: Path, tensors: Mapping[str, torch.Tensor],
           shapes: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """`tensors` with every quantized weight turned back into fp32 of its shape in `shapes` (the model's).

    WeightStorageError when scales are missing, of the wrong shape or not positive and finite, or
    the data does not fit the weight it is for.
    """
    out = {k: v for k, v in tensors.items() if not k.startswith(PREFIXES)}
    for key, scale in tensors.items():
        if key.startswith(Q8_SCALE):
            k = key[len(Q8_SCALE):]
            q = out.get(k)
            if q is None or q.dtype != torch.int8:
                raise WeightStorageError(f"{path}: int8 scales for {k!r}, which is not an int8 tensor in the file")
            _check_scale(path, k, scale, (q.shape[0],))
            out[k] = q.float() * scale.float().view(-1, *([1] * (q.ndim - 1)))
        elif key.startswith(Q4_SCALE):
            k = key[len(Q4_SCALE):]
            out[k] = _decode_q4(path, k, tensors.get(Q4_DATA + k), scale, shapes.get(k))
        elif key.startswith(Q4_DATA) and Q4_SCALE + key[len(Q4_DATA):] not in tensors:
            raise WeightStorageError(f"{path}: 4-bit weights for {key[len(Q4_DATA):]!r} without their scales")
    return out


def _check_scale(path: Path, k: str, scale: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(scale.shape) != shape or not scale.is_floating_point() or not torch.isfinite(scale).all() \
            or (scale <= 0).any():
        raise WeightStorageError(f"{path}: the scales of {k!r} must be positive finite numbers of shape {shape}, "
                                 f"got {tuple(scale.shape)} {scale.dtype}")


def _decode_q4(path: Path, k: str, packed: torch.Tensor | None, scale: torch.Tensor,
               shape: torch.Size | None) -> torch.Tensor:
    if shape is None or len(shape) < 2:
        raise WeightStorageError(f"{path}: 4-bit weights for {k!r}, which is not a conv or linear weight of the model")
    n = math.prod(shape[1:])
    m = math.ceil(n / Q4_BLOCK) * Q4_BLOCK
    if packed is None or packed.dtype != torch.uint8 or tuple(packed.shape) != (shape[0], m // 2):
        raise WeightStorageError(f"{path}: the 4-bit data of {k!r} must be uint8 of shape {(shape[0], m // 2)}, "
                                 f"got {None if packed is None else (tuple(packed.shape), packed.dtype)}")
    _check_scale(path, k, scale, (shape[0], m // Q4_BLOCK))
    q = torch.stack([packed & 0xF, packed >> 4], dim=2).reshape(shape[0], m).to(torch.int16) - 8
    if (q < -7).any():  # nibble 0 is never written: a file with one was not made by encode
        raise WeightStorageError(f"{path}: the 4-bit data of {k!r} holds values outside -7..7")
    w = q.float().reshape(shape[0], m // Q4_BLOCK, Q4_BLOCK) * scale.float()[..., None]
    return w.reshape(shape[0], m)[:, :n].reshape(shape).contiguous()


def stored_bits(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """{weight: bits} of the quantized weights among a file's tensors, for writing it back alike."""
    return {**{k[len(Q8_SCALE):]: 8 for k in tensors if k.startswith(Q8_SCALE)},
            **{k[len(Q4_SCALE):]: 4 for k in tensors if k.startswith(Q4_SCALE)}}


def plan_bits(state: Mapping[str, torch.Tensor], max_bytes: int, overhead: int = 64 * 1024) -> dict[str, int]:
    """Bits per weight (fewest tensors touched) for a file within `max_bytes`: {} when fp16 fits; else every
    conv/linear weight at 8 bits, then the largest ones at 4 until it fits. ValueError when even all-4 does not."""
    floats = {k: v.numel() for k, v in state.items() if v.is_floating_point()}
    weights = sorted((k for k, v in state.items() if storable(v)), key=lambda k: -floats[k])
    quantizable = set(weights)
    rest = sum(2 * n for k, n in floats.items() if k not in quantizable) + overhead

    def size(bits: dict[str, int]) -> float:
        return rest + sum(stored_bytes(floats[k], bits.get(k)) for k in weights)

    bits: dict[str, int] = {}
    if size(bits) <= max_bytes:
        return bits
    bits = {k: 8 for k in weights}
    for k in weights:
        if size(bits) <= max_bytes:
            return bits
        bits[k] = 4
    if size(bits) <= max_bytes:
        return bits
    raise ValueError(f"{size(bits) / 2**20:.1f} MiB even with every weight at 4 bits, over {max_bytes / 2**20:.1f} MiB")
