"""The backend registry: each runtime registers once, and every list of backends derives from it.

Adding a backend (OpenVINO, TensorRT, CoreML, ...) is one new file and one import line:

    # backends/openvino.py
    @register_backend("openvino-cpu", artifact="onnx", device="cpu", auto_rank=35)
    class OpenVINOBackend(BackendBase): ...

    # backends/__init__.py
    from backends import openvino  # noqa: F401

The CLI choices and help texts, `--backend auto`'s order, the bench's backend list and the
agreement a self-check demands all come from the entries here, never from a name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

ARTIFACTS = ("onnx", "checkpoint")  # what a backend runs: an exported graph, or the safetensors checkpoint
DEVICES = ("cpu", "cuda", "dml")
# The top-1 agreement with torch-cpu (the eager reference) a backend must reach on real clips:
# an fp32 graph computes the same function; int8 may flip a near-tie (backends.quantize keeps a
# variant only at >= 99 %).
MIN_AGREEMENT: dict[str, float] = {"fp32": 1.0, "int8": 0.99}
DEFAULT_BACKEND = "ort-cpu"  # portable, and the fastest CPU path for every zoo model
REFERENCE_BACKEND = "torch-cpu"  # the eager training model on the CPU: what every backend is checked against


@dataclass(frozen=True)
class BackendSpec:
    """What the rest of the project may know about a backend without importing its runtime."""

    name: str  # what users type: --backend NAME
    cls: type  # the class that runs it; its runtime is imported only when it is built
    artifact: str  # "onnx": a graph exported from the checkpoint on first use; "checkpoint": safetensors
    device: str  # "cpu" | "cuda" | "dml"
    precision: str = "fp32"  # what its graph computes: "fp32" | "int8"
    auto_rank: int | None = None  # `--backend auto` tries lower ranks first; None: never chosen by auto

    @property
    def min_agreement(self) -> float:
        return MIN_AGREEMENT[self.precision]

    @property
    def runs_onnx_files(self) -> bool:
        """Whether a user's .onnx file can be given to it (checkpoint backends need the weights)."""
        return self.artifact == "onnx"


_REGISTRY: dict[str, BackendSpec] = {}
C = TypeVar("C", bound=type)


def register_backend(name: str, *, artifact: str, device: str, precision: str = "fp32",
                     auto_rank: int | None = None) -> Callable[[C], C]:
    """Class decorator: register `cls` as backend `name`, and give the class its `spec` and `name`."""
    if artifact not in ARTIFACTS or device not in DEVICES or precision not in MIN_AGREEMENT:
        raise ValueError(f"backend {name!r}: artifact must be one of {ARTIFACTS}, device one of {DEVICES}, "
                         f"precision one of {tuple(MIN_AGREEMENT)}")

    def add(cls: C) -> C:
        if name in _REGISTRY:
            raise ValueError(f"backend {name!r} is registered twice ({_REGISTRY[name].cls.__qualname__}, "
                             f"{cls.__qualname__})")
        spec = BackendSpec(name, cls, artifact, device, precision, auto_rank)
        cls.spec, cls.name = spec, name  # type: ignore[attr-defined]
        _REGISTRY[name] = spec
        return cls

    return add


def unregister_backend(name: str) -> None:
    """Remove a backend (a test's own, when the test ends)."""
    _REGISTRY.pop(name, None)


def backend_names() -> tuple[str, ...]:
    """Every registered backend, in registration order."""
    return tuple(_REGISTRY)


def backend_spec(name: str) -> BackendSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def auto_order() -> tuple[str, ...]:
    """What `--backend auto` tries, first choice first: GPU providers, then the portable CPU backends."""
    ranked = [s for s in _REGISTRY.values() if s.auto_rank is not None]
    return tuple(s.name for s in sorted(ranked, key=lambda s: s.auto_rank))  # type: ignore[arg-type, return-value]


def default_fallbacks(backend: str = DEFAULT_BACKEND) -> tuple[str, ...]:
    """When the default backend is unavailable (never one the user named): the CPU backends auto
    would try after it."""
    order = auto_order()
    later = order[order.index(backend) + 1:] if backend in order else order
    return tuple(b for b in later if _REGISTRY[b].device == "cpu")


def bench_order() -> tuple[str, ...]:
    """The bench's backend order: the CPU backends (every machine has them) first, each group in
    registration order."""
    return tuple(sorted(_REGISTRY, key=lambda b: _REGISTRY[b].device != "cpu"))


def fp32_counterpart(backend: str) -> str | None:
    """The fp32 backend an int8 one is timed against: same artifact, same device."""
    spec = backend_spec(backend)
    if spec.precision == "fp32":
        return None
    return next((s.name for s in _REGISTRY.values() if s.precision == "fp32" and s.artifact == spec.artifact
                 and s.device == spec.device), None)
