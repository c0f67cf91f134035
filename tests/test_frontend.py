"""The log-mel frontend: shape, physics (a tone lands in its band), and agreement with
two independent computations (numpy float64, torchaudio) and with its ONNX export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kws.audio import SAMPLE_RATE
from kws.frontend import FrontendConfig, LogMel, hz_to_mel, log_mel_reference, mel_to_hz

# Standardised features are O(1); float32 vs float64 differences stay far below this.
TOL = 2e-3


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def speechlike() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, SAMPLE_RATE)).astype(np.float32) * 0.1
    x[1] *= np.linspace(0, 1, SAMPLE_RATE, dtype=np.float32)  # a ramp, so frames differ
    x[2] = tone(440) + 0.01 * x[2]
    x[3, :4000] = 0  # digital silence at the start exercises the dB floor
    return x


def test_output_shape_and_channels():
    x = torch.zeros(3, SAMPLE_RATE).normal_()
    assert LogMel()(x).shape == (3, 1, 128, 63)
    assert LogMel(FrontendConfig(in_chans=3))(x).shape == (3, 3, 128, 63)
    f3 = LogMel(FrontendConfig(in_chans=3))(x)
    assert torch.equal(f3[:, 0], f3[:, 2])  # replicated, not three different features
    assert FrontendConfig().n_frames == 63


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match="batch, samples"):
        LogMel()(torch.zeros(SAMPLE_RATE))


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0, 6000.0])
def test_pure_tone_lands_in_its_mel_band(freq: float):
    cfg = FrontendConfig()
    feats = LogMel(cfg)(torch.from_numpy(tone(freq))[None])[0, 0].numpy()
    band = int(feats.mean(axis=1).argmax())
    # centre frequencies of the 128 triangular filters
    centres = mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2))[1:-1]
    expected = int(np.abs(centres - freq).argmin())
    assert abs(band - expected) <= 1, (band, expected)


def test_matches_numpy_float64_reference(speechlike):
    ours = LogMel()(torch.from_numpy(speechlike))[:, 0].numpy()
    ref = log_mel_reference(speechlike)
    assert np.abs(ours - ref).max() < TOL


def test_export_formulation_matches_fft_formulation(speechlike):
    fe = LogMel()
    x = torch.from_numpy(speechlike)
    fast = fe(x)
    fe.use_fft = False
    factorised = fe(x)
    assert torch.allclose(fast, factorised, atol=TOL)


def test_matches_torchaudio_melspectrogram(speechlike):
    ta = pytest.importorskip("torchaudio")
    cfg = FrontendConfig()
    x = torch.from_numpy(speechlike).double()
    x = torch.cat([x[:, :1], x[:, 1:] - cfg.preemphasis * x[:, :-1]], dim=1)
    mel = ta.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, f_min=cfg.f_min,
        f_max=cfg.f_max, n_mels=cfg.n_mels, power=2.0, center=True, pad_mode="reflect", mel_scale="htk",
        norm=None, window_fn=torch.hann_window, wkwargs={"dtype": torch.float64},
    ).double()(x)
    db = 10 * torch.log10(mel.clamp(min=1e-10))
    ref = (db - db.mean(dim=(1, 2), keepdim=True)) / (db.std(dim=(1, 2), keepdim=True) + 1e-5)
    ours = LogMel()(torch.from_numpy(speechlike))[:, 0].double()
    assert (ours - ref).abs().max().item() < TOL


def test_gain_invariance(speechlike):
    # Standardisation makes the features independent of recording level.
    fe = LogMel()
    x = torch.from_numpy(speechlike[:2])
    assert torch.allclose(fe(x), fe(x * 0.05), atol=1e-3)


def test_onnx_export_runs_in_onnxruntime(tmp_path, speechlike):
    ort = pytest.importorskip("onnxruntime")
    fe = LogMel().eval()
    fe.use_fft = False
    path = tmp_path / "logmel.onnx"
    torch.onnx.export(fe, (torch.zeros(1, SAMPLE_RATE),), str(path), input_names=["wave"],
                      output_names=["feats"], dynamic_axes={"wave": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"wave": speechlike})[0]  # batch 4 through a graph traced at batch 1
    assert out.shape == (4, 1, 128, 63)
    assert np.abs(out[:, 0] - log_mel_reference(speechlike)).max() < TOL
    ops = {n.op_type for n in __import__("onnx").load(str(path)).graph.node}
    assert not ops & {"STFT", "DFT"}, ops  # ORT's spectral ops are the slow path we designed out


@pytest.mark.parametrize("cfg, radix, expected", [
    (FrontendConfig(), None, 16), (FrontendConfig(), 8, 8), (FrontendConfig(), 4, 4),
    (FrontendConfig(n_fft=800, hop_length=200, n_mels=40), None, 8),  # 16 does not divide the hop: the next radix
    (FrontendConfig(n_fft=512, hop_length=128, n_mels=64, in_chans=3), None, 16),
], ids=["default", "r8", "r4", "hop200", "n512"])
def test_every_radix_matches_the_fft_formulation(speechlike, cfg, radix, expected):
    from kws.frontend import FactorizedDFT

    fe = LogMel(cfg)
    x = torch.from_numpy(speechlike)
    fast = fe(x)
    fe.use_fft = False
    fe.dft = FactorizedDFT(cfg, radix=radix)
    assert fe.dft.radix == expected
    assert torch.allclose(fast, fe(x), atol=TOL)


def test_unfactorisable_config_is_refused():
    with pytest.raises(ValueError, match="cannot be factorised"):
        LogMel(FrontendConfig(n_fft=1000, hop_length=250))  # 250 is not a multiple of 4


def test_exported_graph_is_lean():
    # The graph ORT runs: three matmuls (sub-DFTs, butterfly, mel) and no per-bin slicing or run-time
    # shape arithmetic. The previous formulation had 62 nodes after ORT's basic optimisation, with
    # 14 slices over the mirrored bins and a Shape -> ReduceProd chain for the std's count.
    from backends.export import _trace, ort_basic_optimize

    fe = LogMel(FrontendConfig(in_chans=3)).eval()
    fe.use_fft = False
    g = ort_basic_optimize(_trace(fe, torch.zeros(2, SAMPLE_RATE), "waveform", "features", 17))
    ops = [n.op_type for n in g.graph.node]
    assert len(ops) <= 45 and ops.count("MatMul") == 3 and ops.count("Slice") <= 8, ops
    assert not set(ops) & {"Shape", "ReduceProd", "Cast", "Pow"}, ops
