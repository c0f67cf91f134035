"""Every training hyperparameter in one frozen dataclass; defaults < YAML file < command line.

The command-line flags are generated from the dataclass fields, so a new hyperparameter is
one new field here and nothing else. The resolved config is saved beside each run
(`config.yaml`) and is what `--resume` starts from.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kws.data.custom import NEGATIVES, SAY_PER_WORD
from kws.data.views import DEFAULT_LABELS
from kws.fsutil import atomic_write_text
from zoo.registry import DEFAULT_BACKBONE

CONFIG_FILE = "config.yaml"


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type, bad value. Names the source."""


@dataclass(frozen=True)
class TrainConfig:
    # --- what to train, on what
    model: str = DEFAULT_BACKBONE
    data: str = "synth"  # kws.data spec: synth, synth:tiny, gsc:PATH, folder:PATH, A+B
    labels: str = DEFAULT_LABELS  # 35s, 35, 12, auto (the source's own words) or default (see the end of --help)
    pretrained: bool = False  # timm ImageNet weights from the hub
    pretrained_file: str | None = None  # ... or from a local .safetensors/.pth file (offline)
    init_from: str | None = None  # start from trained weights (zoo name, run folder, .safetensors); other labels: fresh head
    fold: str = ""  # K/N: speaker-disjoint cross-validation fold of the recorded data (kws.data.folds)
    # --- your own words (kws.data.custom)
    synth_words: str = ""  # add synthetic speech of auto (the words of --data) or WORD,WORD (labels: yours + _unknown_)
    synth_per_word: int = SAY_PER_WORD  # synthetic clips of each of those words
    negatives: str = "auto"  # other words as _unknown_: synth (synthetic, 140 words), none, auto (synth with synth_words)
    hard_negatives: str | None = None  # a folder of false detections (live.py --save-detections), trained as _unknown_
    # frozen-backbone runs: folders of backbone outputs of keyword-free streams (bench.mining writes them: the
    # streaming windows of hours of negative speech, and mined false accepts), comma-separated, trained as _unknown_
    feature_negatives: str | None = None
    feature_negative_share: float = 0.3  # of each epoch's draws, from those windows (all folders together)
    out: str | None = None  # run folder; default <runs_dir>/<model>-<timestamp>
    runs_dir: str = "runs"
    cache_dir: str | None = None  # decoded-clip cache; default $KWS_CACHE or <repo>/data_cache

    # --- optimisation (the default recipe: AdamW, label smoothing, cosine warm restarts)
    epochs: int = 70  # 10 + 20 + 40: ends where the third warm-restart cycle reaches its minimum
    batch_size: int = 64  # per process; the effective batch is batch_size * accum_steps * world size
    accum_steps: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    t0: int = 10  # CosineAnnealingWarmRestarts, in epochs (stepped fractionally every optimiser step)
    t_mult: int = 2
    eta_min: float = 1e-6
    patience: int = 15  # early stopping on validation loss
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    fast: bool = False  # a stratified 5,000-clip training subset (kws.data); val/test untouched
    max_minutes: float = 0.0  # wall-clock budget of this invocation; 0 = none
    seed: int = 0

    # --- pretrained parts and distillation
    freeze_backbone: bool = False  # train the head only; the frozen backbone's outputs are cached per clip
    cache_views: int = 8  # augmented views of each training clip in that cache (epoch e reads view e mod N)
    backbone_lr_scale: float = 1.0  # the backbone's learning rate is lr times this (fine-tuning)
    teacher: str | None = None  # distil from this trained model (zoo name, run folder, .safetensors)
    distill_weight: float = 0.5  # share of the KL-to-teacher term in the loss; the label loss gets the rest
    distill_temperature: float = 2.0  # softens teacher and student in the KL term (scaled back by T^2)

    # --- hardware
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:1
    amp: str = "auto"  # auto (bf16 on CUDA if supported, else fp16 + GradScaler; off on CPU), off, bf16, fp16
    channels_last: bool | None = None  # None = on for CUDA, off for CPU
    cudnn_benchmark: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms; slower on CUDA
    workers: int | None = None  # DataLoader workers; None = 0 on CPU (cores are busy training), 4 on CUDA
    pin_memory: bool | None = None  # None = on for CUDA
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default

    # --- waveform augmentation (batched on the training device, training.augment)
    augment: bool = True  # master switch for everything below (mixup included)
    p_shift: float = 0.8
    shift_s: float = 0.1  # time shift up to +-shift_s seconds, zero-filled
    p_noise: float = 0.8
    noise_snr_db: tuple[float, float] = (0.0, 20.0)  # background noise (DataSource.noise) at a random SNR
    p_gain: float = 0.8
    gain: tuple[float, float] = (0.8, 1.2)
    p_gauss: float = 0.3
    gauss_std: tuple[float, float] = (0.001, 0.01)  # white noise, absolute std (full scale = 1)
    # --- spectrogram augmentation
    p_stretch: float = 0.5
    stretch: tuple[float, float] = (0.8, 1.2)  # time stretch factor (>1 = slower, longer)
    p_pitch: float = 0.5
    pitch_semitones: float = 4.0  # pitch shift up to +-this
    p_specaug: float = 1.0
    time_masks: tuple[int, int] = (1, 2)  # number of SpecAugment time masks (inclusive range)
    time_mask_frames: int = 30
    freq_masks: tuple[int, int] = (1, 2)
    freq_mask_bands: int = 15
    p_mixup: float = 0.5  # fraction of batches mixed
    mixup_alpha: float = 0.4

    # --- logging
    progress: bool = True  # tqdm bars (rank 0 only)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 2, "batch_size must be >= 2 (BatchNorm needs two samples)"),
            (self.accum_steps >= 1, "accum_steps must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.t0 >= 1 and self.t_mult >= 1, "t0 and t_mult must be >= 1"),
            (self.patience >= 1, "patience must be >= 1"),
            (0 < self.feature_negative_share < 1, "feature_negative_share must be in (0, 1)"),
            (not self.feature_negatives or self.freeze_backbone,
             "feature_negatives are backbone outputs: they need freeze_backbone"),
            (self.amp in ("auto", "off", "bf16", "fp16"), f"amp must be auto, off, bf16 or fp16, not {self.amp!r}"),
            (self.stretch[0] > 0 and self.stretch[0] <= self.stretch[1], "stretch must be 0 < lo <= hi"),
            (self.gain[0] <= self.gain[1] and self.noise_snr_db[0] <= self.noise_snr_db[1]
             and self.gauss_std[0] <= self.gauss_std[1], "ranges must be (lo, hi) with lo <= hi"),
            (0 <= self.time_masks[0] <= self.time_masks[1] and 0 <= self.freq_masks[0] <= self.freq_masks[1],
             "mask counts must be 0 <= lo <= hi"),
            (self.mixup_alpha > 0, "mixup_alpha must be > 0"),
            (self.cache_views >= 1, "cache_views must be >= 1"),
            (self.backbone_lr_scale >= 0, "backbone_lr_scale must be >= 0"),
            (self.synth_per_word >= 1, "synth_per_word must be >= 1"),
            (self.negatives in NEGATIVES, f"negatives must be one of {', '.join(NEGATIVES)}, not {self.negatives!r}"),
            (0.0 <= self.distill_weight <= 1.0, "distill_weight is a share in [0, 1]"),
            (self.distill_temperature > 0, "distill_temperature must be > 0"),
            (not (self.freeze_backbone and self.teacher), "teacher and freeze_backbone do not combine: a frozen "
             "backbone trains on cached features, and the teacher must see each augmented waveform"),
        ]
        checks += [(0.0 <= getattr(self, f.name) <= 1.0, f"{f.name} is a probability in [0, 1]")
                   for f in dataclasses.fields(self) if f.name.startswith("p_")]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.fold:
            from kws.data.folds import Fold
            from kws.data.index import DataError

            try:
                Fold.parse(self.fold)
            except DataError as e:
                raise ConfigError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# Fields a resumed run may change: they do not alter what is computed (or, for epochs and
# patience, only extend it). Changing anything else would make the resumed run a different run.
RESUME_OVERRIDES = frozenset({"epochs", "patience", "max_minutes", "workers", "pin_memory", "progress",
                              "device", "threads"})

_HINTS = typing.get_type_hints(TrainConfig)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(type without None, whether None is allowed) for `T | None`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def coerce(name: str, value: Any, source: str) -> Any:
    """Check and convert one value (from YAML or the CLI) to the field's type."""
    if name not in _HINTS:
        raise ConfigError(f"{source}: unknown setting {name!r}")
    tp, optional = _base_type(_HINTS[name])
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {name} may not be null")
    try:
        if typing.get_origin(tp) is tuple:
            elem = typing.get_args(tp)
            if not isinstance(value, (list, tuple)) or len(value) != len(elem):
                raise TypeError(f"expected a list of {len(elem)} numbers")
            return tuple(_scalar(t, v) for t, v in zip(elem, value))
        return _scalar(tp, value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {name}: {e} (got {value!r})") from None


def _scalar(tp: type, v: Any) -> Any:
    if tp is bool:
        if isinstance(v, bool):
            return v
        raise TypeError("expected true or false")
    if tp is int and (isinstance(v, bool) or not float(v).is_integer()):
        raise TypeError("expected an integer")
    if tp in (int, float) and isinstance(v, str):
        v = float(v)
    return tp(v)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of config fields, checked and typed. Unknown keys are errors (typos)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings, got {type(data).__name__}")
    return {k: coerce(k, v, str(p)) for k, v in data.items()}


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _field_comments() -> dict[str, str]:
    """The `# comment` after each field in the source above: the flags' help, written once."""
    import inspect
    import re

    src = inspect.getsource(TrainConfig)
    return {m[1]: m[2].strip() for m in re.finditer(r"^ {4}(\w+): [^=\n]+=[^#\n]*#(.*)$", src, re.M)}


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One flag per field (`--batch-size 32`, `--amp/--no-amp`, `--gain 0.9 1.1`), default unset.

    Unset flags stay out of the namespace (argparse.SUPPRESS), so a YAML value is only
    overridden by a flag that was actually given.
    """
    group = parser.add_argument_group("training config (defaults < --config YAML < these flags)")
    comments = _field_comments()
    for f in dataclasses.fields(TrainConfig):
        tp, optional = _base_type(_HINTS[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{comments.get(f.name, '')} [default: {f.default}]".strip()
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(tp) is tuple:
            group.add_argument(flag, nargs=len(typing.get_args(tp)), type=typing.get_args(tp)[0],
                               metavar=("LO", "HI"), **kw)
        else:
            group.add_argument(flag, type=_none_or(tp) if optional else tp, **kw)


def _none_or(tp: type):
    def parse(s: str):
        return None if s.lower() in ("none", "null", "") else tp(s)
    parse.__name__ = tp.__name__  # argparse names the type in its error message
    return parse


def resolve(cli: dict[str, Any], yaml_path: str | Path | None = None,
            base: TrainConfig | None = None) -> TrainConfig:
    """defaults (or `base`) < YAML file < CLI flags."""
    values = dict(base.to_dict()) if base is not None else {}
    if yaml_path is not None:
        values.update(load_yaml(yaml_path))
    values.update({k: coerce(k, v, "command line") for k, v in cli.items()})
    values = {k: coerce(k, v, "config") for k, v in values.items()}
    return TrainConfig(**values)


# Settings added after run folders existed, each with a default that reproduces what runs did before
# it: a config without them is an older run's, not a damaged one.
LATER_SETTINGS = ("synth_words", "synth_per_word", "negatives", "hard_negatives", "feature_negatives",
                  "feature_negative_share")


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The config a run was started with. train.py saves every field, so a missing one means the
    file was emptied, cut short or is not a run's: an error, never a silent default."""
    path = Path(run_dir) / CONFIG_FILE
    values = load_yaml(path)
    if values:  # a run started before a setting existed ran with that setting's default
        for name in LATER_SETTINGS:
            values.setdefault(name, TrainConfig.__dataclass_fields__[name].default)
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in values]
    if missing:
        what = "is empty" if not values else f"lacks {len(missing)} settings ({', '.join(missing[:6])})"
        raise ConfigError(f"{path}: {what}; train.py writes every setting there, so this is not the config of a "
                          f"resumable run")
    return TrainConfig(**values)
