"""Audio sources for the engine: the microphone (sounddevice/PortAudio) and a replayed file.

A source calls `sink(block, t_enter)` with float32 mono 16 kHz blocks, `t_enter` being the
clock time (time.perf_counter) at which the block's newest sample reached the application;
the engine measures mic-to-decision latency from it. `realtime` tells the session whether the
producer can wait (a file replayed as fast as possible) or must never block (a sound card).

sounddevice is imported lazily, so a machine without PortAudio can still replay files, and a
missing library becomes a message naming the package rather than an ImportError at start-up.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from kws.audio import SAMPLE_RATE, check_waveform, probe_audio, resampled_length, stream_audio

Sink = Callable[[np.ndarray, float], None]

PORTAUDIO_HINT = ("install libportaudio2 (Debian/Ubuntu: sudo apt-get install libportaudio2; "
                  "macOS: brew install portaudio; Windows: pip install --force-reinstall sounddevice, "
                  "whose wheel bundles PortAudio)")


class SourceError(RuntimeError):
    """An audio input problem, worded for the user (shown in the UI and on the console)."""


class Source(Protocol):
    realtime: bool  # a real-time producer: never make it wait (drop instead)
    description: str

    def start(self, sink: Sink, on_end: Callable[[], None] | None = None) -> None: ...

    def stop(self) -> None: ...

    def check(self) -> str | None:
        """A problem found since start (device gone, stalled stream), or None."""
        ...


# ----------------------------------------------------------------------------- sounddevice helpers


def import_sounddevice() -> Any:
    """sounddevice, or a SourceError naming the package to install when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError("PortAudio library not found") on import
        raise SourceError(f"PortAudio library not found ({e}): {PORTAUDIO_HINT}") from None
    except ImportError as e:
        raise SourceError(f"the sounddevice package is missing ({e}): pip install sounddevice") from None
    return sounddevice


def _query_devices(sd: Any) -> list[dict]:
    try:
        return list(sd.query_devices())
    except Exception as e:  # PortAudioError when the host API cannot be queried
        raise SourceError(f"cannot list audio devices: {e}") from None


def list_devices_text() -> str:
    """A table of the audio devices, input devices marked, default marked with '*'."""
    sd = import_sounddevice()
    devices = _query_devices(sd)
    default_in = _default_input(sd)
    lines = []
    for i, d in enumerate(devices):
        mark = "*" if i == default_in else " "
        kind = "in " if d["max_input_channels"] > 0 else "   "
        hostapi = sd.query_hostapis(d["hostapi"])["name"] if "hostapi" in d else "?"
        lines.append(f"{mark} {i:3d} {kind} {d['name']} ({hostapi}, {d['max_input_channels']} in, "
                     f"{d['default_samplerate']:.0f} Hz)")
    if not any(d["max_input_channels"] > 0 for d in devices):
        lines.append(no_input_message(len(devices)))
    return "\n".join(lines) if lines else no_input_message(0)


def no_input_message(n_devices: int) -> str:
    return (f"no audio input device found (PortAudio lists {n_devices} device(s), none with input channels). "
            "Connect a microphone (or start PulseAudio/PipeWire), or replay a file with --input FILE.wav")


def _default_input(sd: Any) -> int:
    try:
        idx = sd.default.device[0]
        idx = int(idx) if idx is not None else -1
    except Exception:
        idx = -1
    if idx < 0:
        try:
            idx = int(sd.query_devices(kind="input")["index"])
        except Exception:
            idx = -1
    return idx


def resolve_input_device(sd: Any, device: int | str | None) -> tuple[int, dict]:
    """The PortAudio index and info of the requested input device, or a SourceError saying why not."""
    devices = _query_devices(sd)
    inputs = [(i, d) for i, d in enumerate(devices) if d["max_input_channels"] > 0]
    if not inputs:
        raise SourceError(no_input_message(len(devices)))
    listing = ", ".join(f"{i} {d['name']!r}" for i, d in inputs)
    if device is None:
        idx = _default_input(sd)
        if not 0 <= idx < len(devices) or devices[idx]["max_input_channels"] < 1:
            idx = inputs[0][0]  # no usable default: the first input device
        return idx, devices[idx]
    if isinstance(device, str) and device.strip().lstrip("-").isdigit():
        device = int(device)
    if isinstance(device, int):
        if not 0 <= device < len(devices):
            raise SourceError(f"--device {device}: no such device (PortAudio lists {len(devices)}); "
                              f"input devices: {listing}")
        if devices[device]["max_input_channels"] < 1:
            raise SourceError(f"--device {device} ({devices[device]['name']!r}) has no input channels; "
                              f"input devices: {listing}")
        return device, devices[device]
    exact = [(i, d) for i, d in inputs if d["name"].lower() == device.lower()]
    matches = exact or [(i, d) for i, d in inputs if device.lower() in d["name"].lower()]
    if not matches:
        raise SourceError(f"--device {device!r}: no input device matches; input devices: {listing}")
    if len(matches) > 1:
        names = ", ".join(f"{i} {d['name']!r}" for i, d in matches)
        raise SourceError(f"--device {device!r} is ambiguous ({names}); give the index")
    return matches[0]


class StreamResampler:
    """Block-by-block resampling for a device that cannot record at 16 kHz.

    An 8th-order Butterworth low-pass at 0.45 x the target rate (state carried across blocks)
    followed by linear interpolation at a fractional read position carried across blocks, so
    block boundaries leave no clicks and the output rate is exact on average.
    """

    def __init__(self, orig_sr: int, target_sr: int = SAMPLE_RATE) -> None:
        from scipy.signal import butter

        if orig_sr <= 0 or target_sr <= 0:
            raise ValueError("sample rates must be positive")
        self.orig_sr, self.target_sr = orig_sr, target_sr
        self.step = orig_sr / target_sr  # input samples per output sample
        self._sos = butter(8, 0.45 * target_sr, fs=orig_sr, output="sos") if orig_sr > target_sr else None
        self._zi = np.zeros((self._sos.shape[0], 2)) if self._sos is not None else None
        self._t = 0.0  # read position of the next output sample, relative to the current block
        self._prev = 0.0  # last filtered input sample of the previous block (position -1)

    def process(self, x: np.ndarray) -> np.ndarray:
        from scipy.signal import sosfilt

        x = np.asarray(x, dtype=np.float64).ravel()
        if x.size == 0:
            return np.zeros(0, np.float32)
        if self._sos is not None:
            x, self._zi = sosfilt(self._sos, x, zi=self._zi)
        n = x.size
        k = max(0, math.ceil((n - 1 - self._t) / self.step))  # outputs with position < n - 1
        pos = self._t + self.step * np.arange(k)
        pos = pos[pos < n - 1]
        ext = np.concatenate(([self._prev], x))  # ext[j + 1] == x[j]; ext[0] is position -1
        i0 = np.floor(pos).astype(np.int64)
        frac = pos - i0
        y = ext[i0 + 1] * (1.0 - frac) + ext[i0 + 2] * frac
        self._t = (pos[-1] + self.step if pos.size else self._t) - n
        self._prev = float(x[-1])
        return y.astype(np.float32)


# ----------------------------------------------------------------------------- microphone


class MicSource:
    """Capture from an input device; the PortAudio callback only copies and hands the block on."""

    realtime = True

    def __init__(self, device: int | str | None = None, *, block_s: float = 0.05, stall_s: float = 2.0,
                 startup_s: float = 6.0) -> None:
        self.device = device
        self.block_s = block_s
        self.stall_s = stall_s  # no callback for this long while running = device gone or stalled
        self.startup_s = startup_s  # grace before the first callback (PulseAudio's ALSA plugin: ~1.6 s here)
        self.description = "microphone"
        self.overflows = 0  # PortAudio input overflows (audio lost before it reached us)
        self.error: str | None = None
        self.samplerate: int | None = None
        self.latency_s: float | None = None  # PortAudio's reported input latency
        self._sd: Any = None
        self._stream: Any = None
        self._sink: Sink | None = None
        self._on_end: Callable[[], None] | None = None
        self._resampler: StreamResampler | None = None
        self._stopping = False
        self._last_cb: float | None = None
        self._started_at = 0.0

    def start(self, sink: Sink, on_end: Callable[[], None] | None = None) -> None:
        sd = self._sd = import_sounddevice()
        index, info = resolve_input_device(sd, self.device)
        name = info["name"]
        rate = SAMPLE_RATE
        try:
            sd.check_input_settings(device=index, channels=1, dtype="float32", samplerate=rate)
        except Exception:
            # e.g. a raw ALSA hw device fixed at 48 kHz: record at its own rate and resample here
            rate = int(info["default_samplerate"])
            self._resampler = StreamResampler(rate, SAMPLE_RATE)
        self._sink, self._on_end = sink, on_end
        self.samplerate = rate
        self.description = f"microphone: {name}" + ("" if rate == SAMPLE_RATE else f" ({rate} Hz, resampled)")
        try:
            self._stream = sd.InputStream(device=index, channels=1, samplerate=rate, dtype="float32",
                                          blocksize=max(1, round(rate * self.block_s)), latency="low",
                                          callback=self._callback, finished_callback=self._finished)
            self._stream.start()
        except Exception as e:  # PortAudioError, or ValueError for settings the device refuses
            self._close_stream()
            raise SourceError(f"cannot open input device {index} {name!r}: {e}") from None
        self.latency_s = float(getattr(self._stream, "latency", 0.0) or 0.0)
        self._started_at = time.perf_counter()

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now = time.perf_counter()
        self._last_cb = now
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        block = indata[:, 0].copy()  # PortAudio reuses indata after we return
        if self._resampler is not None:
            block = self._resampler.process(block)
        try:
            if self._sink is not None and block.size:
                self._sink(block, now)
        except Exception as e:  # never let an exception escape into PortAudio's thread
            self.error = f"audio callback failed: {type(e).__name__}: {e}"
            raise self._sd.CallbackAbort from None

    def _finished(self) -> None:
        if not self._stopping and self.error is None:
            self.error = (f"the input device stopped delivering audio ({self.description}); "
                          "was it unplugged or taken by another program?")

    def check(self) -> str | None:
        if self.error is not None:
            return self.error
        if self._stream is None or self._stopping:
            return None
        try:
            active = bool(self._stream.active)
        except Exception as e:  # PortAudioError on a stream whose device disappeared
            self.error = f"the input stream failed: {e}"
            return self.error
        if not active:
            self.error = f"the input stream stopped ({self.description}); was the device unplugged?"
            return self.error
        quiet = time.perf_counter() - (self._last_cb if self._last_cb is not None else self._started_at)
        limit = self.stall_s if self._last_cb is not None else self.startup_s
        if quiet > limit:
            self.error = (f"no audio from {self.description} for {quiet:.1f} s; "
                          "the device was unplugged or has stalled")
            return self.error
        return None

    def stop(self) -> None:
        self._stopping = True
        self._close_stream()
        if self._on_end is not None:
            on_end, self._on_end = self._on_end, None
            on_end()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        except Exception:  # closing a stream whose device vanished may fail again; nothing left to do
            pass


# ----------------------------------------------------------------------------- replayed file


class ReplaySource:
    """Replay a file (any length or rate) or an array, paced in real time or as fast as possible.

    In real time, block i is delivered when its newest sample would have been captured, so
    the engine sees exactly what a microphone would give it (and latencies mean the same).
    A file is streamed (kws.audio.stream_audio): memory stays flat whatever its length, and
    the samples are those load_audio would give. Its header is checked here, so a file that
    cannot be read fails before anything starts; a problem found later in its data stops the
    replay with the file's error (`check`).
    """

    def __init__(self, path: str | Path | None = None, *, wave: np.ndarray | None = None, realtime: bool = True,
                 block_s: float = 0.05, speed: float = 1.0, name: str | None = None) -> None:
        if (path is None) == (wave is None):
            raise ValueError("give exactly one of path or wave")
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.path = Path(path) if path is not None else None
        self.wave: np.ndarray | None = None
        if self.path is not None:
            info = probe_audio(self.path, max_seconds=None)  # AudioError names the file and the problem
            self._samples = resampled_length(info.frames, info.samplerate)
            label = self.path.name
        else:
            self.wave = check_waveform(np.asarray(wave, dtype=np.float32).ravel(), name or "<array>")
            self._samples = self.wave.size
            label = name or "array"
        self.realtime = realtime
        self.block = max(1, round(block_s * SAMPLE_RATE))
        self.speed = speed
        self.description = f"replay: {label} ({self.duration_s:.1f} s, " \
                           f"{'real time' if realtime else 'fast'})"
        self.error: str | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def duration_s(self) -> float:
        return self._samples / SAMPLE_RATE

    def blocks(self) -> Iterator[np.ndarray]:
        """The audio in blocks of `self.block` samples (the last one shorter)."""
        if self.wave is not None:
            for s in range(0, self.wave.size, self.block):
                yield self.wave[s : s + self.block]
            return
        pending: list[np.ndarray] = []
        have = 0
        for chunk in stream_audio(self.path):
            pending.append(chunk)
            have += chunk.size
            if have < self.block:
                continue
            buf = np.concatenate(pending)
            n = buf.size - buf.size % self.block
            for s in range(0, n, self.block):
                yield buf[s : s + self.block]
            pending, have = [buf[n:]], buf.size - n
        if have:
            yield np.concatenate(pending)

    def start(self, sink: Sink, on_end: Callable[[], None] | None = None) -> None:
        self._thread = threading.Thread(target=self._run, args=(sink, on_end), name="kws-replay", daemon=True)
        self._thread.start()

    def _run(self, sink: Sink, on_end: Callable[[], None] | None) -> None:
        t0 = time.perf_counter()
        s = 0
        try:
            for block in self.blocks():
                s += block.size
                if self.realtime:
                    due = t0 + s / SAMPLE_RATE / self.speed
                    if self._stop.wait(max(0.0, due - time.perf_counter())):
                        break
                elif self._stop.is_set():
                    break
                sink(block, time.perf_counter())
        except Exception as e:  # a problem in the file's data, or the engine refused the audio (closed or failed)
            self.error = f"replay stopped: {e}"
        finally:
            self.done.set()
            if on_end is not None:
                on_end()

    def check(self) -> str | None:
        return self.error

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
