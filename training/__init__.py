"""The trainer: one loop for every zoo model and every kws.data source (CLI: train.py)."""
from training.config import ConfigError, TrainConfig

__all__ = ["TrainConfig", "ConfigError", "train", "main"]


def __getattr__(name: str):
    # Lazy: `TrainConfig` is cheap to import; the loop pulls in timm, matplotlib and friends.
    if name == "train":
        from training.trainer import train

        return train
    if name == "main":
        from training.cli import main

        return main
    raise AttributeError(name)
