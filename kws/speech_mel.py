"""The speech embedding's mel frontend, as a torch Module that also exports to ONNX.

The same computation as openWakeWord's `melspectrogram.onnx` (the file whose weights it
loads, see kws.pretrained), followed by openWakeWord's rescaling `x / 10 + 2`, which maps
the dB values into the range Google's embedding was trained on. No I/O here beyond
reading those verified weights once.

One difference, deliberately: the original graph floors every value at 80 dB below the
maximum of the whole *batch*, so a clip's features depend on the clips batched with it.
Here the maximum is taken per clip, which equals the original at batch size 1 (the parity
test runs the original clip by clip) and makes results independent of batching.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kws.audio import CLIP_SAMPLES, INT16_SCALE, SAMPLE_RATE
from kws.frontend_base import FrontendSettings

N_FFT = 512  # 32 ms frame at 16 kHz ...
WIN_LENGTH = 400  # ... holding a 25 ms periodic Hann window, centred (taps 56..455)
HOP_LENGTH = 160  # 10 ms hop
N_MELS = 32  # Slaney-style bands, about 60 Hz - 3.8 kHz
POWER_FLOOR = 1e-10  # before the log, as in the original graph
TOP_DB = 80.0  # dynamic range kept below each clip's loudest value
SCALE, OFFSET = 0.1, 2.0  # openWakeWord's x / 10 + 2 on the dB values
# The embedding reads 76 frames (775 ms) per window, one window every 8 frames (80 ms). A bare
# 1 s clip gives only 3 windows; centred in 1.5 s of silence it gives 9, with the word seen at
# every position of the window.
CONTEXT_SAMPLES = 24_000  # 1.5 s
WINDOW_FRAMES = 76
WINDOW_STEP = 8


@dataclass(frozen=True)
class SpeechMelConfig(FrontendSettings):
    """The input contract of the speech-embedding models; saved with every checkpoint and ONNX file."""

    kind: ClassVar[str] = "speech_mel"
    sample_rate: int = SAMPLE_RATE
    clip_samples: int = CLIP_SAMPLES  # what a caller passes: 1 s at 16 kHz, like every zoo model
    context_samples: int = CONTEXT_SAMPLES  # the clip is centred in this many samples of zeros
    n_fft: int = N_FFT
    win_length: int = WIN_LENGTH
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    top_db: float = TOP_DB
    scale: float = SCALE
    offset: float = OFFSET
    window_frames: int = WINDOW_FRAMES
    window_step: int = WINDOW_STEP
    in_chans: int = 1

    def __post_init__(self) -> None:
        if self.context_samples < self.clip_samples:
            raise ValueError(f"context_samples {self.context_samples} < clip_samples {self.clip_samples}")
        if self.n_frames < self.window_frames:
            raise ValueError(f"{self.context_samples} samples give {self.n_frames} frames, fewer than one "
                             f"{self.window_frames}-frame embedding window")

    @property
    def n_frames(self) -> int:
        """Frames of the padded clip: valid frames only, no centre padding (as the original)."""
        return (self.context_samples - self.n_fft) // self.hop_length + 1

    @property
    def n_windows(self) -> int:
        """Embedding windows of one clip (9 for 1 s in 1.5 s)."""
        return (self.n_frames - self.window_frames) // self.window_step + 1



def _pretrained_weights() -> tuple[np.ndarray, np.ndarray]:
    """(DFT kernels [2*257, 512] = window x cos | window x -sin, mel matrix [257, 32]) from the verified file."""
    from kws.pretrained import MELSPECTROGRAM, initializers, weight

    t = initializers(MELSPECTROGRAM)
    bins = N_FFT // 2 + 1
    real = weight(t, "0.stft.conv_real.weight", (bins, 1, N_FFT), MELSPECTROGRAM)[:, 0]
    imag = weight(t, "0.stft.conv_imag.weight", (bins, 1, N_FFT), MELSPECTROGRAM)[:, 0]
    mel = weight(t, "1.melW", (bins, N_MELS), MELSPECTROGRAM)
    return np.concatenate([real, imag]), mel


class SpeechMel(nn.Module):
    """waveform [B, clip_samples] in [-1, 1) -> mel features [B, 1, n_mels, n_frames].

    The layout (channels, bands, frames) is the log-mel's, so the trainer's spectrogram
    augmentation applies unchanged; the embedding network transposes to frames x bands.
    """

    def __init__(self, cfg: SpeechMelConfig = SpeechMelConfig()) -> None:
        super().__init__()
        if (cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.n_mels) != (N_FFT, WIN_LENGTH, HOP_LENGTH, N_MELS):
            raise ValueError(f"the pretrained mel frontend is fixed at n_fft={N_FFT}, win_length={WIN_LENGTH}, "
                             f"hop={HOP_LENGTH}, n_mels={N_MELS}; got {cfg}")
        self.cfg = cfg
        kernels, mel = _pretrained_weights()
        # The window is exactly zero outside its 400 taps: dropping those taps changes no value
        # and saves a fifth of the frontend's multiply-adds.
        lead = (N_FFT - WIN_LENGTH) // 2
        taps = kernels[:, lead:lead + WIN_LENGTH]
        if np.any(kernels[:, :lead]) or np.any(kernels[:, lead + WIN_LENGTH:]):
            raise ValueError("melspectrogram.onnx: its DFT kernels are not zero outside the 400-tap window")
        self.lead = lead
        self.register_buffer("kernels", torch.from_numpy(np.ascontiguousarray(taps[:, None])), persistent=False)
        self.register_buffer("mel_fb_t", torch.from_numpy(np.ascontiguousarray(mel.T)), persistent=False)
        # Band centres (the weighted mean frequency of each filter), for the pitch-shift augmentation.
        freqs = np.linspace(0.0, cfg.sample_rate / 2, N_FFT // 2 + 1)
        self.register_buffer("band_hz", torch.from_numpy((freqs @ mel / mel.sum(0)).astype(np.float32)),
                             persistent=False)

    def band_position(self, hz: torch.Tensor) -> torch.Tensor:
        """Fractional band index of each frequency (linear between band centres, extrapolated)."""
        c = self.band_hz
        i = torch.searchsorted(c, hz.contiguous()).clamp(1, c.numel() - 1)
        lo, hi = c[i - 1], c[i]
        return (i - 1).to(hz.dtype) + (hz - lo) / (hi - lo)

    def pad_context(self, x: torch.Tensor) -> torch.Tensor:
        """Centre each clip in `context_samples` of zeros."""
        extra = self.cfg.context_samples - x.shape[1]
        return F.pad(x, (extra // 2, extra - extra // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"SpeechMel expects waveforms [batch, samples], got shape {tuple(x.shape)}")
        cfg = self.cfg
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = self.pad_context(x.float() * INT16_SCALE)  # the embedding was trained on int16-scale audio
            # Every frame's DFT as one strided convolution, as in the original graph; the input is
            # cut to exactly n_frames frames of the 400 live taps.
            n = cfg.n_frames
            x = x[:, None, self.lead:self.lead + (n - 1) * cfg.hop_length + WIN_LENGTH]
            spec = F.conv1d(x, self.kernels, stride=cfg.hop_length)  # [B, 2*257, n]
            bins = N_FFT // 2 + 1
            power = spec[:, :bins].square() + spec[:, bins:].square()
            mel = torch.matmul(self.mel_fb_t, power)  # [B, n_mels, n]
            db = 10.0 * torch.log10(torch.clamp(mel, min=POWER_FLOOR))
            top = db.amax(dim=(1, 2), keepdim=True)
            db = torch.maximum(db, top - cfg.top_db)
            feats = (db * cfg.scale + cfg.offset)[:, None]  # [B, 1, n_mels, n_frames]
        return feats
