"""Audio file I/O: load any wav/flac/ogg as 16 kHz mono float32, or fail with a clear error.

Every failure is an :class:`AudioError` whose message starts with the file name and says
what is wrong with it, so a data-set scan can list bad files and carry on.
"""
from __future__ import annotations

import errno
import math
import stat
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np

SAMPLE_RATE = 16_000  # Hz; the one sample rate of every model in the zoo
CLIP_SECONDS = 1.0  # Speech Commands clips are 1 s long
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
INT16_SCALE = 32768.0  # PCM16 full scale: x / 32768 is exactly what soundfile returns for PCM16
MAX_SECONDS = 600.0  # longer files are almost always a mistake (a whole recording session)
MIN_SAMPLE_RATE = 4_000  # below this there is no speech band left to resample from
MAX_SAMPLE_RATE = 384_000
MIN_SECONDS = 0.05  # shorter is no word (the shortest Speech Commands clips are ~0.2 s): refused, not answered
# The polyphase filter is 20 * max(up, down) taps: a prime rate (383,999 Hz: up 16000, down 383999)
# would design 7.7 M taps. Past this term the ratio is approximated (at most 0.1 % off, far below
# what a keyword's pitch or tempo varies by), so every rate costs about what 44.1 kHz does.
MAX_RESAMPLE_TERM = 1000
SUPPORTED_SUFFIXES = (".wav", ".flac", ".ogg")
# Float files may go past full scale (1.0), but not by four orders of magnitude: a sample of
# 3e38 is a corrupt file, and it overflows the log-mel frontend into a NaN "prediction".
MAX_ABS_SAMPLE = 1e4
STREAM_BLOCK_S = 1.0  # seconds of the file read at a time by stream_audio


def to_int16(x: np.ndarray) -> np.ndarray:
    """float [-1, 1) -> PCM16: rounded (not truncated) so PCM16 sources round-trip bit-exactly,
    clipped so float sources past 0 dBFS saturate instead of wrapping."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * INT16_SCALE), -32768, 32767).astype(np.int16)


def from_int16(x: np.ndarray) -> np.ndarray:
    """PCM16 -> float32 in [-1, 1), the scale soundfile reads PCM16 files at."""
    return np.asarray(x, dtype=np.float32) * np.float32(1.0 / INT16_SCALE)


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


def resample_ratio(orig_sr: int, target_sr: int = SAMPLE_RATE) -> Fraction:
    """up/down of the resampler: target/orig exactly, or its nearest fraction whose terms are at most
    MAX_RESAMPLE_TERM (for rates such as 383,999 Hz whose exact ratio has huge terms)."""
    ratio = Fraction(target_sr, orig_sr)
    if max(ratio.numerator, ratio.denominator) <= MAX_RESAMPLE_TERM:
        return ratio
    return ratio.limit_denominator(max(1, MAX_RESAMPLE_TERM // max(1, math.ceil(ratio))))


def resample(x: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited polyphase resampling (Kaiser-windowed FIR, scipy.signal.resample_poly)."""
    if orig_sr == target_sr:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = resample_ratio(orig_sr, target_sr)
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


class ResampleStream:
    """`resample` of a signal that arrives in blocks: the outputs, concatenated, equal
    resample(whole signal) sample for sample, in memory bounded by the block size.

    resample_poly's FIR reaches `half_len` upsampled samples either side, so each output
    depends on a bounded stretch of input. Each call resamples the buffered input (kept from
    a multiple of `down`, where the polyphase grid of a slice lines up with the whole's) and
    keeps only the outputs whose whole stretch is buffered; `flush` ends the signal with the
    same zero padding the one-shot call uses.
    """

    def __init__(self, orig_sr: int, target_sr: int = SAMPLE_RATE) -> None:
        ratio = resample_ratio(orig_sr, target_sr)
        self.up, self.down = ratio.numerator, ratio.denominator
        half_len = 10 * max(self.up, self.down)  # resample_poly's filter half length (upsampled samples)
        self.margin = self.down * (math.ceil(half_len / (self.up * self.down)) + 2)  # input samples
        self._buf = np.zeros(0, np.float32)
        self._start = 0  # input index of _buf[0], a multiple of `down`
        self._n_in = 0
        self._done = 0  # outputs handed out

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).ravel()
        if self.up == self.down:
            return x
        self._buf = np.concatenate((self._buf, x))
        self._n_in += x.size
        return self._emit((self._n_in - self.margin) * self.up // self.down)

    def flush(self) -> np.ndarray:
        """The last outputs, once the input has ended."""
        if self.up == self.down:
            return np.zeros(0, np.float32)
        n = self._n_in * self.up
        return self._emit(n // self.down + bool(n % self.down))

    def _emit(self, upto: int) -> np.ndarray:
        if upto <= self._done:
            return np.zeros(0, np.float32)
        from scipy.signal import resample_poly

        first = self._start * self.up // self.down
        y = resample_poly(self._buf, self.up, self.down)[self._done - first : upto - first]
        self._done = upto
        keep = max(0, self._done * self.down // self.up - self.margin) // self.down * self.down
        if keep > self._start:
            self._buf = self._buf[keep - self._start :]
            self._start = keep
        return y.astype(np.float32, copy=False)


def resampled_length(frames: int, orig_sr: int, target_sr: int = SAMPLE_RATE) -> int:
    """Samples that `resample` makes of `frames` input samples."""
    ratio = resample_ratio(orig_sr, target_sr)
    n = frames * ratio.numerator
    return n // ratio.denominator + bool(n % ratio.denominator)


def check_waveform(x: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Validate an in-memory waveform the way a file would be validated."""
    if x.size == 0:
        raise AudioError(path, "empty audio (zero samples)", "empty")
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise AudioError(path, f"{bad} NaN or infinite samples", "nan")
    peak = float(np.max(np.abs(x)))
    if peak > MAX_ABS_SAMPLE:
        bad = int(np.count_nonzero(np.abs(x) > MAX_ABS_SAMPLE))
        raise AudioError(path, f"{bad} absurd sample values (peak |x| = {peak:.3g}; full scale is 1.0, over "
                         f"{MAX_ABS_SAMPLE:g} is a corrupt float file)", "range")
    return x


def probe_audio(path: str | Path, max_seconds: float | None = MAX_SECONDS, max_channels: int = 2,
                min_seconds: float | None = MIN_SECONDS) -> Any:
    """Every check that needs no sample data (existence, format, header, length, rate, channels).

    Returns soundfile's info for the file; raises AudioError naming the file and the problem.
    """
    sf = _sf()
    p = Path(path)
    size = _stat_size(p)
    if size == 0:
        raise AudioError(p, "empty file (0 bytes)", "empty")
    try:  # read first by Python: a file it cannot open is one typed error, not an OSError from deeper down
        with open(p, "rb") as f:
            head = f.read(12)
    except OSError as e:
        raise AudioError(p, f"cannot be read ({e.strerror or e})", "unreadable") from None
    try:
        info = sf.info(str(p))
    except Exception as e:  # libsndfile reports unknown formats and broken headers alike
        msg = str(e).split(":", 1)[-1].strip() if ":" in str(e) else str(e)
        # Judge by content, not by name: a text file called x.wav is "not audio", while a
        # file that starts like audio but fails to parse has a broken or truncated header.
        if head[:4] in AUDIO_MAGIC:
            raise AudioError(p, f"corrupt or truncated audio header ({msg})", "truncated") from None
        raise AudioError(p, f"not an audio file soundfile can read ({msg})", "not_audio") from None
    try:
        short = _wav_data_shortfall(p)
    except OSError as e:
        raise AudioError(p, f"cannot be read ({e.strerror or e})", "unreadable") from None
    if short is not None:
        raise AudioError(p, f"truncated: the WAV header promises {short[0]} bytes of audio, the file "
                         f"holds {short[1]}", "truncated")
    if info.frames == 0 or info.duration == 0:
        raise AudioError(p, "zero-length audio (no sample frames)", "empty")
    if not (MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE):
        raise AudioError(p, f"unsupported sample rate {info.samplerate} Hz "
                         f"(expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)", "sample_rate")
    if min_seconds and info.frames < min_seconds * info.samplerate:
        raise AudioError(p, f"audio is {info.frames} samples ({1000 * info.frames / info.samplerate:.1f} ms) long, "
                         f"under the {1000 * min_seconds:.0f} ms a word needs", "too_short")
    if info.channels < 1 or info.channels > max_channels:
        raise AudioError(p, f"unsupported channel layout: {info.channels} channels "
                         f"(mono or stereo expected; downmix it first)", "channels")
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioError(p, f"audio is {info.duration / 60:.1f} min long, over the "
                         f"{max_seconds / 60:.0f} min limit (pass max_seconds=None to allow it)", "too_long")
    return info


def _mono(data: np.ndarray, p: Path) -> np.ndarray:
    """Checked float32 [frames, channels] -> mono (stereo averaged)."""
    check_waveform(data, p)
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]


def _short_wav(p: Path, read: int, frames: int) -> AudioError | None:
    if p.suffix.lower() == ".wav" and read < frames:
        return AudioError(p, f"truncated: header promises {frames} frames, file holds {read}", "truncated")
    return None


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
    info = probe_audio(p, max_seconds, max_channels)
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(p, f"truncated or corrupt audio data ({e})", "truncated") from None
    if data.shape[0] == 0:
        raise AudioError(p, "zero-length audio (no sample frames)", "empty")
    short = _short_wav(p, data.shape[0], info.frames)
    if short is not None:
        raise short
    return resample(_mono(data, p), sr, target_sr)


def stream_audio(
    path: str | Path,
    target_sr: int = SAMPLE_RATE,
    max_seconds: float | None = None,
    max_channels: int = 2,
    block_s: float = STREAM_BLOCK_S,
) -> Iterator[np.ndarray]:
    """load_audio in blocks: mono float32 at `target_sr`, `block_s` of the file read at a time.

    The blocks, concatenated, equal load_audio(path) sample for sample (ResampleStream), and
    memory stays flat whatever the file's length. The header is checked before the first
    block; a problem in the data (NaN, absurd values, a short file) raises AudioError at the
    block where it is found.
    """
    sf = _sf()
    p = Path(path)
    info = probe_audio(p, max_seconds, max_channels)
    rs = ResampleStream(info.samplerate, target_sr)
    read = 0
    try:
        f = sf.SoundFile(str(p))
    except Exception as e:
        raise AudioError(p, f"truncated or corrupt audio data ({e})", "truncated") from None
    with f:
        while True:
            try:
                data = f.read(max(1, round(block_s * info.samplerate)), dtype="float32", always_2d=True)
            except Exception as e:
                raise AudioError(p, f"truncated or corrupt audio data ({e})", "truncated") from None
            if data.shape[0] == 0:
                break
            read += data.shape[0]
            out = rs.process(_mono(data, p))
            if out.size:
                yield out
    if read == 0:
        raise AudioError(p, "zero-length audio (no sample frames)", "empty")
    short = _short_wav(p, read, info.frames)
    if short is not None:
        raise short
    tail = rs.flush()
    if tail.size:
        yield tail


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


AUDIO_MAGIC = (b"RIFF", b"fLaC", b"OggS", b"RIFX", b"FORM", b"RF64")  # how audio files this reader knows begin


def _stat_size(p: Path) -> int:
    """The size of the regular file `p`, or AudioError: missing, a symlink loop, not a file, unreadable."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AudioError(p, "file not found" if not p.is_symlink() else "file not found (a dangling symbolic link)",
                         "missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise AudioError(p, "a symbolic link loop (too many levels of symbolic links)", "missing") from None
        raise AudioError(p, f"cannot be read ({e.strerror or e})", "unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(p, "not a regular file", "missing")
    return st.st_size


def load_clip(path: str | Path, offset: int | str = "center", length: int = CLIP_SAMPLES) -> np.ndarray:
    """A fixed-length clip (default 1 s at 16 kHz) from any supported file."""
    return fit_length(load_audio(path), length, offset)
