"""The prediction API and `python predict.py`: any file format in, labels out, errors name the file."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from kws.audio import AudioError, load_clip
from inference.predict import get_backend, predict_audio, predict_files
from tests._backend_fixtures import clips, make_run


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KWS_EXPORTS", str(tmp_path_factory.mktemp("exports")))
    d = tmp_path_factory.mktemp("audio")
    run = make_run(tmp_path_factory.mktemp("runs"))
    waves = clips(5, seed=21)
    files = []
    for i, w in enumerate(waves):
        p = d / f"clip{i}.wav"
        if i == 0:  # 8 kHz stereo, 0.6 s: resampled, downmixed, padded
            from kws.audio import resample

            w8 = resample(w[:9600], 16000, 8000)
            sf.write(p, np.stack([w8, w8], 1), 8000)
        elif i == 1:  # 2.5 s at 44.1 kHz flac: resampled, centre-cut
            from kws.audio import resample

            sf.write(d / "clip1.flac", resample(np.tile(w, 3)[:40000], 16000, 44100), 44100)
            p = d / "clip1.flac"
        else:
            sf.write(p, w, 16000, subtype="PCM_16")
        files.append(str(p))
    bad = d / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    yield run, files, str(bad)
    get_backend.cache_clear()
    mp.undo()


def test_predict_audio_any_format(setup):
    run, files, _ = setup
    be = get_backend(str(run), "ort-cpu", None)
    for f in files[:2]:
        label, conf = predict_audio(f, model=run, backend="ort-cpu")
        probs = be.predict(load_clip(f))[0]
        assert label == be.labels[int(probs.argmax())] and conf == pytest.approx(float(probs.max()), abs=1e-6)
        assert 0.0 < conf <= 1.0


def test_predict_files_batches_keep_order_and_match_torch(setup):
    run, files, _ = setup
    a = predict_files(files, model=run, backend="ort-cpu", batch_size=2)
    b = predict_files(files, model=run, backend="torch-cpu", batch_size=32)
    assert [p.path for p in a] == files
    assert [p.label for p in a] == [p.label for p in b]  # the same answer on every backend
    assert all(len(p.top) == 3 and p.top[0] == (p.label, p.confidence) for p in a)


def test_backends_are_cached(setup):
    run = str(setup[0])
    assert get_backend(run, "ort-cpu", None) is get_backend(run, "ort-cpu", None)


def test_bad_file_errors_name_the_file(setup):
    run, files, bad = setup
    with pytest.raises(AudioError, match="broken.wav"):
        predict_audio(bad, model=run)
    res = predict_files([files[2], bad, files[3]], model=run, errors="report")
    assert [r.label is None for r in res] == [False, True, False]
    assert "broken.wav" in res[1].error
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        predict_files([files[2], "missing.wav"], model=run)


def test_cli_table(setup, capsys):
    from cli.predict import main

    run, files, bad = setup
    assert main([*files[2:4], "--model", str(run), "--backend", "ort-cpu"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["file", "label", "confidence"]
    assert files[2] in out and files[3] in out
    assert main([files[2], bad, "--model", str(run)]) == 1  # an unreadable file -> non-zero
    assert "ERROR" in capsys.readouterr().out
    assert main([files[2], "--model", "no_such_model_xyz"]) == 1
    assert "unknown model" in capsys.readouterr().err
    from backends.__main__ import main as list_main

    assert list_main([]) == 0
    assert "ort-directml" in capsys.readouterr().out
