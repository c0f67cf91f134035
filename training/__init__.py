"""The trainer: one loop for every zoo model and every kws.data source (its command line: cli/train.py)."""
from training.config import ConfigError, TrainConfig

__all__ = ["TrainConfig", "ConfigError", "train"]


def __getattr__(name: str):
    # Lazy: the loop pulls in timm, matplotlib and friends; the config needs the zoo registry only.
    if name == "train":
        from training.trainer import train

        return train
    raise AttributeError(name)
