"""Keep the audio of every detection, and mark false ones: hard negatives for training.

`live.py --save-detections DIR` writes, for each detection, the window the model decided on
(`EngineConfig.window_s` of audio ending at the detection's stream time) as
`DIR/<label>/<session>_<time>s.wav`. The app's "Wrong" button (or `mark_wrong`) moves the
last one to `DIR/wrong/<label>/`, and `python train.py ... --hard-negatives DIR/wrong` trains
those clips as `_unknown_` (kws.data.custom), so the detector learns to ignore what fooled it.

The audio is tapped where the source hands it to the engine, and counted there: the count is
the engine's stream clock (it counts dropped audio too), so a detection's time finds its
samples. The saver keeps the last `history_s` seconds; saving runs in the engine's worker
thread (one small file per detection).
"""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.data.custom import WRONG_DIR  # the folder check_hard_negatives knows
from realtime.engine import Detection


class TappedSource:
    """A source whose every block is also handed to `tap` before it reaches the engine."""

    def __init__(self, source, tap: Callable[[np.ndarray], None]) -> None:
        self._source = source
        self._tap = tap

    def start(self, sink, on_end=None) -> None:
        def both(block, t_enter):
            self._tap(block)
            sink(block, t_enter)

        self._source.start(both, on_end)

    def __getattr__(self, name: str):  # description, realtime, check, stop, ... of the source itself
        return getattr(self._source, name)


class DetectionSaver:
    """The audio of each detection as a WAV file; the last one can be marked wrong."""

    def __init__(self, folder: str | Path, window_s: float = 1.0, history_s: float = 4.0) -> None:
        if history_s < window_s:
            raise ValueError(f"history_s ({history_s}) must hold one window ({window_s} s)")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.window = round(window_s * SAMPLE_RATE)
        self._buf = np.zeros(round(history_s * SAMPLE_RATE), np.float32)
        self._pos = 0  # stream samples seen
        self._lock = threading.Lock()
        self._session = time.strftime("%Y%m%d-%H%M%S")
        self.saved: list[Path] = []
        self.last: Path | None = None

    def wrap(self, source) -> TappedSource:
        return TappedSource(source, self.tap)

    def tap(self, block: np.ndarray) -> None:
        x = np.asarray(block, np.float32).ravel()[-len(self._buf):]
        with self._lock:
            i = self._pos % len(self._buf)
            first = min(len(x), len(self._buf) - i)
            self._buf[i:i + first] = x[:first]
            self._buf[:len(x) - first] = x[first:]
            self._pos += len(block)

    def window_at(self, end: int) -> np.ndarray | None:
        """The `window` samples ending at stream sample `end` (zeros before the stream began,
        as in the engine's own buffer), or None when they are no longer, or not yet, held."""
        start = end - self.window
        with self._lock:
            if end > self._pos or self._pos - max(start, 0) > len(self._buf):
                return None
            out = np.zeros(self.window, np.float32)
            idx = np.arange(max(start, 0), end)
            out[self.window - len(idx):] = self._buf[idx % len(self._buf)]
            return out

    def save(self, det: Detection) -> Path | None:
        """Write the detection's window; None when its audio has already left the history."""
        import soundfile as sf

        from kws.fsutil import atomic_path

        audio = self.window_at(round(det.time_s * SAMPLE_RATE))
        if audio is None:
            return None
        path = self.folder / det.label / f"{self._session}_{det.time_s:09.3f}s.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            sf.write(tmp, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
        self.saved.append(path)
        self.last = path
        return path

    def mark_wrong(self, path: Path | None = None) -> Path | None:
        """Move a saved detection (default: the last) to `<folder>/wrong/<label>/`."""
        path = path or self.last
        if path is None or not path.is_file():
            return None
        dest = self.folder / WRONG_DIR / path.parent.name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, dest)
        if path == self.last:
            self.last = None
        return dest
