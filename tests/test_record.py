"""Recording your own words (realtime.record): trimming and refusing takes, prompting, file
names; through a scripted sounddevice stream and through a real PulseAudio null sink."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from _live_fakes import make_stream, tone_word
from kws.audio import SAMPLE_RATE
from realtime import record
from realtime.record import judge_take, record_takes
from realtime.sources import MicSource
from test_live import FAKE_DEVICES, FakeStream, fake_sd, pulse_null_sink  # noqa: F401 (fixtures)

WORD_AT_S = 0.6


def take_with_word(amp: float = 0.3, at_s: float = WORD_AT_S, total_s: float = 2.0, seed: int = 0,
                   noise_db: float = -55) -> np.ndarray:
    x = make_stream([], total_s, noise_db=noise_db, seed=seed)
    w = tone_word("yes", amp=amp)
    s = round(at_s * SAMPLE_RATE)
    x[s:s + w.size] += w[:x.size - s]
    return x


# --------------------------------------------------------------------------- judging a take

def test_a_good_take_is_trimmed_to_its_speech_with_a_margin() -> None:
    take = judge_take(take_with_word())
    assert take.problem is None
    # the Hann burst's audible part is shorter than its 0.4 s; the margins add 2 x 0.15 s
    assert 0.3 < len(take.audio) / SAMPLE_RATE < 0.4 + 2 * record.MARGIN_S + 0.02
    assert take.peak_db == pytest.approx(20 * np.log10(0.3), abs=1.0)
    # the word is inside what was kept, and the kept part starts before the word does
    start = round(WORD_AT_S * SAMPLE_RATE) - round(record.MARGIN_S * SAMPLE_RATE)
    assert np.max(np.abs(take.audio)) > 0.25 and start - 0.1 * SAMPLE_RATE < round(WORD_AT_S * SAMPLE_RATE)


@pytest.mark.parametrize("take, problem", [
    (np.clip(take_with_word(amp=3.0), -1, 1), "clipped"),
    (take_with_word(amp=0.01), "too quiet"),
    (make_stream([], 2.0, noise_db=-55), "no speech"),
    (take_with_word(at_s=1.75), "cut off: speech runs to the end"),
    (take_with_word(at_s=0.0), "cut off: speech at the very start"),
    (take_with_word(at_s=0.2) + take_with_word(at_s=1.0, seed=1), "too long"),
])
def test_bad_takes_are_refused_with_the_reason(take: np.ndarray, problem: str) -> None:
    judged = judge_take(take)
    assert judged.audio is None and judged.problem.startswith(problem), judged.problem


# --------------------------------------------------------------------------- the prompts, through sounddevice

class ScriptedStream(FakeStream):
    """An input stream playing room noise, and a scripted take each time `play` is called."""

    takes: list[np.ndarray] = []

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._pending: list[np.ndarray] = []
        self._lock = threading.Lock()
        ScriptedStream.current = self

    def play(self) -> None:
        with self._lock:
            self._pending.append(ScriptedStream.takes.pop(0))

    def _run(self) -> None:
        noise = make_stream([], 0.05, noise_db=-55)
        buf = np.zeros(0, np.float32)
        while not self._halt.is_set():
            with self._lock:
                while self._pending:
                    buf = np.concatenate([buf, self._pending.pop(0)])
            block, buf = (buf[:self.blocksize], buf[self.blocksize:]) if buf.size else (noise[:self.blocksize], buf)
            block = np.pad(block, (0, self.blocksize - block.size))
            self.callback(block[:, None].astype(np.float32), self.blocksize, None, None)
            time.sleep(0.002)  # faster than real time: the test takes well under a second per take


def test_record_prompts_refuses_and_numbers_takes(fake_sd, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fake_sd, "InputStream", ScriptedStream)
    ScriptedStream.takes = [take_with_word(), np.clip(take_with_word(amp=3.0), -1, 1), take_with_word(seed=2)]
    (tmp_path / "lights on").mkdir()
    sf.write(tmp_path / "lights on" / "anna_4.wav", np.zeros(1600, np.float32), SAMPLE_RATE)  # an earlier session
    said = []

    def say(msg: str) -> None:
        said.append(msg)
        if msg.startswith("take "):
            ScriptedStream.current.play()

    files = record_takes(MicSource(), "lights on", 2, tmp_path, "anna", seconds=2.0, gap_s=0.0, say=say)
    assert [f.name for f in files] == ["anna_5.wav", "anna_6.wav"]
    prompts = [m for m in said if m.startswith("take ")]
    assert prompts == ["take 1/2: say 'lights on'", "take 2/2: say 'lights on'", "take 2/2: say 'lights on'"]
    assert any(m.startswith("  refused: clipped") for m in said)
    for f in files:
        audio, sr = sf.read(f, dtype="float32")
        info = sf.info(f)
        assert sr == SAMPLE_RATE and info.channels == 1 and info.subtype == "PCM_16"
        assert 0.3 < len(audio) / sr < 0.75 and np.max(np.abs(audio)) > 0.25


def test_no_microphone_is_a_clear_message(fake_sd, monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setattr(fake_sd, "query_devices", lambda device=None, kind=None: FAKE_DEVICES[:1])
    assert record.main(["--word", "lights on", "--out", str(tmp_path)]) == 2
    assert "no audio input device found" in capsys.readouterr().err


def test_names_that_would_escape_the_folder_are_refused(tmp_path: Path, capsys) -> None:
    assert record.main(["--word", "../x", "--out", str(tmp_path)]) == 2
    assert "--word '../x': not usable as a name" in capsys.readouterr().err
    assert record.main(["--word", "on", "--speaker", "a_b", "--out", str(tmp_path)]) == 2
    assert "no '_'" in capsys.readouterr().err


# --------------------------------------------------------------------------- the real PortAudio stack

def test_record_through_a_pulseaudio_null_sink(pulse_null_sink, tmp_path: Path) -> None:
    """Takes played into a PulseAudio null sink are captured from its monitor by PortAudio.

    Between two files the sink's monitor is digital silence, which no microphone gives: the
    files' own noise is kept below the VAD's absolute minimum so that it reads as the room."""
    good, quiet = tmp_path / "good.wav", tmp_path / "quiet.wav"
    sf.write(good, take_with_word(total_s=1.6, at_s=0.3, noise_db=-70), SAMPLE_RATE, subtype="PCM_16")
    sf.write(quiet, take_with_word(amp=0.005, total_s=1.6, at_s=0.3, noise_db=-70), SAMPLE_RATE, subtype="PCM_16")
    playlist = [quiet, good]
    said = []

    def say(msg: str) -> None:
        said.append(msg)
        if msg.startswith("take "):
            assert playlist, f"more takes asked for than played: {said}"
            f = playlist.pop(0)
            threading.Thread(target=subprocess.run, args=(["paplay", "--device=kws_test", str(f)],),
                             kwargs={"env": pulse_null_sink, "timeout": 30}, daemon=True).start()

    files = record_takes(MicSource(device="pulse"), "yes", 1, tmp_path / "words", "tester", seconds=2.5,
                         gap_s=0.3, say=say)
    assert [f.name for f in files] == ["tester_0.wav"]
    assert any("refused: too quiet" in m or "refused: no speech" in m for m in said), said
    audio, sr = sf.read(files[0], dtype="float32")
    assert sr == SAMPLE_RATE and 0.3 < len(audio) / sr < 0.75 and np.max(np.abs(audio)) > 0.2
