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
import math
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
    # "target_fa_per_hour", "negative_hours", "fitted_on", "method", "engine", ...} (bench.calibrate);
    # optionally "operating_points": [{"fa_per_hour": f, "values": {word: threshold}}, ...], f ascending,
    # the same fit at other rates (the live app's sensitivity), while "values" stays the point for the target
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
        return _word_values((self.thresholds or {}).get("values", {}))

    def operating_points(self) -> list[tuple[float, dict[str, float]]]:
        """The calibrated curve: (false accepts per hour, per-word thresholds) by rate, ascending; [] when none.

        ValueError when malformed: not a list of {"fa_per_hour", "values"}, a rate that is not a
        positive finite number, thresholds outside (0, 1], no thresholds, or rates out of order.
        """
        points = (self.thresholds or {}).get("operating_points")
        if points is None:
            return []
        if not isinstance(points, list):
            raise ValueError(f"operating points must be a list of {{fa_per_hour, values}}, not {type(points).__name__}")
        out: list[tuple[float, dict[str, float]]] = []
        for i, p in enumerate(points):
            if not isinstance(p, dict):
                raise ValueError(f"operating point {i} must be {{fa_per_hour, values}}, not {type(p).__name__}")
            fa = p.get("fa_per_hour")
            if not (_is_number(fa) and math.isfinite(fa) and fa > 0):
                raise ValueError(f"operating point {i}: fa_per_hour must be a positive finite number, got {fa!r}")
            values = _word_values(p.get("values"), f"operating point {i} ({fa:g} false accepts/h): ")
            if not values:
                raise ValueError(f"operating point {i} ({fa:g} false accepts/h) has no thresholds")
            if out and not fa > out[-1][0]:
                raise ValueError(f"operating points must be sorted by fa_per_hour, ascending: {fa:g} comes after "
                                 f"{out[-1][0]:g}")
            out.append((float(fa), values))
        return out

    def calibrated_engine(self) -> dict[str, Any]:
        """The decision settings the thresholds were fitted at that the live app takes with them ({} when
        unknown): `patience` (1 for calibrations that predate it) and `ema_alpha`; ValueError when malformed."""
        engine = (self.thresholds or {}).get("engine")
        if engine is None:
            return {}
        if not isinstance(engine, dict):
            raise ValueError(f"the calibration's engine settings must be a dict, not {type(engine).__name__}")
        patience = engine.get("patience", 1)  # written since patience exists; before, every fit was at 1
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"the calibration's patience must be a whole number >= 1, got {patience!r}")
        out: dict[str, Any] = {"patience": patience}
        if "ema_alpha" in engine:
            alpha = engine["ema_alpha"]
            if not (_is_number(alpha) and 0 < alpha <= 1):
                raise ValueError(f"the calibration's ema_alpha must be a number in (0, 1], got {alpha!r}")
            out["ema_alpha"] = float(alpha)
        return out

    def thresholds_line(self) -> str:
        """One line for logs: what the calibrated thresholds are for, or that there are none."""
        t = self.thresholds or {}
        if not t.get("values"):
            return "no calibrated thresholds"
        points = t.get("operating_points") or []
        curve = ""
        if isinstance(points, list) and points and all(isinstance(p, dict) for p in points):
            curve = (f"; {len(points)} operating points, {points[0].get('fa_per_hour', '?')}-"
                     f"{points[-1].get('fa_per_hour', '?')} false accepts/h")
        return (f"per-word thresholds for {t.get('target_fa_per_hour', '?')} false accepts/h, fitted on "
                f"{t.get('negative_hours', '?')} h ({t.get('fitted_on', '?')}){curve}")

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


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _word_values(values: Any, where: str = "") -> dict[str, float]:
    """{word: threshold} checked: words are non-empty strings, thresholds numbers in (0, 1]."""
    if not isinstance(values, dict) or not all(
            isinstance(w, str) and w and _is_number(t) and 0 < t <= 1 for w, t in values.items()):
        raise ValueError(f"{where}calibrated thresholds must map words to numbers in (0, 1]")
    return {w: float(t) for w, t in values.items()}
