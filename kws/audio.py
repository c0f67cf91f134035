"""Audio file I/O: load any wav/flac/ogg as 16 kHz mono float32, or fail with a clear error.

Every failure is an :class:`AudioError` whose message starts with the file name and says
what is wrong with it, so a data-set scan can list bad files and carry on.
"""
from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000  # Hz; the one sample rate of every model in the zoo
CLIP_SECONDS = 1.0  # Speech Commands clips are 1 s long
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
INT16_SCALE = 32768.0  # PCM16 full scale: x / 32768 is exactly what soundfile returns for PCM16
MAX_SECONDS = 600.0  # longer files are almost always a mistake (a whole recording session)
MIN_SAMPLE_RATE = 4_000  # below this there is no speech band left to resample from
MAX_SAMPLE_RATE = 384_000
SUPPORTED_SUFFIXES = (".wav", ".flac", ".ogg")


class AudioError(ValueError):
    """A file that cannot be used as audio. `kind` is a short machine-readable tag."""

    def __init__(self, path: str | Path, problem: str, kind: str = "invalid") -> None:
        self.path = str(path)
        self.problem = problem
        self.kind = kind
        super().__init__(f"{path}: {problem}")


def _sf():
    # soundfile needs libsndfile; import here so the message names the package if it is missing.
    try:
        import soundfile
    except (ImportError, OSError) as e:  # pragma: no cover - environment problem
        raise ImportError(f"soundfile/libsndfile is required to read audio: pip install soundfile ({e})") from e
    return soundfile


def resample(x: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited polyphase resampling (Kaiser-windowed FIR, scipy.signal.resample_poly)."""
    if orig_sr == target_sr:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(target_sr, orig_sr)
    y = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    return y.astype(np.float32, copy=False)


def fit_length(x: np.ndarray, length: int = CLIP_SAMPLES, offset: int | str = "center") -> np.ndarray:
    """Pad with zeros or trim `x` to `length` samples.

    offset: "center" centres the audio; an int is the start sample of the window into a
    longer signal (trim) or the number of leading zeros before a shorter one (pad).
    """
    n = x.shape[-1]
    if n == length:
        return x
    if n > length:
        start = (n - length) // 2 if offset == "center" else int(offset)
        start = min(max(start, 0), n - length)
        return x[..., start : start + length]
    lead = (length - n) // 2 if offset == "center" else int(offset)
    lead = min(max(lead, 0), length - n)
    pad = [(0, 0)] * (x.ndim - 1) + [(lead, length - n - lead)]
    return np.pad(x, pad)


def check_waveform(x: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Validate an in-memory waveform the way a file would be validated."""
    if x.size == 0:
        raise AudioError(path, "empty audio (zero samples)", "empty")
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise AudioError(path, f"{bad} NaN or infinite samples", "nan")
    return x


def load_audio(
    path: str | Path,
    target_sr: int = SAMPLE_RATE,
    max_seconds: float | None = MAX_SECONDS,
    max_channels: int = 2,
) -> np.ndarray:
    """Read a file as mono float32 at `target_sr`. Raises AudioError on any bad input.

    Stereo is averaged to mono; more channels than `max_channels` is refused because a
    plain average of e.g. a 5.1 mix or an Ambisonics recording is not what the user meant.
    """
    sf = _sf()
    p = Path(path)
    if not p.exists():
        raise AudioError(p, "file not found", "missing")
    if not p.is_file():
        raise AudioError(p, "not a regular file", "missing")
    if p.stat().st_size == 0:
        raise AudioError(p, "empty file (0 bytes)", "empty")
    try:
        info = sf.info(str(p))
    except Exception as e:  # libsndfile reports unknown formats and broken headers alike
        msg = str(e).split(":", 1)[-1].strip() if ":" in str(e) else str(e)
        # Judge by content, not by name: a text file called x.wav is "not audio", while a
        # file that starts like audio but fails to parse has a broken or truncated header.
        if _looks_like_audio(p):
            raise AudioError(p, f"corrupt or truncated audio header ({msg})", "truncated") from None
        raise AudioError(p, f"not an audio file soundfile can read ({msg})", "not_audio") from None
    short = _wav_data_shortfall(p)
    if short is not None:
        raise AudioError(p, f"truncated: the WAV header promises {short[0]} bytes of audio, the file "
                         f"holds {short[1]}", "truncated")
    if info.frames == 0 or info.duration == 0:
        raise AudioError(p, "zero-length audio (no sample frames)", "empty")
    if not (MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE):
        raise AudioError(p, f"unsupported sample rate {info.samplerate} Hz "
                         f"(expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)", "sample_rate")
    if info.channels < 1 or info.channels > max_channels:
        raise AudioError(p, f"unsupported channel layout: {info.channels} channels "
                         f"(mono or stereo expected; downmix it first)", "channels")
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioError(p, f"audio is {info.duration / 60:.1f} min long, over the "
                         f"{max_seconds / 60:.0f} min limit (pass max_seconds=None to allow it)", "too_long")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(p, f"truncated or corrupt audio data ({e})", "truncated") from None
    if data.shape[0] == 0:
        raise AudioError(p, "zero-length audio (no sample frames)", "empty")
    if p.suffix.lower() == ".wav" and data.shape[0] < info.frames:
        raise AudioError(p, f"truncated: header promises {info.frames} frames, file holds "
                         f"{data.shape[0]}", "truncated")
    check_waveform(data, p)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, sr, target_sr)


def _wav_data_shortfall(p: Path, max_chunks: int = 64) -> tuple[int, int] | None:
    """(declared, present) byte counts when a RIFF/WAVE 'data' chunk is cut short, else None.

    libsndfile silently clamps a truncated data chunk to what is on disk, so a file cut by a
    killed copy or download would otherwise load as a shorter, wrong clip. Streaming writers
    that leave the size at 0 or 0xFFFFFFFF ("unknown") are not flagged.
    """
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None  # RF64/W64/RIFX keep their sizes elsewhere; libsndfile's checks apply
        pos = 12
        for _ in range(max_chunks):
            if pos + 8 > size:
                return None
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                present = size - pos - 8
                if 0 < chunk_size < 0xFFFFFFFF and chunk_size > present:
                    return chunk_size, present
                return None
            pos += 8 + chunk_size + (chunk_size & 1)  # RIFF chunks are word-aligned
    return None


def _looks_like_audio(p: Path) -> bool:
    with open(p, "rb") as f:
        head = f.read(4)
    return head in (b"RIFF", b"fLaC", b"OggS", b"RIFX", b"FORM")


def load_clip(path: str | Path, offset: int | str = "center", length: int = CLIP_SAMPLES) -> np.ndarray:
    """A fixed-length clip (default 1 s at 16 kHz) from any supported file."""
    return fit_length(load_audio(path), length, offset)
