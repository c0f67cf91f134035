"""The trainer: one loop for every zoo model and every kws.data source (CLI: train.py)."""
from kws.train.config import ConfigError, TrainConfig

__all__ = ["TrainConfig", "ConfigError", "train", "main"]


def __getattr__(name: str):
    # Lazy: `TrainConfig` is cheap to import; the loop pulls in timm, matplotlib and friends.
    if name == "train":
        from kws.train.trainer import train

        return train
    if name == "main":
        from kws.train.cli import main

        return main
    raise AttributeError(name)
