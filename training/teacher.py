"""Distillation: a trained zoo model supervises a student through its softened probabilities.

The teacher runs on the student's device, in eval mode, without gradients, on the same
augmented waveforms the student sees (the waveform is the view every frontend shares; the
spectrogram augmentation is the student's own). Its outputs are mapped onto the student's
labels by name, with the data layer's rule (a word the student lacks goes to `_unknown_`
when the student has it, else out), so a 36-label teacher can teach a 12-label student.

loss = (1 - w) * label loss + w * T^2 * KL(teacher_T || student_T)   (Hinton et al., 2015)
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from kws.fsutil import sha256_of
from training.config import ConfigError


def label_map(teacher: Sequence[str], student: Sequence[str]) -> torch.Tensor:
    """[len(teacher), len(student)] 0/1 matrix: teacher label -> the student label it counts for."""
    from kws.data.views import LabelView

    view = LabelView(tuple(student))
    m = torch.zeros(len(teacher), len(student))
    for i, lab in enumerate(teacher):
        target = view.target(lab)
        if target is not None:
            m[i, student.index(target)] = 1.0
    uncovered = [s for j, s in enumerate(student) if m[:, j].sum() == 0]
    if uncovered:
        raise ConfigError(f"the teacher has no output for the student's labels {uncovered}: it cannot teach them")
    return m


def distill_kl(logits: torch.Tensor, soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(soft || softmax(logits / T)), batch mean; `soft` is already at temperature T."""
    log_p = F.log_softmax(logits.float() / temperature, dim=-1)
    return F.kl_div(log_p, soft, reduction="batchmean") * temperature ** 2


class Teacher:
    def __init__(self, ref: str | Path, student_labels: Sequence[str], device: torch.device,
                 temperature: float) -> None:
        import zoo
        from zoo.checkpoint import resolve_weights

        try:
            path = resolve_weights(ref)
            model, _ = zoo.load_model(path)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"teacher {ref}: {e}") from None
        self.path = path
        self.sha256 = sha256_of(path)
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.map = label_map(model.labels, student_labels).to(device)
        self.temperature = temperature
        self.name = model.cfg.name
        # On the CPU the teacher's forward is most of a small student's step: run it in ONNX
        # Runtime (training.ortrun; used only if it matches eager on a seeded noise batch).
        self.runtime, self._run = "eager", None
        if device.type == "cpu":
            from training.ortrun import cpu_runner

            g = torch.Generator().manual_seed(0)
            example = 0.1 * torch.randn(4, model.cfg.frontend.clip_samples, generator=g)
            self._run, self.runtime = cpu_runner(self.model, example)

    def _logits(self, wave: torch.Tensor) -> torch.Tensor:
        if self._run is None:  # not on the CPU, or ORT was not exact
            return self.model(wave)
        return torch.from_numpy(self._run(wave))

    @torch.no_grad()
    def probs(self, wave: torch.Tensor) -> torch.Tensor:
        """The teacher's probabilities at temperature T, on the student's labels."""
        p = torch.softmax(self._logits(wave).float() / self.temperature, dim=-1) @ self.map
        return p / p.sum(-1, keepdim=True).clamp_min(1e-12)
