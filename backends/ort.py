"""ONNX Runtime backends: one session, one explicitly chosen execution provider.

The provider is a constructor argument and is never guessed or silently replaced: ORT
falls back to the CPU when a provider's libraries fail to load, and only logs it, so
after creating the session we check that `get_providers()[0]` is the provider asked for
and raise BackendUnavailable otherwise.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np

from backends.base import (DEFAULT_THREADS, BackendBase, BackendUnavailable, FeaturesFn, ModelFileError,
                           run_bounded)
from backends.meta import ModelInfo, parse_metadata
from backends.onnxgraph import run_options, session_options
from backends.registry import register_backend

if TYPE_CHECKING:
    from zoo.meta import CheckpointMeta

CPU, CUDA, DML = "CPUExecutionProvider", "CUDAExecutionProvider", "DmlExecutionProvider"


def _ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable(f"onnxruntime is not installed ({e}): pip install onnxruntime "
                                 f"(or onnxruntime-gpu for CUDA, onnxruntime-directml on Windows)") from None
    return onnxruntime


def _installed_ort_package() -> str:
    from importlib import metadata

    for dist in ("onnxruntime-gpu", "onnxruntime-directml", "onnxruntime"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "an unknown onnxruntime build"


class OrtBackend(BackendBase):
    """Base for the ort-* backends: model resolution, validation, session, predict."""

    name: ClassVar[str]
    provider: ClassVar[str] = CPU  # the one execution provider this backend runs, never replaced

    def __init__(self, model: str | Path, threads: int | None = None, device_id: int = 0,
                 provider_options: dict[str, Any] | None = None, log: Callable[[str], None] | None = print) -> None:
        ort = _ort()
        self._check_provider_present(ort)
        from backends.export import resolve_onnx

        self.path = self.model_file = resolve_onnx(model, precision=self.spec.precision, log=log)
        self.threads = DEFAULT_THREADS if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.device_id = device_id
        options = {**self.default_provider_options(device_id), **(provider_options or {})}
        self.session = self._create_session(ort, self.session_options(ort), options)
        self.info: ModelInfo = self._validate()
        self.labels = self.info.labels
        self.frontend = self.info.frontend
        self.model_name = self.info.model_name
        self.precision = self.info.precision  # an int8 backend serves fp32 when no int8 variant was faster
        self.quantization = self.info.json("quantization", {}) or {}
        self.providers = tuple(self.session.get_providers())
        self.device = self.device_name()
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name

    # --- what subclasses change ---------------------------------------------------------------

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            ort = _ort()
        except BackendUnavailable as e:
            return False, str(e)
        if cls.provider not in ort.get_available_providers():
            return False, cls.missing_provider_message(ort)
        return True, f"ok: {_installed_ort_package()}, {cls.provider}"

    @classmethod
    def missing_provider_message(cls, ort) -> str:
        return (f"{cls.provider} is not in this onnxruntime build ({_installed_ort_package()}; it offers "
                f"{', '.join(ort.get_available_providers())})")

    def default_provider_options(self, device_id: int) -> dict[str, Any]:
        return {}

    def session_options(self, ort):
        return session_options(self.threads)

    def device_name(self) -> str:
        return "cpu"

    # --- shared -------------------------------------------------------------------------------

    def _check_provider_present(self, ort) -> None:
        if self.provider not in ort.get_available_providers():
            raise BackendUnavailable(f"{self.name}: {self.missing_provider_message(ort)}")

    def _create_session(self, ort, so, options: dict[str, Any], path: Path | None = None):
        """A session of `path` (default: the model file) on this backend's provider, and only on it."""
        path = self.path if path is None else path
        providers = [(self.provider, options)] if options else [self.provider]
        try:
            sess = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:
            msg = str(e)
            if "INVALID_PROTOBUF" in msg or "Protobuf parsing failed" in msg or "INVALID_GRAPH" in msg:
                raise ModelFileError(f"{path}: not a valid ONNX model ({msg[:300]})") from None
            if self.provider == CPU:
                # The CPU provider is built in and was found present: a session it cannot make is
                # the model's fault (an op ORT lacks, bad data), never "backend unavailable",
                # which would send a caller to other backends and hide this cause.
                raise ModelFileError(f"{path}: onnxruntime cannot load this model: {msg[:400]}") from None
            raise BackendUnavailable(f"{self.name}: onnxruntime could not create a session with {self.provider} "
                                     f"for {path}: {msg[:400]}") from None
        got = sess.get_providers()
        if not got or got[0] != self.provider:
            raise BackendUnavailable(
                f"{self.name}: asked for {self.provider} but the session runs on {got[0] if got else 'nothing'}: "
                f"{self.fallback_hint()}")
        return sess

    def fallback_hint(self) -> str:
        return "the provider failed to initialise (see onnxruntime's log above)"

    def _validate(self) -> ModelInfo:
        props = self.session.get_modelmeta().custom_metadata_map
        info = parse_metadata(props, self.path)
        if info.input_kind == "stream":
            raise ModelFileError(f"{self.path}: a streaming export (audio chunk + state in); {self.name} runs the "
                                 f"full-window graph. live.py runs a model's streaming form by itself; to run this "
                                 f"file use backends.streaming.open_stream.")
        if info.input_kind != "waveform":
            raise ModelFileError(
                f"{self.path}: a features-in model (input {self.session.get_inputs()[0].shape}); {self.name} takes "
                f"waveforms. Export the waveform-in graph instead: python export.py {info.model_name} "
                f"(without --features-in).")
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 2 or shape[1] != info.frontend.clip_samples:
            raise ModelFileError(f"{self.path}: input shape {shape} does not match the metadata's "
                                 f"{info.frontend.clip_samples}-sample clips")
        out = self.session.get_outputs()[0]
        dims = out.shape
        if out.type not in ("tensor(float)", "tensor(double)", "tensor(float16)"):
            raise ModelFileError(f"{self.path}: its output {out.name!r} is {out.type}, not float probabilities")
        if dims is not None and len(dims) != 2:
            raise ModelFileError(f"{self.path}: its output {out.name!r} has shape {dims}, expected [batch, "
                                 f"{len(info.labels)}] (one score per label)")
        if dims is not None and isinstance(dims[1], int) and dims[1] != len(info.labels):
            raise ModelFileError(f"{self.path}: its output gives {dims[1]} scores per clip for the metadata's "
                                 f"{len(info.labels)} labels")
        if self.spec.precision == "int8" and "quantization" not in props:
            raise ModelFileError(f"{self.path}: {self.name} needs a model made by backends.quantize "
                                 f"(python export.py REF --int8); this one is {info.precision}")
        return info

    def _run(self, x: np.ndarray) -> np.ndarray:
        ro = run_options()
        return run_bounded(lambda: self.session.run([self._output], {self._input: x}, ro)[0],
                           lambda: setattr(ro, "terminate", True), self.call_timeout(), str(self.path))

    def model_meta(self) -> CheckpointMeta:
        from zoo.meta import CheckpointMeta

        # the export copies the checkpoint's calibrated thresholds into the file's metadata
        thresholds = self.info.json("thresholds", {}) or {}
        if not isinstance(thresholds, dict):
            raise ModelFileError(f"{self.path}: metadata 'thresholds' is not a JSON object")
        return CheckpointMeta(thresholds=thresholds)

    def features_predictor(self, model_ref: str | Path) -> tuple[FeaturesFn | None, str]:
        """The features-in export of the same checkpoint, with this backend's session options and provider."""
        if self.spec.precision != "fp32":
            return None, "int8 exports are waveform-in only (the frontend stays float): no features-in graph"
        from backends.export import resolve_onnx

        ort = _ort()
        path = resolve_onnx(model_ref, "fp32", features_in=True, log=None)
        sess = self._create_session(ort, self.session_options(ort), self.default_provider_options(self.device_id), path)
        name = sess.get_inputs()[0].name
        return (lambda feats: sess.run(None, {name: feats})[0]), ""

    @classmethod
    def stream_step(cls, ref: str | Path, threads: int = 1, *, device_id: int = 0,
                    log: Callable[[str], None] | None = print):
        """(step, spec, labels, name) of `ref`'s streaming form: its streaming ONNX export on this provider."""
        from backends.streaming import NoStreamingForm, OrtStep, read_stream_info, resolve_streaming

        if cls.spec.precision != "fp32":
            raise NoStreamingForm(f"{cls.name} runs the full-window {cls.spec.precision} graph (there is no "
                                  f"{cls.spec.precision} streaming graph)")
        path = resolve_streaming(ref, log=log)
        info, spec = read_stream_info(path)
        step = OrtStep(path, cls.provider, threads, {"device_id": device_id} if cls.spec.device != "cpu" else None)
        return step, spec, tuple(info.labels), f"{info.model_name} (streaming, {cls.name})"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model_name!r}, path={str(self.path)!r}, device={self.device!r}, "
                f"providers={self.providers}, threads={self.threads})")


@register_backend("ort-cpu", artifact="onnx", device="cpu", auto_rank=30)
class OrtCPUBackend(OrtBackend):
    provider = CPU


@register_backend("ort-cuda", artifact="onnx", device="cuda", auto_rank=0)
class OrtCUDABackend(OrtBackend):
    """CUDA provider with IO binding: inputs and outputs live on the GPU, copied once each way."""

    provider = CUDA

    @classmethod
    def missing_provider_message(cls, ort) -> str:
        return (f"CUDAExecutionProvider is not in this onnxruntime build ({_installed_ort_package()}). "
                f"Needs an NVIDIA GPU on Linux or Windows and `pip uninstall onnxruntime && pip install "
                f"onnxruntime-gpu[cuda,cudnn]` (the extras bring the CUDA/cuDNN libraries it was built for)")

    def default_provider_options(self, device_id: int) -> dict[str, Any]:
        # EXHAUSTIVE searches cuDNN conv algorithms once per input shape: best for the fixed
        # [1, 16000] live shape; the arena grows only as needed so a GUI app stays small.
        return {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE",
                "arena_extend_strategy": "kSameAsRequested", "do_copy_in_default_stream": True}

    def fallback_hint(self) -> str:
        return ("the CUDA provider is present but failed to load: its CUDA/cuDNN libraries (libcudart, "
                "libcublas, libcudnn) were not found or do not match onnxruntime-gpu's CUDA version, or no "
                "NVIDIA GPU/driver is visible (check nvidia-smi)")

    def device_name(self) -> str:
        return f"cuda:{self.device_id}"

    def _run(self, x: np.ndarray) -> np.ndarray:
        ort = _ort()
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self._input, ort.OrtValue.ortvalue_from_numpy(x, "cuda", self.device_id))
        binding.bind_output(self._output, "cuda", self.device_id)
        ro = run_options()

        def call() -> np.ndarray:
            self.session.run_with_iobinding(binding, ro)
            return binding.copy_outputs_to_cpu()[0]

        return run_bounded(call, lambda: setattr(ro, "terminate", True), self.call_timeout(), str(self.path))


@register_backend("ort-directml", artifact="onnx", device="dml", auto_rank=10)
class OrtDirectMLBackend(OrtBackend):
    """DirectML (Windows, any DX12 GPU). DML needs memory patterns off and sequential execution."""

    provider = DML

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if platform.system() != "Windows" and not os.environ.get("KWS_ALLOW_DML_ANY_OS"):
            return False, (f"DirectML runs on Windows 10/11 with a DirectX 12 GPU only (this is "
                           f"{platform.system()}); there: pip uninstall onnxruntime && pip install onnxruntime-directml")
        return super().availability()

    @classmethod
    def missing_provider_message(cls, ort) -> str:
        return (f"DmlExecutionProvider is not in this onnxruntime build ({_installed_ort_package()}): on Windows "
                f"10/11 with a DirectX 12 GPU, pip uninstall onnxruntime && pip install onnxruntime-directml")

    def __init__(self, model: str | Path, threads: int | None = None, device_id: int = 0,
                 provider_options: dict[str, Any] | None = None, log: Callable[[str], None] | None = print) -> None:
        ok, why = self.availability()
        if not ok:
            raise BackendUnavailable(f"{self.name}: {why}")
        super().__init__(model, threads, device_id, provider_options, log)

    def default_provider_options(self, device_id: int) -> dict[str, Any]:
        return {"device_id": device_id}

    def session_options(self, ort):
        so = super().session_options(ort)
        so.enable_mem_pattern = False  # DML does not support memory patterns
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # nor parallel execution
        return so

    def fallback_hint(self) -> str:
        return "DirectML failed to initialise: update the GPU driver and check that DirectX 12 is available (dxdiag)"

    def device_name(self) -> str:
        return f"dml:{self.device_id}"


@register_backend("ort-int8", artifact="onnx", device="cpu", precision="int8")
class OrtInt8Backend(OrtBackend):
    """The int8 graph of backends.quantize on the CPU provider (or the fp32 graph, when int8 lost)."""

    provider = CPU

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        ok, why = super().availability()
        if not ok:
            return ok, why
        try:
            import onnxruntime.quantization  # noqa: F401  (needs the onnx package)
        except ImportError as e:
            return True, f"ok for ready int8 .onnx files; quantizing needs: pip install onnx ({e})"
        return True, why + ", onnxruntime.quantization"
