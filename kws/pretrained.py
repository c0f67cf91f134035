"""Google's pretrained speech embedding, read from the files of the `openwakeword==0.4.0` wheel.

The embedding of Lin et al., "Training Keyword Spotters with Limited and Synthesized Speech
Data" (ICASSP 2020, arXiv 2002.01322), trained by Google on about 200 M real clips and
published on TF Hub under Apache-2.0. openWakeWord 0.4.0 redistributes it as two ONNX files
in its wheel (later releases download them at run time, hence the pin). Only these two files
are used here; the wake-word models beside them are CC BY-NC-SA and are never opened.

Nothing here runs the ONNX graphs: the project re-implements both networks in PyTorch
(kws.speech_mel, zoo.speech_embedding) and only reads their weights, after checking each
file's sha256, so a changed or corrupted file can never reach a model.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.fsutil import sha256_of

PACKAGE = "openwakeword"
PACKAGE_VERSION = "0.4.0"
LICENSE = ("Apache-2.0 (Google's speech_embedding TF Hub module, redistributed in the "
           f"{PACKAGE}=={PACKAGE_VERSION} wheel)")
INSTALL_HINT = f"pip install {PACKAGE}=={PACKAGE_VERSION} (scripts/install.sh does this)"


@dataclass(frozen=True)
class PretrainedFile:
    name: str  # file name inside openwakeword/resources/models/
    sha256: str
    what: str


MELSPECTROGRAM = PretrainedFile(
    "melspectrogram.onnx", "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
    "the speech embedding's mel frontend (32 bands, 10 ms hop)")
EMBEDDING = PretrainedFile(
    "embedding_model.onnx", "ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51",
    "the speech embedding network (76 mel frames -> 96 values)")


class PretrainedFileError(ValueError):
    """The pretrained speech embedding cannot be used here; the message says why and the fix."""


def models_dir() -> Path:
    """openwakeword/resources/models of the installed wheel, without importing the package.

    find_spec locates the package without running its __init__ (which would import its own
    runtime dependencies); the version comes from the installed distribution's metadata.
    """
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise PretrainedFileError(f"the {PACKAGE} package is not installed, and the speech-embedding models "
                                  f"read their pretrained weights from it: {INSTALL_HINT}") from None
    if version != PACKAGE_VERSION:
        raise PretrainedFileError(f"{PACKAGE} {version} is installed, but the speech-embedding models need "
                                  f"exactly {PACKAGE_VERSION} (later releases no longer ship the model files "
                                  f"in the wheel): {INSTALL_HINT}")
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedFileError(f"{PACKAGE} {version} is installed but its package folder was not found: "
                                  f"reinstall it with {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "resources" / "models"


def verified_path(file: PretrainedFile, folder: Path | None = None) -> Path:
    """The path of a pretrained file whose sha256 is the expected one, else PretrainedFileError."""
    path = (folder or models_dir()) / file.name
    if not path.is_file():
        raise PretrainedFileError(f"{path}: {file.what} is missing from the installed {PACKAGE} package; "
                                  f"reinstall it: pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}")
    digest = sha256_of(path)
    if digest != file.sha256:
        raise PretrainedFileError(f"{path}: sha256 {digest} differs from the expected {file.sha256} ({file.what}); "
                                  f"the file was changed or corrupted. Reinstall it: "
                                  f"pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}")
    return path


@functools.lru_cache(maxsize=4)
def _initializers(file: PretrainedFile, folder: Path | None) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    path = verified_path(file, folder)
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}


def initializers(file: PretrainedFile, folder: Path | None = None) -> dict[str, np.ndarray]:
    """The weight tensors of a verified pretrained ONNX file, by initializer name (read once)."""
    return _initializers(file, folder)


def weight(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...], file: PretrainedFile) -> np.ndarray:
    """One named tensor with the expected shape (the architecture in code, the numbers from the file)."""
    if name not in tensors:
        raise PretrainedFileError(f"{file.name}: tensor {name!r} not found ({file.what})")
    a = tensors[name]
    if tuple(a.shape) != tuple(shape):
        raise PretrainedFileError(f"{file.name}: tensor {name!r} has shape {tuple(a.shape)}, expected {tuple(shape)}")
    return a
