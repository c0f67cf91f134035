"""The seed's log-mel frontend, as a torch Module that also exports to ONNX.

No I/O here: waveforms in, features out. One formulation serves training, export and
the reference check, so there is nothing to drift apart.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

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

    kind: ClassVar[str] = "logmel"
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

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(channels, bands, frames) of one clip's features: what the network after the frontend reads."""
        return (self.in_chans, self.n_mels, self.n_frames)

    def to_dict(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "FrontendConfig":
        d = {k: v for k, v in d.items() if k != "kind"}  # files written before frontends had kinds lack it
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


RADIX = 4  # decimation-in-time factor of the exported DFT; 4 measured fastest in ORT (8: +10 %)


def _periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


class FactorizedDFT(nn.Module):
    """Power spectrum of hop-aligned frames as one radix-4 FFT stage, in plain ONNX ops.

    Why: a 1024-point DFT as a dense matmul costs 66 M MACs per clip (1.7 ms in ORT on one
    thread), and ORT's STFT op is slower still (2.3-3.1 ms). Splitting each frame into its
    four decimated sub-sequences (x[4m+j]) turns it into four 256-point real DFTs (a 4x
    smaller matmul) plus a cheap twiddle combination: 0.7 ms, same numbers to 1e-5.
    Frames are gathered from hop-sized blocks with reshapes and slices, so the graph has no
    Unfold/Gather (ORT's Gather on an inner axis alone cost 1.9 ms).
    """

    def __init__(self, cfg: FrontendConfig, radix: int = RADIX) -> None:
        super().__init__()
        n, hop = cfg.n_fft, cfg.hop_length
        if n % hop or hop % radix or (n // radix) % 2:
            raise ValueError(f"n_fft={n}, hop={hop} cannot be factorised with radix {radix}")
        sub = n // radix  # length of each decimated sub-sequence
        self.radix, self.sub, self.hop = radix, sub, hop
        self.n_half = sub // 2 + 1  # bins of a real sub-DFT
        self.blocks_per_frame = n // hop
        self.n_frames = cfg.n_frames
        ang = 2 * np.pi * np.outer(np.arange(sub), np.arange(self.n_half)) / sub
        self.register_buffer("basis", _f32(np.concatenate([np.cos(ang), -np.sin(ang)], axis=1)), persistent=False)
        self.register_buffer("window", _f32(_periodic_hann(n).reshape(sub, radix).T), persistent=False)  # [radix, sub]
        # Output bin k takes sub-bin r = k mod sub; bins above sub/2 are conjugates of bin sub-r,
        # so the imaginary part flips sign there. The sign is folded into the twiddles.
        k = np.arange(n // 2 + 1)
        r = k % sub
        sign = np.where(r <= sub // 2, 1.0, -1.0)
        theta = 2 * np.pi * np.outer(np.arange(radix), k) / n
        self.register_buffer("cos", _f32(np.cos(theta)), persistent=False)
        self.register_buffer("sin", _f32(np.sin(theta)), persistent=False)
        self.register_buffer("cos_s", _f32(sign * np.cos(theta)), persistent=False)
        self.register_buffer("sin_s", _f32(sign * np.sin(theta)), persistent=False)

    def _extend(self, a: torch.Tensor) -> torch.Tensor:
        """Sub-bins [.., n_half] -> [.., n_fft//2+1] laid out as k mod sub, mirrored above sub/2."""
        mirror = a[..., 1 : self.n_half - 1].flip(-1)
        parts = [a, mirror] * (self.radix // 2) + [a[..., :1]]
        return torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-padded signal [B, T'] -> power [B, frames, n_fft//2+1]."""
        n_blocks = self.n_frames + self.blocks_per_frame - 1
        q = x[:, : n_blocks * self.hop].reshape(-1, n_blocks, self.hop // self.radix, self.radix)
        frames = torch.cat([q[:, i : i + self.n_frames] for i in range(self.blocks_per_frame)], dim=2)
        return self.frames_power(frames)

    def frames_power(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [B, F, n_fft/radix, radix] (sample radix*m + j at [m, j]; a [B, F, n_fft] tensor reshaped)
        -> power [B, F, n_fft//2+1]. Also the streaming frontend's, which frames only the new audio."""
        frames = frames.transpose(2, 3) * self.window  # [B, F, radix, sub]: sub-sequence j is x[radix*m + j]
        y = torch.matmul(frames, self.basis)
        re, im = self._extend(y[..., : self.n_half]), self._extend(y[..., self.n_half :])
        real = (re * self.cos + im * self.sin_s).sum(2)
        imag = (im * self.cos_s - re * self.sin).sum(2)
        return real * real + imag * imag


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


class LogMel(nn.Module):
    """waveform [B, T] -> standardised log-mel [B, C, n_mels, n_frames].

    Two formulations of the same STFT: torch.fft in eager mode (fastest for training), and
    :class:`FactorizedDFT` when tracing/exporting (`use_fft=False`), which becomes plain
    MatMul/Mul/Slice ONNX ops that ORT runs fast with no complex tensors.
    """

    def __init__(self, cfg: FrontendConfig = FrontendConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel_fb", torch.from_numpy(mel_filterbank(cfg)), persistent=False)
        self.dft = FactorizedDFT(cfg)
        self.use_fft = True  # eager fast path; export code sets False
        m = np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2)
        self.mel_lo, self.mel_step = float(m[1]), float(m[2] - m[1])
        self.register_buffer("band_hz", _f32(mel_to_hz(m[1:-1])), persistent=False)  # band centres

    def band_position(self, hz: torch.Tensor) -> torch.Tensor:
        """Fractional band index of each frequency (for the pitch-shift augmentation)."""
        return (2595.0 * torch.log10(1.0 + hz / 700.0) - self.mel_lo) / self.mel_step

    def power_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T] -> power [B, frames, n_fft//2+1] of the pre-emphasised, reflect-padded signal."""
        x = torch.cat([x[:, :1], x[:, 1:] - self.cfg.preemphasis * x[:, :-1]], dim=1)
        pad = self.cfg.n_fft // 2
        x = F.pad(x[:, None, :], (pad, pad), mode="reflect")[:, 0]
        if self.use_fft and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            frames = x.unfold(-1, self.cfg.n_fft, self.cfg.hop_length)  # [B, frames, n_fft]
            spec = torch.fft.rfft(frames * self.window, dim=-1)
            return spec.real.square() + spec.imag.square()
        return self.dft(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"LogMel expects waveforms [batch, samples], got shape {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            power = self.power_spectrum(x.float())
            mel = torch.matmul(power, self.mel_fb).transpose(1, 2)  # [B, n_mels, frames]
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
    power = np.abs(np.fft.rfft(frames * _periodic_hann(cfg.n_fft), axis=-1)) ** 2  # [B, frames, bins]
    mel = power @ mel_filterbank(cfg).astype(np.float64)
    db = 10.0 * np.log10(np.maximum(mel, POWER_FLOOR)).transpose(0, 2, 1)
    mean = db.mean(axis=(1, 2), keepdims=True)
    std = db.std(axis=(1, 2), keepdims=True, ddof=1)
    return ((db - mean) / (std + STD_EPS)).astype(np.float32)
