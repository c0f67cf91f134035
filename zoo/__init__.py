"""The model zoo. Adding a model: one file with a @register_model function, one import line below."""
from zoo.registry import check_requirements, list_models, is_model, register_model  # noqa: F401
from zoo.model import KWSModel, ModelConfig, count_macs, count_params  # noqa: F401
from zoo.factory import PretrainedUnavailable  # noqa: F401
from zoo.checkpoint import (  # noqa: F401
    CheckpointError, default_model, load_checkpoint, load_model, read_header, resolve_weights, save_checkpoint,
    shipped_models,
)

from zoo import timm_models  # noqa: F401,E402  (registers the timm backbones)
from zoo import dscnn  # noqa: F401,E402
from zoo import speech_embedding  # noqa: F401,E402


def create_model(name: str, num_classes: int | None = None, pretrained: bool = False, **kw) -> KWSModel:
    """Build a registered model. pretrained=True loads timm's ImageNet backbone weights (hub)."""
    from zoo.registry import model_entrypoint

    return model_entrypoint(name)(num_classes=num_classes, pretrained=pretrained, **kw)
