"""What a checkpoint says about itself: one schema for the trainer, shipping and export.

The trainer writes a run's facts (data, label set, epoch, validation figures); shipping adds
the recipe, the cross-validated real-speech accuracy, the latency and the licence of any
pretrained part (the model card); calibration (`python -m bench calibrate`) adds per-word
detection thresholds; export copies the same dict into the ONNX metadata. Keys written by
older versions (`data`, `train_data`, `training`) are read as their new names.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

LEGACY_KEYS = {"data": "training_data", "train_data": "training_data", "training": "recipe"}


@dataclass(frozen=True)
class CheckpointMeta:
    training_data: str = ""  # the kws.data spec (and fold) it was trained on
    label_set: str = ""
    run: str = ""  # the run folder's name
    epoch: int | None = None
    val_loss: float | None = None
    val_acc: float | None = None  # on the run's own validation split (not a real-speech figure)
    recipe: str = ""  # how it was trained: recipe file, command, hardware, time
    accuracy: dict[str, Any] = field(default_factory=dict)  # real-speech figures with protocol and intervals
    latency: dict[str, Any] = field(default_factory=dict)  # measured inference latency, with the machine
    pretrained: str = ""  # licence and source of any pretrained part
    source_checkpoint: str = ""
    # per-word detection thresholds calibrated to a false-accept rate: {"values": {word: threshold},
    # "target_fa_per_hour", "negative_hours", "fitted_on", "method", "engine", ...} (bench.calibrate)
    thresholds: dict[str, Any] = field(default_factory=dict)
    # how a shipped file stores its weights when not plain fp16: {"weights": "int8 per output channel",
    # "top1_agreement": share of real clips on which it answers as the trained float model did, "clips", "set"}
    storage: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in ("", None, {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CheckpointMeta":
        """From a checkpoint's stored dict: legacy keys renamed, unknown keys dropped."""
        names = cls.field_names()
        out: dict[str, Any] = {}
        for k, v in (d or {}).items():
            k = LEGACY_KEYS.get(k, k)
            if k in names and k not in out:
                out[k] = v
        if not isinstance(out.get("accuracy", {}), dict):
            out.pop("accuracy")
        for key in ("latency", "thresholds", "storage"):
            if not isinstance(out.get(key, {}), dict):
                out.pop(key)
        return cls(**out)

    def word_thresholds(self) -> dict[str, float]:
        """The calibrated per-word thresholds ({} when none); ValueError when they are malformed."""
        values = (self.thresholds or {}).get("values", {})
        if not isinstance(values, dict) or not all(
                isinstance(w, str) and w and isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 1
                for w, t in values.items()):
            raise ValueError("calibrated thresholds must map words to numbers in (0, 1]")
        return {w: float(t) for w, t in values.items()}

    def thresholds_line(self) -> str:
        """One line for logs: what the calibrated thresholds are for, or that there are none."""
        t = self.thresholds or {}
        if not t.get("values"):
            return "no calibrated thresholds"
        return (f"per-word thresholds for {t.get('target_fa_per_hour', '?')} false accepts/h, fitted on "
                f"{t.get('negative_hours', '?')} h ({t.get('fitted_on', '?')})")

    def accuracy_line(self) -> str:
        """One line for logs and reports: the headline real-speech figure, or what is missing."""
        a = self.accuracy
        if not a:
            return "real-speech accuracy not measured for these weights"
        head = a.get("acc12") or a.get("acc") or {}
        if not head:
            return json.dumps(a)[:200]
        ci = head.get("ci95", [float("nan")] * 2)
        return (f"{100 * head['value']:.1f} % ({100 * ci[0]:.1f}-{100 * ci[1]:.1f}) "
                f"{head.get('figure', '')} [{a.get('protocol', '?')}]").strip()
