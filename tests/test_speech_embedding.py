"""The speech-embedding family: parity with the original ONNX files, its checkpoints, its errors."""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from kws import pretrained
from kws.audio import CLIP_SAMPLES, INT16_SCALE, SAMPLE_RATE, load_clip
from kws.speech_mel import SpeechMelConfig

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsc12-dev"
MODELS = zoo.list_models("speech_embedding_*")


def _original_sessions():
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    folder = pretrained.models_dir()
    mel = ort.InferenceSession(str(pretrained.verified_path(pretrained.MELSPECTROGRAM, folder)), so,
                               providers=["CPUExecutionProvider"])
    emb = ort.InferenceSession(str(pretrained.verified_path(pretrained.EMBEDDING, folder)), so,
                               providers=["CPUExecutionProvider"])
    return mel, emb


def _original(clip: np.ndarray, cfg: SpeechMelConfig) -> tuple[np.ndarray, np.ndarray]:
    """openWakeWord's way, one clip at a time: mel of the padded int16-scale clip, x/10+2, windows."""
    mel_sess, emb_sess = _original_sessions()
    extra = cfg.context_samples - len(clip)
    x = np.pad(clip * INT16_SCALE, (extra // 2, extra - extra // 2)).astype(np.float32)
    mel = mel_sess.run(None, {"input": x[None]})[0][0, 0] / 10 + 2  # [frames, 32]
    wins = np.stack([mel[i:i + cfg.window_frames]
                     for i in range(0, mel.shape[0] - cfg.window_frames + 1, cfg.window_step)])
    emb = emb_sess.run(None, {"input_1": wins[..., None].astype(np.float32)})[0][:, 0, 0]  # [W, 96]
    return mel, emb


def _clips() -> tuple[np.ndarray, str]:
    files = sorted(glob.glob(str(REAL / "*" / "*.wav")))[::60]
    if files:
        return np.stack([load_clip(f) for f in files]), f"{len(files)} real gsc12-dev clips"
    # Without the real set: speech-like harmonic bursts at several levels.
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    out = [a * np.exp(-((t - 0.5) / 0.15) ** 2) * np.sin(2 * np.pi * f * t * (1 + 0.1 * t))
           + 1e-3 * rng.standard_normal(CLIP_SAMPLES) for a, f in [(0.5, 140), (0.05, 220), (0.9, 95)]]
    return np.stack(out).astype(np.float32), "3 synthetic speech-like clips"


def test_mel_and_embedding_match_the_original_onnx_files():
    clips, what = _clips()
    model = zoo.create_model("speech_embedding_mlp").eval()
    cfg = model.cfg.frontend
    with torch.no_grad():
        feats = model.frontend(torch.from_numpy(clips))
        emb = model.backbone(feats).numpy()
    assert feats.shape[1:] == cfg.feature_shape and emb.shape[1:] == (cfg.n_windows, 96)
    for i, clip in enumerate(clips):
        ref_mel, ref_emb = _original(clip, cfg)
        np.testing.assert_allclose(feats[i, 0].numpy().T, ref_mel, atol=1e-4, err_msg=what)
        # the fully convolutional pass equals the original's window-by-window embedding
        np.testing.assert_allclose(emb[i], ref_emb, rtol=1e-4, atol=1e-4 * np.abs(ref_emb).max(), err_msg=what)
    if not REAL.is_dir():
        pytest.skip(f"{REAL} absent: parity checked on synthetic clips only")


def test_real_clips_available_for_parity():
    if not REAL.is_dir():
        pytest.skip(f"{REAL} absent (real-speech parity needs ../shared/data)")
    assert len(_clips()[0]) >= 20


@pytest.mark.parametrize("name", MODELS)
def test_frozen_model_ships_its_head_only_and_fine_tuned_ships_all(tmp_path, name):
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=5).eval()
    x = 0.1 * torch.randn(2, CLIP_SAMPLES)
    frozen = zoo.save_checkpoint(model, tmp_path / "frozen.safetensors", {}, half=True)
    from safetensors import safe_open

    with safe_open(str(frozen), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("backbone.") for k in keys)  # read from the package instead
    assert frozen.stat().st_size < 1_000_000
    back, _ = zoo.load_checkpoint(frozen)
    torch.testing.assert_close(back(x), model(x), atol=2e-2, rtol=2e-2)  # fp16 head

    with torch.no_grad():
        model.backbone.convs[3].weight.mul_(1.01)  # "fine-tuned"
    tuned = zoo.save_checkpoint(model, tmp_path / "tuned.safetensors", {})
    with safe_open(str(tuned), framework="pt") as f:
        assert any(k.startswith("backbone.") for k in f.keys())
    back, _ = zoo.load_checkpoint(tuned)
    torch.testing.assert_close(back.backbone.convs[3].weight, model.backbone.convs[3].weight)


def test_wrong_sha256_is_a_clear_error(tmp_path):
    src = pretrained.verified_path(pretrained.EMBEDDING)
    bad = tmp_path / pretrained.EMBEDDING.name
    data = bytearray(src.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(pretrained.PretrainedFileError, match=r"embedding_model\.onnx: sha256 .* differs.*--force-reinstall"):
        pretrained.verified_path(pretrained.EMBEDDING, tmp_path)
    with pytest.raises(pretrained.PretrainedFileError, match="melspectrogram.onnx.* is missing"):
        pretrained.verified_path(pretrained.MELSPECTROGRAM, tmp_path)


def test_missing_or_other_version_of_the_package_is_a_clear_error(monkeypatch):
    import importlib.metadata as md

    real = md.version

    def fake(version):
        def f(name):
            if name == pretrained.PACKAGE:
                if version is None:
                    raise md.PackageNotFoundError(name)
                return version
            return real(name)
        return f

    monkeypatch.setattr(md, "version", fake(None))
    with pytest.raises(pretrained.PretrainedFileError, match=r"openwakeword package is not installed.*==0\.4\.0"):
        pretrained.models_dir()
    monkeypatch.setattr(md, "version", fake("0.6.0"))
    with pytest.raises(pretrained.PretrainedFileError, match=r"openwakeword 0\.6\.0 is installed.*exactly 0\.4\.0"):
        pretrained.models_dir()


def test_another_family_cannot_initialise_this_one(tmp_path):
    from training.config import ConfigError
    from training.trainer import init_from

    other = zoo.save_checkpoint(zoo.create_model("dscnn", num_classes=3), tmp_path / "dscnn.safetensors")
    with pytest.raises(ConfigError, match=r"dscnn\.safetensors: holds a dscnn checkpoint.*--model dscnn"):
        init_from(zoo.create_model("speech_embedding_mlp", num_classes=3), str(other))


def test_pitch_warp_follows_the_slaney_band_centres():
    """band_position maps each band centre to its index, and frequencies in between in between."""
    fe = zoo.create_model("speech_embedding_mlp").frontend
    c = fe.band_hz
    np.testing.assert_allclose(fe.band_position(c).numpy(), np.arange(len(c)), atol=1e-4)
    mid = fe.band_position((c[:-1] + c[1:]) / 2).numpy()
    np.testing.assert_allclose(mid, np.arange(len(c) - 1) + 0.5, atol=1e-4)
    assert 50 < float(c[0]) < 200 and 3000 < float(c[-1]) < 4000  # about 60 Hz - 3.8 kHz


def test_cli_reports_a_broken_pretrained_file_in_one_line(tmp_path, monkeypatch, capsys):
    from cli import train

    monkeypatch.setattr(pretrained, "models_dir", lambda: tmp_path)  # the package's folder, emptied
    pretrained._initializers.cache_clear()
    try:
        rc = train.main(["--model", "speech_embedding_mlp", "--data", "synth:tiny", "--epochs", "1",
                         "--out", str(tmp_path / "run"), "--no-progress"])
    finally:
        pretrained._initializers.cache_clear()
    assert rc == 2
    err = capsys.readouterr().err
    assert "train.py: error:" in err and "missing from the installed openwakeword package" in err
    assert "--force-reinstall openwakeword==0.4.0" in err and len(err.strip().splitlines()) == 1
