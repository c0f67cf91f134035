"""The training augmentations, batched on the training device: whole-batch tensor ops, no per-clip Python.

Waveform [B, T]: time shift, background noise at a random SNR, gain, Gaussian noise.
Log-mel [B, C, M, F]: time stretch and pitch shift (one grid_sample), SpecAugment masks.
Features + labels: mixup on a fraction of the batches.

Every random draw comes from one torch.Generator on the device (per-clip draws) and one
numpy Generator (per-batch scalars: the mixup coin and lambda, since torch's Beta sampler
takes no generator). Both are checkpointed, so a resumed run draws exactly what an
uninterrupted one would.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from torch import nn

from kws.audio import SAMPLE_RATE
from training.config import TrainConfig


class Augmenter:
    """`frontend` is the model's frontend module: its band centres (`band_hz`) and
    `band_position(hz)` place the pitch shift on whatever frequency scale its features use."""

    def __init__(self, cfg: TrainConfig, frontend: nn.Module, noise: np.ndarray | None,
                 device: torch.device, seed: int) -> None:
        self.cfg = cfg
        self.device = device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.np_rng = np.random.default_rng(seed)
        noise = np.zeros(0, np.float32) if noise is None else np.asarray(noise, np.float32)
        # Noise lives on the device once; each batch gathers random 1 s windows from it.
        self.noise = torch.from_numpy(noise).to(device) if noise.size >= frontend.cfg.clip_samples else None
        # A pitch shift by factor r moves the energy at f to r*f, so output band i reads the
        # input at the (fractional) band whose centre is f_i / r.
        self.band_hz = frontend.band_hz.to(device)
        self.band_position = frontend.band_position

    # ------------------------------------------------------------------ random draws
    def _u(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=self.gen, device=self.device) * (hi - lo) + lo

    def _coin(self, n: int, p: float) -> torch.Tensor:
        return torch.rand(n, generator=self.gen, device=self.device) < p

    def _int(self, n: int, lo: int, hi: int) -> torch.Tensor:
        """Uniform integers in [lo, hi] inclusive."""
        return torch.randint(lo, hi + 1, (n,), generator=self.gen, device=self.device)

    # ------------------------------------------------------------------ waveform
    def shift(self, x: torch.Tensor, p: float = 1.0) -> torch.Tensor:
        """Shift each clip by up to +-shift_s seconds, filling with zeros (one gather)."""
        b, t = x.shape
        max_shift = int(round(self.cfg.shift_s * SAMPLE_RATE))
        s = self._int(b, -max_shift, max_shift) * self._coin(b, p)
        src = torch.arange(t, device=x.device)[None, :] - s[:, None]
        inside = (src >= 0) & (src < t)
        return x.gather(1, src.clamp(0, t - 1)) * inside

    def add_noise(self, x: torch.Tensor, p: float = 1.0) -> torch.Tensor:
        """Mix a random window of the background noise into each clip at a random SNR."""
        if self.noise is None:
            return x
        b, t = x.shape
        start = (torch.rand(b, generator=self.gen, device=self.device) * (self.noise.numel() - t + 1)).long()
        seg = self.noise[start[:, None] + torch.arange(t, device=x.device)[None, :]]
        snr_db = self._u(b, *self.cfg.noise_snr_db)
        rms_x = x.square().mean(1).sqrt()
        rms_n = seg.square().mean(1).sqrt().clamp_min(1e-8)
        scale = rms_x / (rms_n * 10.0 ** (snr_db / 20.0)) * self._coin(b, p)
        return x + scale[:, None] * seg

    def gain(self, x: torch.Tensor, p: float = 1.0) -> torch.Tensor:
        # The frontend standardises each clip, so gain alone barely shows in the features; it
        # matters through the absolute-level Gaussian noise added after it (and clipping in real mics).
        b = x.shape[0]
        g = torch.where(self._coin(b, p), self._u(b, *self.cfg.gain), 1.0)
        return x * g[:, None]

    def add_gauss(self, x: torch.Tensor, p: float = 1.0) -> torch.Tensor:
        b, t = x.shape
        std = self._u(b, *self.cfg.gauss_std) * self._coin(b, p)
        return x + std[:, None] * torch.randn(b, t, generator=self.gen, device=self.device)

    def wave(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        x = self.shift(x, c.p_shift)
        x = self.add_noise(x, c.p_noise)
        x = self.gain(x, c.p_gain)
        return self.add_gauss(x, c.p_gauss)

    # ------------------------------------------------------------------ spectrogram
    def warp(self, feats: torch.Tensor, p_stretch: float = 1.0, p_pitch: float = 1.0) -> torch.Tensor:
        """Time stretch and pitch shift of the log-mel, per clip, in one grid_sample.

        Why on the log-mel: the model never sees phase, and these are magnitude operations.
        Stretching the frame axis by s is what a phase vocoder does to the magnitude
        (duration x s, pitch kept); moving each band's energy from f to f * 2^(k/12) is a
        resample-based pitch shift (formants move with the pitch, as in
        librosa.effects.pitch_shift). Approximations, honestly: the frequency warp
        interpolates between mel bands rather than FFT bins, so harmonics are smeared to the
        band resolution (~15 Hz at 100 Hz, ~200 Hz at 6 kHz); edges are filled by repeating
        the first/last frame or band (usually background); the per-clip standardisation is
        not redone afterwards.
        """
        if p_stretch == 0 and p_pitch == 0:
            return feats
        b, _, m, f = feats.shape
        c = self.cfg
        s = torch.where(self._coin(b, p_stretch), self._u(b, *c.stretch), 1.0)
        semis = torch.where(self._coin(b, p_pitch), self._u(b, -c.pitch_semitones, c.pitch_semitones), 0.0)
        # time: output frame at normalised position u reads input at u / s (centred stretch)
        gx = torch.linspace(-1.0, 1.0, f, device=feats.device)[None, :] / s[:, None]  # [B, F]
        # frequency: output band i reads the band whose centre is f_i / 2^(k/12)
        src_hz = self.band_hz[None, :] * torch.exp2(-semis / 12.0)[:, None]  # [B, M]
        gy = self.band_position(src_hz) * (2.0 / (m - 1)) - 1.0
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # [B, M, F, 2]
        return F.grid_sample(feats, grid, mode="bilinear", padding_mode="border", align_corners=True)

    def _masks(self, b: int, length: int, count: tuple[int, int], width: int) -> torch.Tensor:
        """[B, length] bool: each row has count[0]..count[1] masks, each 0..width long."""
        k = max(count[1], 1)
        n = self._int(b, *count)
        w = torch.randint(0, width + 1, (b, k), generator=self.gen, device=self.device).clamp(max=length)
        start = (torch.rand(b, k, generator=self.gen, device=self.device) * (length - w + 1)).long()
        active = torch.arange(k, device=self.device)[None, :] < n[:, None]
        pos = torch.arange(length, device=self.device)[None, None, :]
        hit = (pos >= start[..., None]) & (pos < (start + w)[..., None]) & active[..., None]
        return hit.any(1)

    def specaugment(self, feats: torch.Tensor, p: float = 1.0) -> torch.Tensor:
        """SpecAugment masks, filled with each clip's mean (0 for the standardised log-mel)."""
        b, _, m, f = feats.shape
        c = self.cfg
        on = self._coin(b, p)
        tmask = self._masks(b, f, c.time_masks, c.time_mask_frames) & on[:, None]
        fmask = self._masks(b, m, c.freq_masks, c.freq_mask_bands) & on[:, None]
        mask = tmask[:, None, None, :] | fmask[:, None, :, None]
        return torch.where(mask, feats.mean(dim=(1, 2, 3), keepdim=True), feats)

    def spec(self, feats: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        return self.specaugment(self.warp(feats, c.p_stretch, c.p_pitch), c.p_specaug)

    # ------------------------------------------------------------------ mixup
    def mixup(self, feats: torch.Tensor, y: torch.Tensor, p: float | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Mix the batch with a permutation of itself on a fraction p of batches.

        Returns (features, partner labels, lambda); lambda = 1.0 means not mixed.
        The loss is lam * CE(y) + (1 - lam) * CE(y_partner).
        """
        perm, lam = self.mixup_draw(y.shape[0], p)
        if perm is None:
            return feats, y, 1.0
        return lam * feats + (1.0 - lam) * feats[perm], y[perm], lam

    def mixup_draw(self, b: int, p: float | None = None) -> tuple[torch.Tensor | None, float]:
        """(partner permutation, lambda) for a batch of `b`, or (None, 1.0) when it is not mixed.

        For callers that mix more than features and labels (a teacher's probabilities too).
        """
        p = self.cfg.p_mixup if p is None else p
        mixed = self.np_rng.random() < p
        lam = float(self.np_rng.beta(self.cfg.mixup_alpha, self.cfg.mixup_alpha)) if mixed else 1.0
        if not mixed:
            return None, 1.0
        return torch.randperm(b, generator=self.gen, device=self.device), lam

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[torch.Tensor, dict]:
        """(torch generator state as uint8, numpy generator state as JSON-able dict)."""
        return self.gen.get_state(), self.np_rng.bit_generator.state

    def load_state(self, gen_state: torch.Tensor, np_state: dict) -> None:
        self.gen.set_state(gen_state)
        self.np_rng.bit_generator.state = np_state


def mixup_target_accuracy(logits: torch.Tensor, y: torch.Tensor, y2: torch.Tensor, lam: float) -> torch.Tensor:
    """Correct count on a (possibly mixed) batch: against the dominant label."""
    target = y if lam >= 0.5 else y2
    return (logits.argmax(1) == target).sum()

