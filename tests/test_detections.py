"""Hard negatives from the live detector (realtime.detections): the audio of every detection,
the Wrong button, live.py --save-detections, and the loop a user runs: a stream that falsely
triggers, a retrain with its saved clip, no trigger on the same stream."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before pytest-qt creates the QApplication

from cli import live  # noqa: E402
from cli import train as train_cli
from _live_fakes import LABELS, WORD_HZ, ToneModel, make_stream
from kws.audio import SAMPLE_RATE, load_audio
from kws.data.custom import build_words
from realtime.detections import DetectionSaver
from realtime.engine import EngineConfig
from realtime.predictor import from_function, load_predictor
from realtime.session import LiveSession
from realtime.sources import ReplaySource

STREAM = make_stream([("yes", 0.5), ("up", 1.6)], 2.8)


def tone_factory(_args=None):
    return from_function(ToneModel(), LABELS, name="tone-test")


def replay(predictor, wave: np.ndarray, saver: DetectionSaver | None = None, cfg: EngineConfig | None = None):
    """Every detection of `wave`, replayed as fast as the model allows (nothing lost)."""
    source = ReplaySource(wave=wave, realtime=False, name="stream")
    session = LiveSession(predictor, saver.wrap(source) if saver else source, cfg,
                          on_detection=saver.save if saver else None)
    session.start()
    try:
        assert session.wait(60), "the replay did not finish"
        assert session.check() is None
    finally:
        session.stop()
    return session.poll_detections()


def dominant_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[int(np.argmax(spec))])


def test_each_detection_keeps_the_window_the_model_decided_on(tmp_path: Path) -> None:
    saver = DetectionSaver(tmp_path / "saved")
    dets = replay(tone_factory(), STREAM, saver)
    assert [d.label for d in dets] == ["yes", "up"]
    assert [p.parent.name for p in saver.saved] == ["yes", "up"]
    for det, path in zip(dets, saver.saved):
        audio, sr = sf.read(path, dtype="float32")
        assert sr == SAMPLE_RATE and len(audio) == SAMPLE_RATE  # the model's one-second window
        assert dominant_hz(audio) == pytest.approx(WORD_HZ[det.label], abs=5)
        end = round(det.time_s * SAMPLE_RATE)  # ... ending at the detection's stream time
        heard = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), STREAM])[end:end + SAMPLE_RATE]
        np.testing.assert_allclose(audio, heard, atol=1 / 32768)  # (zeros before the stream began)

    moved = saver.mark_wrong()
    assert moved == tmp_path / "saved" / "wrong" / "up" / saver.saved[-1].name and moved.is_file()
    assert not saver.saved[-1].exists() and saver.mark_wrong() is None  # the last one, once


def test_audio_that_left_the_history_is_not_saved(tmp_path: Path) -> None:
    saver = DetectionSaver(tmp_path, history_s=1.5)
    saver.tap(np.zeros(3 * SAMPLE_RATE, np.float32))
    assert saver.window_at(3 * SAMPLE_RATE) is not None
    assert saver.window_at(SAMPLE_RATE) is None  # 2 s ago, beyond 1.5 s of history
    assert saver.window_at(4 * SAMPLE_RATE) is None  # not heard yet


def test_live_headless_saves_detections(tmp_path: Path, capsys) -> None:
    wav = tmp_path / "words.wav"
    sf.write(wav, STREAM, SAMPLE_RATE, subtype="PCM_16")
    rc = live.main(["--input", str(wav), "--headless", "--save-detections", str(tmp_path / "saved")],
                   predictor_factory=tone_factory)
    assert rc == 0
    assert sorted(p.parent.name for p in (tmp_path / "saved").rglob("*.wav")) == ["up", "yes"]


def test_gui_wrong_button_moves_the_last_detection(qtbot, tmp_path: Path) -> None:
    from PyQt6.QtCore import Qt

    from realtime.gui import LiveWindow

    saver = DetectionSaver(tmp_path / "saved")
    win = LiveWindow(tone_factory, lambda: ReplaySource(wave=STREAM, name="words.wav"), EngineConfig(), saver=saver)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.state == "ready", timeout=5000)
    assert win.wrong_button.isVisible() and not win.wrong_button.isEnabled()
    qtbot.mouseClick(win.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.log.count() == 1 and saver.last is not None, timeout=5000)
    assert win.wrong_button.isEnabled()
    qtbot.mouseClick(win.wrong_button, Qt.MouseButton.LeftButton)
    assert [p.parent.name for p in (tmp_path / "saved" / "wrong").rglob("*.wav")] == ["yes"]
    assert not win.wrong_button.isEnabled()
    qtbot.waitUntil(lambda: win.state == "ready", timeout=8000)
    win.close()


# --------------------------------------------------------------------------- the whole loop

WORDS = ("lights on", "hey computer")
TRAIN = ["--model", "speech_embedding_mlp", "--freeze-backbone", "--cache-views", "2", "--epochs", "15",
         "--synth-words", "auto", "--synth-per-word", "20", "--negatives", "none", "--batch-size", "16",
         "--no-progress", "--deterministic", "--seed", "1", "--threads", "1"]


def test_a_false_trigger_saved_and_retrained_no_longer_triggers(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build = build_words(WORDS, 4, cache / "elsewhere", progress=False)
    my_words = tmp_path / "my_words"
    for word in WORDS:
        (my_words / word).mkdir(parents=True)
        for n, wav in enumerate(sorted((build / word).glob("*.wav"))):
            shutil.copy(wav, my_words / word / f"me_{n}.wav")
    # A stream with another word in it. With no negatives (--negatives none) the first model
    # has never heard a word that is not one of yours, so it takes this one for one of them.
    other = build_words(("banana",), 1, cache / "elsewhere", progress=False)
    word = load_audio(next((other / "banana").glob("*.wav")))
    stream = np.concatenate([make_stream([], 1.0), word, make_stream([], 1.0, seed=1)])
    args = [*TRAIN, "--data", f"folder:{my_words}", "--cache-dir", str(cache)]

    assert train_cli.main([*args, "--out", str(tmp_path / "first")]) == 0
    saver = DetectionSaver(tmp_path / "saved")
    cfg = EngineConfig(threshold=0.6)
    fired = replay(load_predictor(str(tmp_path / "first"), "torch-cpu"), stream, saver, cfg)
    assert [d.label for d in fired if d.label in WORDS], f"the stream did not trigger the first model: {fired}"
    for path in list(saver.saved):  # the user presses Wrong after each one
        saver.mark_wrong(path)

    assert train_cli.main([*args, "--hard-negatives", str(tmp_path / "saved" / "wrong"),
                           "--out", str(tmp_path / "second")]) == 0
    again = replay(load_predictor(str(tmp_path / "second"), "torch-cpu"), stream, cfg=cfg)
    assert not [d for d in again if d.label in WORDS], again
