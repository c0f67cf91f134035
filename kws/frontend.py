"""The seed's log-mel frontend, as a torch Module that also exports to ONNX.

No I/O here: waveforms in, features out. One formulation serves training, export and
the reference check, so there is nothing to drift apart.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE

N_FFT = 1024  # 64 ms window at 16 kHz
HOP_LENGTH = 256  # 16 ms hop at 16 kHz -> 63 frames per 1 s clip (centred frames)
N_MELS = 128
F_MIN = 50.0  # Hz; drops mains hum and DC that carry no phonetic information
F_MAX = 8_000.0  # Hz; Nyquist at 16 kHz
PREEMPHASIS = 0.97  # first-order high-pass that flattens speech's spectral tilt
POWER_FLOOR = 1e-10  # dB floor: -100 dB keeps digital silence finite
STD_EPS = 1e-5  # keeps standardisation finite on constant input


@dataclass(frozen=True)
class FrontendConfig:
    """The input contract of a model; saved with every checkpoint and ONNX file."""

    sample_rate: int = SAMPLE_RATE
    clip_samples: int = CLIP_SAMPLES
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    f_min: float = F_MIN
    f_max: float = F_MAX
    preemphasis: float = PREEMPHASIS
    in_chans: int = 1  # 3 replicates the single log-mel plane for ImageNet-style stems

    @property
    def n_frames(self) -> int:
        return 1 + self.clip_samples // self.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FrontendConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown frontend settings: {sorted(unknown)}")
        return cls(**d)


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # HTK


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(cfg: FrontendConfig) -> np.ndarray:
    """Triangular HTK mel filters, shape [n_fft//2+1, n_mels], unnormalised (torchaudio's default)."""
    n_freqs = cfg.n_fft // 2 + 1
    freqs = np.linspace(0.0, cfg.sample_rate / 2, n_freqs)
    m_pts = np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2)
    f_pts = mel_to_hz(m_pts)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - freqs[:, None]  # [n_freqs, n_mels+2]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


def dft_basis(n_fft: int) -> np.ndarray:
    """Periodic-Hann-windowed real DFT as a matrix [2*(n_fft//2+1), n_fft]: cos rows then sin rows."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    ang = 2 * np.pi * np.outer(k, n) / n_fft
    return np.concatenate([np.cos(ang) * window, -np.sin(ang) * window]).astype(np.float32)


class LogMel(nn.Module):
    """waveform [B, T] -> standardised log-mel [B, C, n_mels, n_frames].

    The STFT is a strided Conv1d with a fixed windowed-DFT kernel rather than torch.stft:
    it exports to a plain ONNX Conv that ONNX Runtime runs on its GEMM kernels, several
    times faster than ORT's STFT op, and needs no complex tensors.
    """

    def __init__(self, cfg: FrontendConfig = FrontendConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("dft", torch.from_numpy(dft_basis(cfg.n_fft))[:, None, :], persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel_fb", torch.from_numpy(mel_filterbank(cfg)), persistent=False)
        self.use_fft = True  # eager fast path; export switches to the Conv formulation

    def power_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T] -> power [B, n_fft//2+1, frames] of the pre-emphasised, reflect-padded signal."""
        x = torch.cat([x[:, :1], x[:, 1:] - self.cfg.preemphasis * x[:, :-1]], dim=1)
        pad = self.cfg.n_fft // 2
        x = F.pad(x[:, None, :], (pad, pad), mode="reflect")
        n_bins = self.cfg.n_fft // 2 + 1
        if self.use_fft and not torch.jit.is_tracing() and not torch.compiler.is_compiling() \
                and not torch.onnx.is_in_onnx_export():
            frames = x[:, 0].unfold(-1, self.cfg.n_fft, self.cfg.hop_length)  # [B, frames, n_fft]
            spec = torch.fft.rfft(frames * self.window, dim=-1)
            return (spec.real.square() + spec.imag.square()).transpose(1, 2)
        y = F.conv1d(x, self.dft, stride=self.cfg.hop_length)  # [B, 2*n_bins, frames]
        return y[:, :n_bins].square() + y[:, n_bins:].square()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"LogMel expects waveforms [batch, samples], got shape {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            power = self.power_spectrum(x.float())
            mel = torch.matmul(power.transpose(1, 2), self.mel_fb).transpose(1, 2)  # [B, n_mels, frames]
            db = 10.0 * torch.log10(torch.clamp(mel, min=POWER_FLOOR))
            mean = db.mean(dim=(1, 2), keepdim=True)
            std = db.std(dim=(1, 2), keepdim=True)
            feats = ((db - mean) / (std + STD_EPS))[:, None]
        if self.cfg.in_chans > 1:
            feats = feats.expand(-1, self.cfg.in_chans, -1, -1)
        return feats


def log_mel_reference(wave: np.ndarray, cfg: FrontendConfig = FrontendConfig()) -> np.ndarray:
    """Independent float64 numpy computation of the same features, [B, n_mels, frames].

    Used by the tests, and as the host-side frontend of features-in ONNX models.
    """
    x = np.atleast_2d(np.asarray(wave, dtype=np.float64))
    x = np.concatenate([x[:, :1], x[:, 1:] - cfg.preemphasis * x[:, :-1]], axis=1)
    pad = cfg.n_fft // 2
    x = np.pad(x, [(0, 0), (pad, pad)], mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.n_fft, axis=1)[:, :: cfg.hop_length]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [B, frames, bins]
    mel = power @ mel_filterbank(cfg).astype(np.float64)
    db = 10.0 * np.log10(np.maximum(mel, POWER_FLOOR)).transpose(0, 2, 1)
    mean = db.mean(axis=(1, 2), keepdims=True)
    std = db.std(axis=(1, 2), keepdims=True, ddof=1)
    return ((db - mean) / (std + STD_EPS)).astype(np.float32)
