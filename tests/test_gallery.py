"""The signal gallery draws every class through the model's own frontend and the trainer's augmenter."""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from bench.__main__ import main as bench_main
from bench.gallery import draw_class, make_views, spectrum_db
from bench.plotting import text_overlaps
from kws.data import LABEL_SETS, open_source
from kws.frontend import FrontendConfig

DATA = "synth:tiny"


@pytest.fixture(scope="module")
def forty_band_model(tmp_path_factory):
    """A small model whose frontend is not the default 128-band log-mel."""
    import zoo

    model = zoo.create_model("dscnn", labels=LABEL_SETS["35s"], frontend=FrontendConfig(n_mels=40)).eval()
    path = zoo.save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "dscnn40.safetensors", {"training_data": "none (test)"})
    return model, path


def test_gallery_writes_one_png_per_class(tmp_path, forty_band_model):
    _, ckpt = forty_band_model
    out = tmp_path / "gallery"
    assert bench_main(["gallery", "--data", DATA, "--model", str(ckpt), "--out", str(out)]) == 0
    cs = open_source(DATA).split("test")
    present = {cs.labels[k] for k in np.unique(cs.y)}
    files = sorted(out.glob("*.png"))
    assert len(files) == len(present) and {f.stem.split("_", 1)[1] for f in files} == {p.strip("_") for p in present}
    meta = Image.open(files[0]).text
    assert meta["Command"].startswith("python -m bench gallery --data synth:tiny")
    assert "synth:tiny test-split clip" in meta["Description"] and meta["Commit"] and meta["Creation Time"]
    with pytest.raises(ValueError, match="no clips of marvin_xyz"):
        bench_main(["gallery", "--data", DATA, "--model", str(ckpt), "--classes", "marvin_xyz", "--out", str(out)])


def test_gallery_views_are_the_models_features_and_the_trainers_augmentation(forty_band_model):
    import torch

    model, _ = forty_band_model
    src = open_source(DATA)
    cs = src.split("test")
    waves = np.asarray(cs.waves[:3], np.float32) / 32768.0
    v = make_views(model, waves, src.noise, seed=0)
    assert v.feats.shape == (3, 1, 40, model.cfg.frontend.n_frames)  # the model's frontend, not 128 bands
    with torch.no_grad():
        assert np.allclose(v.feats, model.frontend(torch.from_numpy(waves)).numpy())
    assert not np.allclose(v.wave_aug, v.wave) and not np.allclose(v.feats_aug, v.feats)  # augmented
    fig = draw_class("yes", "x.wav", v, 0, 16000, "note")
    assert fig.axes[2].get_ylabel() == "band (of 40)" and "[1, 40, 63]" in fig.axes[2].get_title()
    assert text_overlaps(fig) == []


def test_spectrum_of_a_tone_peaks_at_its_frequency():
    t = np.arange(16000) / 16000
    hz, db = spectrum_db(0.5 * np.sin(2 * np.pi * 1000 * t), 16000)
    assert abs(hz[np.argmax(db)] - 1000) <= 16000 / 512 and db.max() == pytest.approx(20 * np.log10(0.5), abs=1.0)
