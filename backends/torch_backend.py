"""PyTorch backends: the training model itself (eager, torch.fft frontend), on CPU or CUDA."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar

import numpy as np

from backends.base import BackendBase, BackendUnavailable, FeaturesFn, ModelFileError
from backends.registry import register_backend

if TYPE_CHECKING:
    from zoo.meta import CheckpointMeta


def _torch():
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailable(f"PyTorch is not installed ({e}): pip install torch") from None
    return torch


class TorchBackend(BackendBase):
    name: ClassVar[str]

    def __init__(self, model: str | Path, threads: int | None = None, device_id: int = 0) -> None:
        torch = _torch()
        self._check_device(torch)
        if Path(model).suffix == ".onnx":
            raise ModelFileError(f"{model}: an ONNX model; {self.name} runs PyTorch checkpoints (a zoo name, a run "
                                 f"folder or a .safetensors file). Run .onnx files with an ort-* backend.")
        from zoo import load_model, resolve_weights

        self.model_file = resolve_weights(model)
        m, self.meta = load_model(self.model_file)  # safetensors only: nothing is unpickled
        self.device = self._device(device_id)
        self.model = m.to(self.device).eval()
        # torch's thread count is process-wide: set it only when asked, and say so in the docs
        self.threads = threads
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(int(threads))
        self.labels = m.cfg.labels
        self.frontend = m.cfg.frontend
        self.model_name = m.cfg.name
        self.providers = ("torch",)

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            torch = _torch()
        except BackendUnavailable as e:
            return False, str(e)
        return True, f"ok: torch {torch.__version__}"

    def _check_device(self, torch) -> None:
        pass

    def _device(self, device_id: int) -> str:
        return "cpu"

    def _run(self, waves: np.ndarray) -> np.ndarray:
        torch = _torch()
        x = torch.from_numpy(waves).to(self.device, non_blocking=True)
        # cuDNN convolutions default to TF32 on Ampere+; its 10-bit mantissa flipped 3 % of top-1
        # answers of a (random-init) EfficientNet against the CPU on an H200. A backend must give
        # the same answers as the reference, so inference runs in true fp32 (no-op on CPU).
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return torch.softmax(self.model(x).float(), dim=-1).cpu().numpy()

    def model_meta(self) -> CheckpointMeta:
        from zoo.meta import CheckpointMeta

        return CheckpointMeta.from_dict(self.meta)

    def features_predictor(self, model_ref: str | Path) -> tuple[FeaturesFn | None, str]:
        torch = _torch()
        model, device = self.model, self.device

        def features(feats: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(feats).to(device)
            with torch.inference_mode():
                return torch.softmax(model.forward_features(x).float(), dim=-1).cpu().numpy()  # .cpu() syncs

        return features, ""

    @classmethod
    def stream_step(cls, ref: str | Path, threads: int = 1, *, device_id: int = 0,
                    log: Callable[[str], None] | None = print):
        """(step, spec, labels, name) of `ref`'s streaming form: the torch module itself."""
        from backends.streaming import TorchStep, streaming_form
        from zoo import load_model

        torch = _torch()
        if Path(ref).suffix == ".onnx":
            raise ModelFileError(f"{ref}: an ONNX file; {cls.name} runs checkpoints")
        model, _ = load_model(ref)
        mod, spec = streaming_form(model)
        if threads:
            torch.set_num_threads(int(threads))
        device = "cpu" if cls.spec.device == "cpu" else f"{cls.spec.device}:{device_id}"
        return TorchStep(mod, device), spec, tuple(model.labels), f"{model.cfg.name} (streaming, {cls.name})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_name!r}, device={self.device!r}, threads={self.threads})"


@register_backend("torch-cpu", artifact="checkpoint", device="cpu", auto_rank=40)
class TorchCPUBackend(TorchBackend):
    pass


@register_backend("torch-cuda", artifact="checkpoint", device="cuda", auto_rank=20)
class TorchCUDABackend(TorchBackend):
    """predict() ends in .cpu(), which synchronises: latency figures include the GPU work."""

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        ok, why = super().availability()
        if not ok:
            return ok, why
        torch = _torch()
        if torch.version.cuda is None:
            return False, (f"this torch build ({torch.__version__}) has no CUDA support: install a CUDA build "
                           f"(see pytorch.org, e.g. pip install torch --index-url https://download.pytorch.org/whl/cu128)")
        if not torch.cuda.is_available():
            return False, (f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU: needs "
                           f"an NVIDIA GPU and driver (check nvidia-smi, CUDA_VISIBLE_DEVICES)")
        return True, f"ok: torch {torch.__version__}, {torch.cuda.get_device_name(0)}"

    def _check_device(self, torch) -> None:
        ok, why = self.availability()
        if not ok:
            raise BackendUnavailable(f"{self.name}: {why}")

    def _device(self, device_id: int) -> str:
        return f"cuda:{device_id}"
