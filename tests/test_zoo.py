"""The zoo: every registered model builds, runs, trains a step, exports to ONNX; pretrained files load."""
from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
import torch

import zoo
from kws.audio import CLIP_SAMPLES

MODELS = zoo.list_models()
N_CLASSES = 36


def test_registry_holds_every_family():
    assert {"efficientnet_b0", "mobilenetv3_small_100", "mobilenetv3_large_100", "resnet18", "resnet34",
            "dscnn"} <= set(MODELS)
    assert zoo.list_models("resnet*") == ["resnet18", "resnet34"]
    with pytest.raises(ValueError, match="unknown model 'nope'.*registered: "):
        zoo.create_model("nope")


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_onnx(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=N_CLASSES)
    assert model.cfg.num_classes == N_CLASSES and len(model.labels) == N_CLASSES
    x = 0.1 * torch.randn(3, CLIP_SAMPLES)

    # a training step changes the weights, with finite gradients everywhere
    model.train()
    logits = model(x)
    assert logits.shape == (3, N_CLASSES) and torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    out_layer = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    before = out_layer.weight.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, out_layer.weight)

    # eval is deterministic, and forward_features on the frontend's output is forward
    model.eval()
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(ref, model.forward_features(model.frontend(x)), atol=1e-5)
    assert torch.isfinite(ref).all()

    # ONNX: the DFT-as-Conv frontend path, run by onnxruntime, gives the same logits
    import onnxruntime as ort

    model.frontend.use_fft = False
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation notice
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["wave"], output_names=["logits"],
                          dynamic_axes={"wave": {0: "batch"}, "logits": {0: "batch"}})
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"wave": x[:2].numpy()})[0]  # another batch size than traced: dynamic axis
    np.testing.assert_allclose(out, ref[:2].numpy(), rtol=1e-3, atol=1e-4 * float(ref.abs().max()) + 1e-6)

    macs = zoo.count_macs(model)
    params = zoo.count_params(model)
    assert params > 0 and macs > params  # every conv weight is used at many positions
    if name == "dscnn":
        assert params <= 100_000, f"the tiny KWS net must stay under 100 k parameters, has {params}"


def _imagenet_state_dict(timm_name: str) -> dict[str, torch.Tensor]:
    """What a timm ImageNet checkpoint holds: 3-channel stem, 1000-class classifier."""
    import timm

    torch.manual_seed(1)
    return {k: v.clone() for k, v in timm.create_model(timm_name, num_classes=1000).state_dict().items()}


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_pretrained_file_loads_and_adapts_the_stem(tmp_path, fmt):
    from safetensors.torch import save_file

    sd = _imagenet_state_dict("mobilenetv3_small_100")
    path = tmp_path / f"mnv3.{fmt}"
    if fmt == "safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)  # a plain state dict, read back with weights_only=True
    # one log-mel plane in: the 3-channel stem is summed into a 1-channel one
    model = zoo.create_model("mobilenetv3_small_100", num_classes=N_CLASSES, in_chans=1, pretrained_file=str(path))
    assert model.cfg.frontend.in_chans == 1
    got = model.backbone.state_dict()
    assert got["conv_stem.weight"].shape[1] == 1
    torch.testing.assert_close(got["conv_stem.weight"], sd["conv_stem.weight"].sum(1, keepdim=True))
    # every other backbone tensor landed as is; the ImageNet classifier was dropped
    for key in ("blocks.2.0.conv_pw.weight", "bn1.running_var", "conv_head.weight"):
        torch.testing.assert_close(got[key], sd[key])
    assert not any(k.startswith("classifier.") for k in got)
    # the zoo's default for timm models replicates the plane 3 times: the stem loads unchanged
    rgb = zoo.create_model("mobilenetv3_small_100", num_classes=N_CLASSES, pretrained_file=str(path))
    torch.testing.assert_close(rgb.backbone.state_dict()["conv_stem.weight"], sd["conv_stem.weight"])
    # a model built without the file differs (the test above is not vacuous)
    fresh = zoo.create_model("mobilenetv3_small_100", num_classes=N_CLASSES).backbone.state_dict()
    assert not torch.equal(fresh["blocks.2.0.conv_pw.weight"], sd["blocks.2.0.conv_pw.weight"])


def test_pretrained_file_for_another_architecture_fails_clearly(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "resnet18.safetensors"
    save_file(_imagenet_state_dict("resnet18"), str(path))
    with pytest.raises(ValueError, match=r"resnet18\.safetensors: does not match"):
        zoo.create_model("mobilenetv3_small_100", pretrained_file=str(path))
    with pytest.raises(FileNotFoundError, match="missing.pth: weights file not found"):
        zoo.create_model("resnet18", pretrained_file=str(tmp_path / "missing.pth"))


def test_pretrained_offline_names_the_file_option(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf

    # Offline and with an empty cache, the hub must not be tried for long and the message must
    # tell the user what to do instead.
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(zoo.PretrainedUnavailable, match="--pretrained-file PATH"):
        zoo.create_model("mobilenetv3_small_100", pretrained=True)


@pytest.mark.parametrize("server", ["refuses", "never answers"])
def test_pretrained_without_a_reachable_hub_fails_within_5_s(tmp_path, monkeypatch, server):
    import socket
    import time

    import huggingface_hub.constants as hf

    # Not flagged offline, but the hub cannot be reached: one short probe, not the hub client's
    # ~50 s of retries, then the same message.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if server == "refuses":
        sock.close()
    else:
        sock.listen(1)  # the kernel completes the handshake; nothing ever replies
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    t0 = time.monotonic()
    try:
        with pytest.raises(zoo.PretrainedUnavailable, match="--pretrained-file PATH") as e:
            zoo.create_model("mobilenetv3_small_100", pretrained=True)
    finally:
        sock.close()
    assert time.monotonic() - t0 < 5.0
    assert f"127.0.0.1:{port}" in str(e.value)


def test_train_cli_reports_offline_pretrained(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hf

    from cli import train

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    rc = train.main(["--model", "mobilenetv3_small_100", "--pretrained", "--data", "synth:tiny",
                     "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "train.py: error:" in err and "--pretrained-file" in err


def test_default_model_is_the_shipped_model_with_the_best_real_speech_accuracy(tmp_path, monkeypatch):
    import zoo.checkpoint as ck

    monkeypatch.setattr(ck, "model_dir", lambda: tmp_path)
    assert zoo.default_model() == zoo.registry.DEFAULT_BACKBONE  # nothing shipped yet
    for name, acc in (("dscnn", 0.7), ("mobilenetv3_small_100", 0.9)):
        meta = {"accuracy": {"protocol": "cv", "acc12": {"value": acc, "ci95": [acc - 0.02, acc + 0.02]}}}
        zoo.save_checkpoint(zoo.create_model(name, num_classes=4), tmp_path / f"{name}.safetensors", meta)
    zoo.save_checkpoint(zoo.create_model("resnet18", num_classes=4), tmp_path / "resnet18.safetensors", {})
    assert zoo.default_model() == "mobilenetv3_small_100"


def test_checkpoint_meta_reads_legacy_keys_and_reaches_the_onnx_metadata():
    from backends.export import build_metadata
    from zoo.meta import CheckpointMeta

    old = {"data": "synth:400", "training": "H200, 2 min", "val_acc": 0.8, "whatever": 1}
    m = CheckpointMeta.from_dict(old)
    assert (m.training_data, m.recipe, m.val_acc) == ("synth:400", "H200, 2 min", 0.8)
    acc = {"protocol": "speaker-disjoint 5-fold CV", "acc12": {"value": 0.93, "ci95": [0.91, 0.95],
                                                             "figure": "gsc12-dev 12-class"}}
    props = build_metadata(zoo.create_model("dscnn", num_classes=3), "waveform", 17,
                           {**old, "accuracy": acc}, "x.safetensors")
    assert json.loads(props["accuracy"]) == acc and json.loads(props["training_data"]) == "synth:400"
    assert props["accuracy_summary"].startswith("93.0 % (91.0-95.0) gsc12-dev 12-class")
    assert "not measured" in build_metadata(zoo.create_model("dscnn", num_classes=3), "waveform", 17, {}, None)["accuracy"]


def test_checkpoint_metadata_has_one_schema(tmp_path):
    from zoo.meta import CheckpointMeta

    model = zoo.create_model("dscnn", num_classes=3)
    with pytest.raises(ValueError, match=r"\['notes'\] are not in zoo.meta.CheckpointMeta"):
        zoo.save_checkpoint(model, tmp_path / "a.safetensors", {"notes": "a key no reader knows"})
    assert not (tmp_path / "a.safetensors").exists()
    path = zoo.save_checkpoint(model, tmp_path / "b.safetensors", {"data": "synth", "epoch": 2})  # a legacy name
    assert zoo.read_header(path)[1] == {"training_data": "synth", "epoch": 2}
    path = zoo.save_checkpoint(model, tmp_path / "c.safetensors", CheckpointMeta(run="r", val_acc=0.5))
    assert CheckpointMeta.from_dict(zoo.read_header(path)[1]) == CheckpointMeta(run="r", val_acc=0.5)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_weight_storage_shrinks_the_file_and_loads_back_close(tmp_path, bits):
    """A model too big for the shipping limit in fp16 stores its conv/linear weights in fewer bits (zoo.wquant);
    they load back as floats that answer as the model did."""
    torch.manual_seed(0)
    model = zoo.create_model("mobilenetv3_small_100", num_classes=6).eval()
    weights = [k for k, v in model.state_dict().items() if zoo.wquant.storable(v)]
    fp16 = zoo.save_checkpoint(model, tmp_path / "fp16.safetensors", {}, half=True)
    small = zoo.save_checkpoint(model, tmp_path / "q.safetensors", {}, half=True,
                                weight_bits={k: bits for k in weights})
    assert small.stat().st_size < (0.6 if bits == 8 else 0.35) * fp16.stat().st_size
    loaded, _ = zoo.load_model(small)
    assert all(p.dtype == torch.float32 for p in loaded.state_dict().values() if p.is_floating_point())
    for k in weights[:5]:  # each value within half a step of its block's scale
        w, got = model.state_dict()[k].float(), loaded.state_dict()[k]
        assert (got - w).abs().max() <= w.abs().max() / (127 if bits == 8 else 7) / 2 + 1e-3
    from tests._backend_fixtures import clips
    from zoo.checkpoint import read_checkpoint
    from zoo.wquant import stored_bits

    assert stored_bits(read_checkpoint(small)[1]) == {k: bits for k in weights}
    x = torch.from_numpy(clips(16) / 32768.0).float()
    with torch.no_grad():
        ref, out = model(x), loaded(x)
    assert (ref.argmax(1) == out.argmax(1)).float().mean() >= 0.8


def test_plan_bits_touches_the_fewest_tensors_that_make_the_file_fit():
    from zoo import wquant

    state = {"big.weight": torch.zeros(1000, 1000), "mid.weight": torch.zeros(300, 300), "bn.bias": torch.zeros(10)}
    assert wquant.plan_bits(state, 3 * 2**20) == {}  # fp16: 2.2 MB
    assert wquant.plan_bits(state, int(1.3e6)) == {"big.weight": 8, "mid.weight": 8}
    assert wquant.plan_bits(state, int(0.8e6)) == {"big.weight": 4, "mid.weight": 8}
    with pytest.raises(ValueError, match="every weight at 4 bits"):
        wquant.plan_bits(state, 100_000)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_weights_without_their_scales_or_with_bad_ones_are_refused(tmp_path, bits):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from zoo import wquant

    model = zoo.create_model("dscnn", num_classes=4).eval()
    weights = {k: bits for k, v in model.state_dict().items() if wquant.storable(v)}
    path = zoo.save_checkpoint(model, tmp_path / "q.safetensors", {}, half=True, weight_bits=weights)
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.startswith(wquant.Q8_SCALE if bits == 8 else wquant.Q4_SCALE))
    data = key.split(".", 1)[1] if bits == 8 else wquant.Q4_DATA + key[len(wquant.Q4_SCALE):]
    cases = {"noscale": (lambda t: t.pop(key), "without their scales"),
             "negative": (lambda t: t.__setitem__(key, -t[key]), "positive finite"),
             "short": (lambda t: t.__setitem__(key, t[key][:1]), "of shape"),
             "cut": (lambda t: t.__setitem__(data, t[data][:1]), "of shape" if bits == 4 else "wrong shape")}
    for name, (change, message) in cases.items():
        bad = dict(tensors)
        change(bad)
        save_file(bad, str(tmp_path / f"{name}.safetensors"), metadata=header)
        with pytest.raises(zoo.checkpoint.CheckpointError, match=message):
            zoo.load_model(tmp_path / f"{name}.safetensors")
