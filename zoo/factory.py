"""Builders shared by the registered models: frontend + backbone + head, optional ImageNet weights."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from kws.frontend import FrontendConfig
from kws.labels import GSC_V2_WORDS
from zoo.model import KWSModel, ModelConfig


class PretrainedUnavailable(RuntimeError):
    pass


def labels_for(num_classes: int | None, labels) -> tuple[str, ...]:
    if labels is not None:
        labels = tuple(labels)
        if num_classes is not None and num_classes != len(labels):
            raise ValueError(f"num_classes={num_classes} but {len(labels)} labels given")
        return labels
    if num_classes is None or num_classes == len(GSC_V2_WORDS):
        return GSC_V2_WORDS
    return tuple(f"class_{i}" for i in range(num_classes))


def build_timm(name: str, timm_name: str, *, num_classes: int | None = None, labels=None,
               pretrained: bool = False, pretrained_file: str | Path | None = None,
               in_chans: int = 3, frontend: FrontendConfig | None = None, **kw) -> KWSModel:
    import timm

    from zoo.registry import check_file_kwargs

    fe = frontend or FrontendConfig(in_chans=in_chans)
    try:  # the arguments go into the checkpoint: only those a file may carry back (zoo.registry)
        kw = check_file_kwargs(name, kw)
    except ValueError as e:
        raise TypeError(f"{name}: {e}") from None
    cfg = ModelConfig(name=name, labels=labels_for(num_classes, labels), frontend=fe, head="progressive",
                      kwargs=dict(kw))
    if pretrained and pretrained_file is None:
        def unavailable(why: str) -> PretrainedUnavailable:
            return PretrainedUnavailable(
                f"could not fetch timm's ImageNet weights for {timm_name!r} from the Hugging Face hub "
                f"({why}). Offline? Download the timm checkpoint elsewhere and pass --pretrained-file PATH "
                f"(.safetensors, or a .pth/.bin state dict, read with weights_only=True).")

        why = hub_unavailable(timm_name)  # offline, the hub client retries for ~50 s before it fails
        if why is not None:
            raise unavailable(why)
        try:
            backbone = timm.create_model(timm_name, pretrained=True, num_classes=0, in_chans=fe.in_chans, **kw)
        except Exception as e:  # offline: HF hub raises LocalEntryNotFound / connection errors
            raise unavailable(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    else:
        backbone = timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=fe.in_chans, **kw)
        if pretrained_file is not None:
            load_imagenet_file(backbone, pretrained_file, fe.in_chans)
    # MobileNetV3 pools into a 1280-wide head conv; its pooled output is head_hidden_size wide
    return KWSModel(cfg, backbone, getattr(backbone, "head_hidden_size", None) or backbone.num_features)


HUB_PROBE_S = 3.0  # the one short connection probe before timm goes to the hub


def hub_unavailable(timm_name: str, timeout_s: float = HUB_PROBE_S) -> str | None:
    """Why timm cannot get `timm_name`'s ImageNet weights now, or None (cached here, or the hub answers).

    HF_HUB_OFFLINE with an empty cache fails at once; otherwise one HEAD request to the hub (through
    any configured proxy) must answer within `timeout_s`, name resolution included.
    """
    import threading
    import urllib.error
    import urllib.request

    from huggingface_hub import constants, try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo:
        return None  # not a hub model: timm fetches it its own way, and says why if it cannot
    names = [n for n in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin") if n]
    if any(isinstance(try_to_load_from_cache(repo, n), str) for n in names):
        return None
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and the weights are not in the local hub cache"
    result: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout_s)
            result.append(None)
        except urllib.error.HTTPError:
            result.append(None)  # the server answered (with an error status): it is reachable
        except (OSError, ValueError) as e:
            result.append(f"{constants.ENDPOINT} unreachable: {getattr(e, 'reason', e)}")

    # urlopen's timeout does not bound name resolution; a daemon thread with a join does.
    t = threading.Thread(target=probe, daemon=True, name="hf-hub-probe")
    t.start()
    t.join(timeout_s + 0.5)
    return result[0] if result else f"{constants.ENDPOINT} did not answer within {timeout_s:g} s"


def build_native(name: str, make: Callable[[int], nn.Module], *, num_classes: int | None = None, labels=None,
                 pretrained: bool = False, pretrained_file=None, in_chans: int = 1,
                 frontend: FrontendConfig | None = None, **kw) -> KWSModel:
    if pretrained or pretrained_file:
        raise PretrainedUnavailable(f"{name} has no ImageNet weights; its trained KWS weights load with "
                                    f"zoo.load_model({name!r})")
    if kw:
        raise TypeError(f"{name}: unexpected arguments {sorted(kw)}")
    fe = frontend or FrontendConfig(in_chans=in_chans)
    backbone = make(fe.in_chans)
    return KWSModel(ModelConfig(name=name, labels=labels_for(num_classes, labels), frontend=fe, head="linear"),
                    backbone, backbone.num_features)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from a torch file without unpickling code."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: weights file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as e:
            raise ValueError(f"{p}: not a valid safetensors file ({e})") from None
    if p.suffix == ".onnx":
        raise ValueError(f"{p}: this is an ONNX model, not PyTorch weights; use an ort-* backend")
    try:
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{p}: not a PyTorch state dict that loads with weights_only=True ({str(e)[:200]})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{p}: expected a mapping of tensor names to tensors")
    return sd


def load_imagenet_file(backbone: nn.Module, path: str | Path, in_chans: int) -> None:
    """Load timm ImageNet weights from disk, adapting the stem to `in_chans` and dropping the classifier."""
    from timm.models import adapt_input_conv

    sd = read_state_dict(path)
    first_conv = backbone.pretrained_cfg.get("first_conv", "conv_stem")
    classifier = backbone.pretrained_cfg.get("classifier", "classifier")
    key = f"{first_conv}.weight"
    if key in sd and sd[key].shape[1] != in_chans:
        sd[key] = adapt_input_conv(in_chans, sd[key])
    sd = {k: v for k, v in sd.items() if not k.startswith(classifier + ".")}
    try:
        missing, unexpected = backbone.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches: a checkpoint of another architecture
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise ValueError(f"{path}: does not match the {type(backbone).__name__} backbone ({first})") from None
    if missing or unexpected:
        raise ValueError(f"{path}: does not match the {type(backbone).__name__} backbone "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
