"""Record your own words from the microphone, one prompted take at a time.

Usage:
  python -m realtime.record --word "lights on" --count 10 --out my_words/
  python -m realtime.record --word "lights on" --speaker anna --device 2 --seconds 2.5
  python -m realtime.record --list-devices

Each take: a prompt (`take 3/10: say "lights on"`), then `--seconds` of audio. The take is
trimmed to the speech in it by the live engine's voice-activity detector (realtime.engine's
EnergyVAD, its floor started at the take's quietest hops) with a short margin, and kept as
`<out>/<word>/<speaker>_<n>.wav` (16 kHz mono PCM16; n continues after the takes already
there, so sessions add up). A take is refused, with the reason, and asked for again when it
is clipped, too quiet, has no speech, is cut off by the start or end of the recording, or
holds more speech than the model's one-second window. Then train on the folder:
`python train.py --config recipes/custom_words.yaml --data folder:my_words`.

Exit status: 0 all takes kept, 1 gave up (too many refused takes), 2 could not start (no
microphone, bad arguments).
"""
from __future__ import annotations

import argparse
import getpass
import queue
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kws.audio import SAMPLE_RATE
from realtime.engine import LEVEL_FLOOR_DB, EnergyVAD, VADConfig
from realtime.sources import MicSource, SourceError

HOP_S = 0.010  # VAD hop: finer than the engine's 50 ms, a trim is only as exact as its hop
MARGIN_S = 0.15  # kept around the speech: the word's soft onset and release
CLIP_LEVEL = 0.999  # |sample| at full scale
CLIPPED_SHARE = 0.001  # more than this share of samples at full scale: distorted
MIN_PEAK_DB = -30.0  # quieter speech (peak, dBFS) drowns in a live room's noise
MAX_SPEECH_S = 1.0  # the model hears one second
QUIET_PERCENTILE = 10  # the take's quiet hops (before and after the word) are its room level
MAX_ATTEMPTS_PER_TAKE = 5
EDGE_S = 0.05  # speech this close to the start or end of a take was cut off by it


@dataclass(frozen=True)
class Take:
    """One judged take: the trimmed audio (None when refused) and why it was refused."""

    audio: np.ndarray | None
    problem: str | None
    speech_s: float = 0.0
    peak_db: float = LEVEL_FLOOR_DB


def _db(x: float) -> float:
    return max(LEVEL_FLOOR_DB, 20.0 * float(np.log10(x + 1e-12)))


def judge_take(x: np.ndarray, vad: VADConfig = VADConfig()) -> Take:
    """Trim a take to its speech, or say why it is no use (float32 mono at 16 kHz)."""
    x = np.asarray(x, dtype=np.float32).ravel()
    hop = round(HOP_S * SAMPLE_RATE)
    n = len(x) // hop
    if n < 3:
        return Take(None, f"too short: {len(x) / SAMPLE_RATE:.2f} s of audio")
    clipped = int(np.sum(np.abs(x) >= CLIP_LEVEL))
    if clipped > CLIPPED_SHARE * len(x):
        return Take(None, f"clipped: {clipped} samples at full scale; lower the input gain or move back a little")
    levels = [EnergyVAD.level_db(float(np.mean(np.square(x[i * hop:(i + 1) * hop], dtype=np.float64))))
              for i in range(n)]
    # The engine's detector, its floor started at the room's level (the take's quiet hops)
    # rather than at the engine's low start, which is made for not missing a first word.
    start = float(np.percentile(levels, QUIET_PERCENTILE))
    det = EnergyVAD(VADConfig(**{**vad.__dict__, "init_floor_db": start}), HOP_S)
    voiced = np.flatnonzero([det.update(level) for level in levels])
    peak_db = _db(float(np.max(np.abs(x))))
    if voiced.size == 0:
        return Take(None, f"no speech: nothing above the room's level (peak {peak_db:.0f} dBFS); "
                          f"speak louder or closer", peak_db=peak_db)
    first, last = int(voiced[0]), int(voiced[-1])
    speech_s = (last - first + 1) * HOP_S
    speech_peak = _db(float(np.max(np.abs(x[first * hop:(last + 1) * hop]))))
    if speech_peak < MIN_PEAK_DB:
        return Take(None, f"too quiet: the speech peaks at {speech_peak:.0f} dBFS, below {MIN_PEAK_DB:.0f}; "
                          f"speak louder or closer, or raise the input gain", speech_s, speech_peak)
    edge = round(EDGE_S / HOP_S)
    if first < edge:
        return Take(None, "cut off: speech at the very start; wait for the prompt", speech_s, speech_peak)
    if last >= n - edge:
        return Take(None, "cut off: speech runs to the end of the take; say it right after the prompt "
                          "(or record longer takes with --seconds)", speech_s, speech_peak)
    if speech_s > MAX_SPEECH_S:
        return Take(None, f"too long: {speech_s:.1f} s of speech, the model hears {MAX_SPEECH_S:.0f} s; "
                          f"say it a little faster", speech_s, speech_peak)
    margin = round(MARGIN_S * SAMPLE_RATE)
    a, b = max(0, first * hop - margin), min(len(x), (last + 1) * hop + margin)
    return Take(x[a:b].copy(), None, speech_s, speech_peak)


def safe_name(text: str, what: str) -> str:
    """A word or speaker as a file or folder name: no path separators, no leading dot."""
    name = text.strip()
    if not name or name.startswith(".") or re.search(r"[/\\\x00]", name) or "_" in name and what == "speaker":
        raise ValueError(f"--{what} {text!r}: not usable as a name here"
                         + (" (no '_': it separates the speaker from the take number)" if what == "speaker" else ""))
    return name


def next_index(folder: Path, speaker: str) -> int:
    """The take number after the highest `<speaker>_<n>.wav` already in folder."""
    taken = [int(m.group(1)) for p in folder.glob(f"{speaker}_*.wav")
             if (m := re.fullmatch(rf"{re.escape(speaker)}_(\d+)\.wav", p.name))]
    return max(taken, default=-1) + 1


def write_take(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    from kws.fsutil import atomic_path

    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")


class Capture:
    """Audio from a source, take by take: the blocks that arrive after `begin()`."""

    def __init__(self, source: MicSource) -> None:
        self.source = source
        self._q: queue.Queue[np.ndarray] = queue.Queue()

    def __enter__(self) -> "Capture":
        self.source.start(lambda block, _t: self._q.put(block))
        return self

    def __exit__(self, *exc) -> None:
        self.source.stop()

    def begin(self) -> None:
        while True:  # what arrived before the prompt is not the take
            try:
                self._q.get_nowait()
            except queue.Empty:
                return

    def read(self, seconds: float, timeout_s: float = 5.0) -> np.ndarray:
        need = round(seconds * SAMPLE_RATE)
        got, have = [], 0
        deadline = time.monotonic() + seconds + timeout_s
        while have < need:
            problem = self.source.check()
            if problem:
                raise SourceError(problem)
            try:
                block = self._q.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise SourceError(f"no audio from {self.source.description} for {timeout_s:.0f} s") from None
                continue
            got.append(block)
            have += block.size
        return np.concatenate(got)[:need]


def record_takes(source: MicSource, word: str, count: int, out: Path, speaker: str, *, seconds: float = 2.0,
                 gap_s: float = 0.5, say: Callable[[str], None] = print) -> list[Path]:
    """Prompt for `count` takes of `word` and keep the good ones; returns the files written."""
    folder = Path(out) / safe_name(word, "word")
    speaker = safe_name(speaker, "speaker")
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    n = next_index(folder, speaker)
    with Capture(source) as cap:
        say(f"recording {count} takes of {word!r} from {source.description} into {folder}/")
        for k in range(1, count + 1):
            for attempt in range(1, MAX_ATTEMPTS_PER_TAKE + 1):
                time.sleep(gap_s)
                cap.begin()
                say(f"take {k}/{count}: say {word!r}")
                take = judge_take(cap.read(seconds))
                if take.audio is not None:
                    path = folder / f"{speaker}_{n}.wav"
                    write_take(path, take.audio)
                    say(f"  kept {path.name}: {take.speech_s:.2f} s of speech, peak {take.peak_db:.0f} dBFS")
                    written.append(path)
                    n += 1
                    break
                say(f"  refused: {take.problem}" + (" - again" if attempt < MAX_ATTEMPTS_PER_TAKE else ""))
            else:
                raise TakeError(f"take {k} of {word!r} refused {MAX_ATTEMPTS_PER_TAKE} times in a row; "
                                f"{len(written)} takes kept in {folder}")
    return written


class TakeError(RuntimeError):
    """Too many refused takes in a row."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m realtime.record", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--word", help="the word or phrase to record (its folder name)")
    p.add_argument("--count", type=int, default=10, help="takes to keep (default 10)")
    p.add_argument("--out", type=Path, default=Path("my_words"), help="folder of word folders (default my_words/)")
    p.add_argument("--speaker", default=None, help="your name in the file names (default: your login)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each take before trimming (default 2)")
    p.add_argument("--gap", type=float, default=0.5, help="pause before each prompt, seconds (default 0.5)")
    p.add_argument("--device", help="input device index or name (see --list-devices)")
    p.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    args = p.parse_args(argv)
    try:
        if args.list_devices:
            from realtime.sources import list_devices_text

            print(list_devices_text())
            return 0
        if not args.word:
            p.error("--word is required")
        if args.count < 1 or args.seconds <= MAX_SPEECH_S or args.gap < 0:
            p.error(f"--count must be >= 1, --seconds > {MAX_SPEECH_S:.0f} and --gap >= 0")
        speaker = args.speaker or re.sub(r"[^A-Za-z0-9-]+", "-", getpass.getuser()).strip("-") or "me"
        record_takes(MicSource(args.device), args.word, args.count, args.out, speaker, seconds=args.seconds,
                     gap_s=args.gap)
    except (SourceError, ValueError) as e:
        print(f"record: error: {e}", file=sys.stderr)
        return 2
    except TakeError as e:
        print(f"record: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("record: stopped", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
