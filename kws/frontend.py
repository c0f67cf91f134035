"""The 128-band log-mel frontend of the image backbones, as a torch Module that also exports to ONNX.

No I/O here: waveforms in, features out. One formulation serves training, export and
the reference check, so there is nothing to drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE
from kws.frontend_base import FrontendSettings

N_FFT = 1024  # 64 ms window at 16 kHz
HOP_LENGTH = 256  # 16 ms hop at 16 kHz -> 63 frames per 1 s clip (centred frames)
N_MELS = 128
F_MIN = 50.0  # Hz; drops mains hum and DC that carry no phonetic information
F_MAX = 8_000.0  # Hz; Nyquist at 16 kHz
PREEMPHASIS = 0.97  # first-order high-pass that flattens speech's spectral tilt
POWER_FLOOR = 1e-10  # dB floor: -100 dB keeps digital silence finite
STD_EPS = 1e-5  # keeps standardisation finite on constant input (in dB)
DB_PER_LN = 10.0 / float(np.log(10.0))  # 10*log10(x) = DB_PER_LN * ln(x)


@dataclass(frozen=True)
class FrontendConfig(FrontendSettings):
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


# Decimation-in-time factors of the exported DFT, best first. The frontend alone in ORT, one thread,
# measured interleaved: radix 4 0.28 ms, 8 0.21 ms, 16 0.18 ms, 32 0.18 ms (the butterfly grows as R^2).
# A config that 16 does not divide takes the largest that does; 4 is the least, as it always was.
RADICES = (16, 8, 4)


def _periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


class FactorizedDFT(nn.Module):
    """Mel power of hop-aligned frames: one radix-R FFT stage as three matmuls, in plain ONNX ops.

    Why: a 1024-point DFT as a dense matmul costs 66 M MACs per clip (1.7 ms in ORT on one
    thread), and ORT's STFT op is slower still (2.3-3.1 ms). Decimation in time splits each
    frame into its R sub-sequences x[R*m + j]:
    - their real sub-DFTs, with the window and the twiddle factors folded into the bases, are
      one batched matmul (R x 2 x (sub/2+1) outputs from sub samples: 4.3 M MACs at R=16);
    - the R-point butterfly that combines them into bins k = r + q*sub is a second, small
      matmul over (j, re/im), the same for every frame and sub-bin r;
    - the power of each (q, r) goes straight into the mel matmul, whose rows are the
      filterbank rows of bin k in (q, r) order. A bin k above n/2 is the conjugate of bin
      n-k (the same power), so the sub-bins r <= sub/2 of all R values of q reach every bin;
      the few bins reached twice get their filter row once.
    Nothing is mirrored, gathered or sliced bin by bin: 0.18 ms in ORT, where the previous
    radix-4 formulation (element-wise twiddles over the mirrored bins) took 0.45 ms; the same
    numbers to 1e-4. Frames are cut from hop-sized blocks with reshapes and slices (no
    Unfold/Gather: ORT's Gather on an inner axis alone cost 1.9 ms), and the sub-sequences are
    separated by a 3-D transpose ([.., L/R, R] -> [.., R, L/R], 5 us; the same as one 4-D
    transpose took 45 us).
    """

    def __init__(self, cfg: FrontendConfig, radix: int | None = None) -> None:
        super().__init__()
        n, hop = cfg.n_fft, cfg.hop_length
        fits = [r for r in ((radix,) if radix else RADICES) if not (n % hop or hop % r or (n // r) % 2)]
        if not fits:
            raise ValueError(f"n_fft={n}, hop={hop} cannot be factorised with radix {radix or RADICES[-1]}")
        radix = fits[0]
        sub = n // radix  # length of each decimated sub-sequence
        self.radix, self.sub, self.hop = radix, sub, hop
        self.n_half = sub // 2 + 1  # sub-bins r of a real sub-DFT
        self.blocks_per_frame = n // hop
        self.n_frames = cfg.n_frames
        # Sub-DFT j at sub-bin r, windowed and twiddled: sum_m x[R*m+j] w[R*m+j] exp(-2 pi i (R*m+j) r / n)
        t = radix * np.arange(sub)[None, :] + np.arange(radix)[:, None]  # [R, sub]: sample index in the frame
        ang = 2 * np.pi * t[:, None, :] * np.arange(self.n_half)[None, :, None] / n  # [R, r, sub]
        w = _periodic_hann(n)[t][:, None, :]
        basis = np.stack([w * np.cos(ang), -w * np.sin(ang)], axis=1)  # [R, re/im, r, sub]
        self.register_buffer("basis", _f32(basis.reshape(radix, 2 * self.n_half, sub)), persistent=False)
        # Butterfly: X_q[r] = sum_j exp(-2 pi i j q / R) T_j[r], as a real [(q, re/im), (j, re/im)] matrix
        phi = 2 * np.pi * np.outer(np.arange(radix), np.arange(radix)) / radix
        bf = np.zeros((radix, 2, radix, 2))
        bf[:, 0, :, 0], bf[:, 0, :, 1] = np.cos(phi), np.sin(phi)
        bf[:, 1, :, 0], bf[:, 1, :, 1] = -np.sin(phi), np.cos(phi)
        self.register_buffer("butterfly", _f32(bf.reshape(2 * radix, 2 * radix)), persistent=False)
        fb = mel_filterbank(cfg)  # [n//2+1, n_mels]
        rows = np.zeros((radix, self.n_half, fb.shape[1]))
        seen: set[int] = set()
        for q in range(radix):
            for r in range(self.n_half):
                k = r + q * sub
                k = min(k, n - k)
                if k not in seen:
                    seen.add(k)
                    rows[q, r] = fb[k]
        self.register_buffer("mel_rows", _f32(rows.reshape(radix * self.n_half, -1).T), persistent=False)  # [mels, (q, r)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-padded signal [B, T'] -> mel power [B, n_mels, frames]."""
        R, n_frames, n_half = self.radix, self.n_frames, self.n_half
        n_blocks = n_frames + self.blocks_per_frame - 1
        z = x[:, : n_blocks * self.hop].reshape(-1, n_blocks * self.hop // R, R).transpose(1, 2)  # [b, j, i]: x[R*i+j]
        z = z.reshape(-1, R, n_blocks, self.hop // R).transpose(2, 3)  # [B, j, m within a block, block]
        # [B, j, m, frame]: frame f's sample R*m + j (its blocks f .. f+blocks_per_frame-1, in order)
        frames = torch.cat([z[..., i : i + n_frames] for i in range(self.blocks_per_frame)], dim=2)
        return self.frames_mel(frames, n_frames)

    def frames_mel(self, frames: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Frames [B, j, m, frame] (frame f's sample R*m + j) -> mel power [B, n_mels, n_frames].
        Also the streaming frontend's, which frames only the new audio. `n_frames` is passed, not read
        off the tensor: a traced shape read would add shape ops to the exported graph."""
        R, n_half = self.radix, self.n_half
        t = torch.matmul(self.basis, frames)  # [B, j, (re/im, r), frame]: no tensor above 4-D, for every provider
        y = torch.matmul(self.butterfly, t.reshape(-1, 2 * R, n_half * n_frames))  # [B, (q, re/im), (r, frame)]
        y = y * y
        power = y.reshape(-1, R, 2, n_half * n_frames).sum(2).reshape(-1, R * n_half, n_frames)
        return torch.matmul(self.mel_rows, power)


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


class LogMel(nn.Module):
    """waveform [B, T] -> standardised log-mel [B, C, n_mels, n_frames].

    Two formulations of the same STFT and mel: torch.fft in eager mode (fastest for training),
    and :class:`FactorizedDFT` when tracing/exporting (`use_fft=False`), which becomes plain
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

    def mel_power(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T] -> mel power [B, n_mels, frames] of the pre-emphasised, reflect-padded signal."""
        x = torch.cat([x[:, :1], x[:, 1:] - self.cfg.preemphasis * x[:, :-1]], dim=1)
        pad = self.cfg.n_fft // 2
        x = F.pad(x[:, None, :], (pad, pad), mode="reflect")[:, 0]
        if self.use_fft and not _tracing():
            frames = x.unfold(-1, self.cfg.n_fft, self.cfg.hop_length)  # [B, frames, n_fft]
            spec = torch.fft.rfft(frames * self.window, dim=-1)
            power = spec.real.square() + spec.imag.square()
            return torch.matmul(power, self.mel_fb).transpose(1, 2)
        return self.dft(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"LogMel expects waveforms [batch, samples], got shape {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            feats = self.standardise(self.mel_power(x.float()))
        if self.cfg.in_chans > 1:
            feats = feats.expand(-1, self.cfg.in_chans, -1, -1)
        return feats

    def standardise(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel power [B, n_mels, frames] -> standardised log-mel [B, 1, n_mels, frames] (the streaming form's too)."""
        # Standardised dB, in natural-log units: with db = c*ln (c = 10/ln 10), (db - mean) / (std + eps)
        # is exactly (ln - mean_ln) / (std_ln + eps/c), one scaling op fewer. An exported graph takes
        # clip_samples only, so its value count is the config's constant (no shape ops at run time).
        ln = torch.log(torch.clamp(mel, min=POWER_FLOOR))
        d = ln - ln.mean(dim=(1, 2), keepdim=True)
        n = self.cfg.n_mels * self.cfg.n_frames if _tracing() else d.shape[1] * d.shape[2]
        std = torch.sqrt((d * d).sum(dim=(1, 2), keepdim=True) * (1.0 / (n - 1)))  # unbiased, as torch.std
        return (d / (std + STD_EPS / DB_PER_LN))[:, None]


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


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
