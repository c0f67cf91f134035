"""Reliability defects, each reproduced: the typed error or the right result, never a traceback or a NaN."""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf

from cli import live
from cli import train as train_cli
import zoo
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, AudioError, load_audio, stream_audio
from kws.fsutil import file_lock
from _crafted import PLACEMENTS, output_crafts
from tests._backend_fixtures import make_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KWS_EXPORTS", str(tmp_path_factory.mktemp("exports")))
    yield make_run(tmp_path_factory.mktemp("runs"))
    mp.undo()


def _strict_json(line: str):
    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=no_constants)


# --------------------------------------------------------------------------- 1: no NaN answer

def test_an_absurd_float_sample_is_a_typed_error(tmp_path):
    x = np.zeros(CLIP_SAMPLES, np.float32)
    x[100] = 3e38
    sf.write(tmp_path / "huge.wav", x, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="huge.wav: 1 absurd sample values") as e:
        load_audio(tmp_path / "huge.wav")
    assert e.value.kind == "range"
    x[100] = 2.0  # past full scale, but a plausible float file: kept
    sf.write(tmp_path / "loud.wav", x, SAMPLE_RATE, subtype="FLOAT")
    assert load_audio(tmp_path / "loud.wav").max() == pytest.approx(2.0)


def test_the_cli_never_prints_nan(run_dir, tmp_path, capsys):
    from cli.predict import main

    x = np.zeros(CLIP_SAMPLES, np.float32)
    sf.write(tmp_path / "ok.wav", x + 0.01, SAMPLE_RATE, subtype="FLOAT")
    x[5] = 3e38
    sf.write(tmp_path / "bad.wav", x, SAMPLE_RATE, subtype="FLOAT")
    rc = main([str(tmp_path / "bad.wav"), str(tmp_path / "ok.wav"), "--model", str(run_dir), "--json"])
    rows = [_strict_json(ln) for ln in capsys.readouterr().out.splitlines()]
    assert rc == 1 and rows[0]["label"] is None and "absurd sample values" in rows[0]["error"]
    assert rows[1]["label"] is not None and 0 < rows[1]["confidence"] <= 1


def test_every_backend_refuses_nan_scores(run_dir, monkeypatch):
    from backends import InferenceError, backend_class, backend_names, create_backend
    from backends.base import BackendBase

    for name in backend_names():  # the check lives in the one predict that no backend overrides
        assert backend_class(name).predict is BackendBase.predict, name
    waves = np.zeros((3, CLIP_SAMPLES), np.float32)
    waves[1, 7] = 3e38  # finite, but it overflows the log-mel frontend into NaN
    for name in ("torch-cpu", "ort-cpu"):
        be = create_backend(name, run_dir, **({"log": None} if name.startswith("ort") else {}))
        with pytest.raises(InferenceError, match="NaN or infinite scores for 1 of 3 clips") as e:
            be.predict(waves)
        assert e.value.rows == (1,)

    # predict_files: the clip that cannot be scored is reported, its batch mates still answered
    import inference.predict as kp

    real = kp.load_clip
    monkeypatch.setattr(kp, "load_clip", lambda p, length: waves[1] if "odd" in str(p) else real(p, length=length))
    files = [str(REPO / "tests" / f) for f in ("odd.wav",)]
    good = Path(run_dir) / "ok.wav"
    sf.write(good, np.full(CLIP_SAMPLES, 0.01, np.float32), SAMPLE_RATE)
    res = kp.predict_files([str(good), *files], model=run_dir, backend="ort-cpu", errors="report")
    assert res[0].label is not None and res[1].label is None and "NaN or infinite" in res[1].error
    with pytest.raises(InferenceError, match="odd.wav"):
        kp.predict_files(files, model=run_dir, backend="ort-cpu")
    kp.get_backend.cache_clear()


# --------------------------------------------------------------------------- unreadable files

def _deny(monkeypatch, victim: Path) -> None:
    """Every Python open of `victim` fails as a chmod 000 file does for a user that is not root."""
    import builtins

    import kws.audio as ka

    real = builtins.open

    def fake_open(file, *a, **k):
        if Path(str(file)).resolve() == victim.resolve():
            raise PermissionError(13, "Permission denied", str(file))
        return real(file, *a, **k)

    monkeypatch.setattr(ka, "open", fake_open, raising=False)


def test_an_unreadable_file_is_a_typed_error(tmp_path, monkeypatch, run_dir):
    import inference.predict as kp
    from realtime.sources import ReplaySource

    good, bad = tmp_path / "good.wav", tmp_path / "locked.wav"
    for f in (good, bad):
        sf.write(f, np.full(CLIP_SAMPLES, 0.01, np.float32), SAMPLE_RATE)
    _deny(monkeypatch, bad)
    with pytest.raises(AudioError, match=r"locked.wav: cannot be read \(Permission denied\)") as e:
        load_audio(bad)
    assert e.value.kind == "unreadable"
    with pytest.raises(AudioError, match="locked.wav: cannot be read"):
        list(stream_audio(bad))
    with pytest.raises(AudioError, match="locked.wav: cannot be read"):
        ReplaySource(bad, realtime=False)
    res = kp.predict_files([good, bad, good], model=run_dir, backend="ort-cpu", errors="report")
    assert [r.label is not None for r in res] == [True, False, True] and "Permission denied" in res[1].error
    with pytest.raises(AudioError, match="locked.wav"):
        kp.predict_audio(bad, model=run_dir)
    kp.get_backend.cache_clear()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file: the monkeypatched test above covers it")
def test_a_chmod_000_file_is_a_typed_error(tmp_path):
    bad = tmp_path / "locked.wav"
    sf.write(bad, np.full(CLIP_SAMPLES, 0.01, np.float32), SAMPLE_RATE)
    bad.chmod(0)
    with pytest.raises(AudioError, match="locked.wav: cannot be read"):
        load_audio(bad)


def test_a_symlink_loop_is_not_file_not_found(tmp_path):
    (tmp_path / "a.wav").symlink_to(tmp_path / "b.wav")
    (tmp_path / "b.wav").symlink_to(tmp_path / "a.wav")
    with pytest.raises(AudioError, match="a.wav: a symbolic link loop"):
        load_audio(tmp_path / "a.wav")
    (tmp_path / "c.wav").symlink_to(tmp_path / "nowhere.wav")
    with pytest.raises(AudioError, match=r"c.wav: file not found \(a dangling symbolic link\)"):
        load_audio(tmp_path / "c.wav")


def test_a_one_sample_file_is_refused_not_answered(tmp_path, run_dir):
    import inference.predict as kp

    sf.write(tmp_path / "one.wav", np.full(1, 0.5, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"one.wav: audio is 1 samples \(0.1 ms\) long, under the 50 ms") as e:
        load_audio(tmp_path / "one.wav")
    assert e.value.kind == "too_short"
    (res,) = kp.predict_files([tmp_path / "one.wav"], model=run_dir, backend="ort-cpu", errors="report")
    assert res.label is None and "under the 50 ms" in res.error
    kp.get_backend.cache_clear()


def test_a_prime_sample_rate_costs_what_a_common_one_does(tmp_path):
    from kws.audio import resample_ratio, resampled_length

    rate = 383_999  # prime: its exact ratio to 16 kHz is 16000/383999
    x = (0.3 * np.sin(np.arange(rate) * 2 * np.pi * 440 / rate)).astype(np.float32)
    sf.write(tmp_path / "prime.wav", x, rate, subtype="FLOAT")
    assert resample_ratio(rate) == Fraction(1, 24) and resample_ratio(44_100) == Fraction(160, 441)  # exact
    load_audio(tmp_path / "prime.wav")  # imports scipy.signal outside the measurement
    tracemalloc.start()
    try:
        t = time.process_time()
        y = load_audio(tmp_path / "prime.wav")
        cpu = time.process_time() - t
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.size == resampled_length(rate, rate) and abs(y.size - SAMPLE_RATE) <= 1
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MB"  # the file is 1.5 MB; the exact filter alone was 270 MB
    assert cpu < 1.0  # the exact filter took seconds
    assert np.array_equal(np.concatenate(list(stream_audio(tmp_path / "prime.wav", block_s=0.3))), y)


# --------------------------------------------------------------------------- 2: metadata cannot steer the constructor

def _with_config(tmp: Path, name: str, edit) -> Path:
    """A real dscnn checkpoint whose stored config JSON has been edited by `edit(dict)`."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = zoo.save_checkpoint(zoo.create_model("dscnn"), tmp / "src.safetensors")
    with safe_open(str(src), framework="pt") as f:
        md, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(md["config"])
    edit(cfg)
    md["config"] = json.dumps(cfg)
    save_file(tensors, str(tmp / name), metadata=md)
    return tmp / name


@pytest.mark.parametrize("model, kwargs", [
    ("dscnn", {"checkpoint_path": "/etc/passwd"}),
    ("resnet18", {"pretrained": True}),
    ("resnet18", {"pretrained_cfg": {"url": "http://example.org/w.pth"}}),
    ("resnet18", {"checkpoint_path": "weights.pth", "drop_path_rate": 0.1}),
    ("resnet18", {"drop_path_rate": "0.1"}),
    ("speech_embedding_mlp", {"drop_rate": 0.1}),  # this family takes no arguments at all
])
def test_checkpoint_kwargs_are_whitelisted(tmp_path, model, kwargs):
    from zoo.checkpoint import CheckpointError

    def edit(cfg):
        cfg.update(name=model, kwargs=kwargs)

    path = _with_config(tmp_path, "steer.safetensors", edit)
    with pytest.raises(CheckpointError, match=r"steer.safetensors: .*(not accepted from a file|expected float)"):
        zoo.load_checkpoint(path)


def test_accepted_kwargs_and_the_constructor_refuses_others():
    from zoo.model import ModelConfig

    cfg = ModelConfig.from_json(zoo.create_model("efficientnet_b0", num_classes=3).cfg.to_json())
    assert cfg.kwargs == {"drop_path_rate": 0.2}
    with pytest.raises(TypeError, match="not accepted from a file"):
        zoo.create_model("resnet18", checkpoint_path="elsewhere.pth")


def test_broken_checkpoints_are_one_line_errors(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from zoo.checkpoint import CheckpointError

    src = zoo.save_checkpoint(zoo.create_model("dscnn"), tmp_path / "src.safetensors")
    with safe_open(str(src), framework="pt") as f:
        md, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    head = next(k for k in tensors if k.startswith("head.") and k.endswith("weight"))
    save_file({**tensors, head: torch.zeros(3, 7)}, str(tmp_path / "shape.safetensors"), metadata=md)
    with pytest.raises(CheckpointError, match=rf"shape.safetensors: .*wrong shape, e.g. {head} \(3, 7\)"):
        zoo.load_checkpoint(tmp_path / "shape.safetensors")
    save_file({**tensors, head: torch.full_like(tensors[head], float("nan"))}, str(tmp_path / "nan.safetensors"),
              metadata=md)
    with pytest.raises(CheckpointError, match="nan.safetensors: 1 tensors hold NaN"):
        zoo.load_checkpoint(tmp_path / "nan.safetensors")
    big = _with_config(tmp_path, "fft.safetensors", lambda c: c["frontend"].update(n_fft=2**30))
    with pytest.raises(CheckpointError, match=r"fft.safetensors: .*n_fft=1073741824: expected an integer"):
        zoo.load_checkpoint(big)


DEEP = "[" * 100_000 + "]" * 100_000  # RecursionError in json.loads


def _with_metadata(tmp: Path, name: str, **values: str) -> Path:
    """A real dscnn checkpoint with raw header metadata strings replaced."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = zoo.save_checkpoint(zoo.create_model("dscnn"), tmp / "src.safetensors")
    with safe_open(str(src), framework="pt") as f:
        md, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(tmp / name), metadata={**md, **values})
    return tmp / name


@pytest.mark.parametrize("key", ["meta", "config"])
def test_deeply_nested_checkpoint_metadata_is_a_typed_error(tmp_path, key):
    from zoo.checkpoint import CheckpointError, read_header

    path = _with_metadata(tmp_path, "deep.safetensors", **{key: DEEP})
    for read in (zoo.load_checkpoint, read_header):
        with pytest.raises(CheckpointError, match=r"deep.safetensors: .*nests 100000 levels deep"):
            read(path)
    path = _with_metadata(tmp_path, "big.safetensors", meta='"' + "x" * (5 << 20) + '"')
    with pytest.raises(CheckpointError, match=r"big.safetensors: .*characters long"):
        zoo.load_checkpoint(path)


@pytest.mark.parametrize("key", ["labels", "frontend", "quantization", "thresholds", "parity", "export_tools"])
def test_deeply_nested_onnx_metadata_is_a_typed_error(tmp_path, key):
    from backends import ModelFileError, create_backend
    from backends.export import parity_passed
    from backends.meta import read_onnx_info
    from _crafted import metadata, onnx_model

    path = tmp_path / "deep.onnx"
    onnx.save(onnx_model(props={**metadata(), key: DEEP}), str(path))
    if key in ("labels", "frontend"):
        with pytest.raises(ModelFileError, match=r"deep.onnx: .*nests 100000 levels deep"):
            read_onnx_info(path)
        return
    info = read_onnx_info(path)
    assert parity_passed(info.props) is False
    if key in ("quantization", "thresholds"):
        with pytest.raises(ModelFileError, match=r"deep.onnx: metadata .* nests 100000 levels deep"):
            create_backend("ort-cpu", path, log=None).model_meta()


@pytest.mark.parametrize("accuracy, error", [
    ({"acc12": {"value": 0.5, "ci95": [0.4]}}, "IndexError"),
    ({"acc12": 5}, "AttributeError"),
    ({"acc12": {"ci95": [0.4, 0.6]}}, "KeyError"),
    ({"acc12": {"value": "high", "ci95": [0.4, 0.6]}}, "ValueError"),
])
def test_malformed_accuracy_is_a_typed_error_naming_the_file(tmp_path, monkeypatch, capsys, accuracy, error):
    from backends import create_backend
    from cli.export import main as export_main
    from zoo.checkpoint import CheckpointError

    monkeypatch.setenv("KWS_EXPORTS", str(tmp_path / "exports"))
    path = zoo.save_checkpoint(zoo.create_model("dscnn"), tmp_path / "acc.safetensors", {"accuracy": accuracy})
    with pytest.raises(CheckpointError, match=rf"acc.safetensors: malformed checkpoint metadata 'accuracy' \({error}"):
        create_backend("ort-cpu", path, log=None)
    assert export_main([str(path), "-o", str(tmp_path / "out.onnx")]) == 1
    err = capsys.readouterr().err
    assert "acc.safetensors: malformed" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.onnx").exists()


def test_a_non_default_clip_length_exports_with_parity_clips_of_that_length(tmp_path, monkeypatch):
    from backends import create_backend
    from backends.export import export_onnx

    monkeypatch.setenv("KWS_EXPORTS", str(tmp_path / "exports"))
    path = _with_config(tmp_path, "half.safetensors", lambda c: c["frontend"].update(clip_samples=8000))
    model, meta = zoo.load_checkpoint(path)
    rep = export_onnx(model, tmp_path / "half.onnx", checkpoint_meta=meta, log=None)
    assert rep.parity.top1_agreement == 1.0 and "8000-sample clips" in rep.parity.clips
    be = create_backend("ort-cpu", tmp_path / "half.onnx", log=None)
    assert be.frontend.clip_samples == 8000 and be.predict(np.zeros((2, 8000), np.float32)).shape == (2, len(be.labels))


def _crafted_checkpoints(tmp: Path) -> dict[str, Path]:
    """One hostile checkpoint of each kind the audit made, each pointing at a file beside it to read."""
    (tmp / "steer.pth").write_bytes(b"\0" * 64)
    beside = str(tmp / "steer.pth")
    return {
        "checkpoint_path": _with_config(tmp, "a.safetensors", lambda c: c.update(kwargs={"checkpoint_path": beside})),
        "pretrained_cfg file": _with_config(tmp, "b.safetensors", lambda c: c.update(
            name="resnet18", kwargs={"pretrained_cfg": {"file": beside}})),
        "labels as one string": _with_config(tmp, "c.safetensors", lambda c: c.update(labels="yes")),
        "1e6 labels": _with_config(tmp, "d.safetensors", lambda c: c.update(labels=[str(i) for i in range(10**6)])),
        "huge n_fft": _with_config(tmp, "e.safetensors", lambda c: c["frontend"].update(n_fft=2**30)),
        "deep meta": _with_metadata(tmp, "f.safetensors", meta=DEEP),
        "deep config": _with_metadata(tmp, "g.safetensors", config=DEEP),
        "meta not an object": _with_metadata(tmp, "h.safetensors", meta="[1]"),
        "no format": _with_metadata(tmp, "i.safetensors", format="other/1"),
    }


def test_crafted_checkpoints_are_typed_errors_and_open_nothing_else(tmp_path):
    from zoo.checkpoint import CheckpointError
    from _crafted import opens

    for kind, path in _crafted_checkpoints(tmp_path).items():
        with opens(tmp_path) as names:
            with pytest.raises(CheckpointError, match="^" + re.escape(f"{path}: ")) as e:
                zoo.load_checkpoint(path)
        assert set(names) <= {path.name}, (kind, names)
        assert len(str(e.value).splitlines()) == 1, (kind, e.value)


# --------------------------------------------------------------------------- 3, 4: the export cache

def test_an_unchecked_cache_entry_is_not_a_hit(run_dir):
    from backends.export import export_onnx, parity_passed, resolve_onnx
    from backends.meta import read_onnx_info

    first = resolve_onnx(run_dir, log=None)
    model, meta = zoo.load_model(run_dir)
    # what a kill during the parity check used to leave: the model at its final path, unchecked
    export_onnx(model, first, parity=False, log=None)
    assert not parity_passed(read_onnx_info(first).props)
    again = resolve_onnx(run_dir, log=None)
    assert again == first and parity_passed(read_onnx_info(again).props)


def test_parallel_exports_write_one_checked_entry(tmp_path):
    run = make_run(tmp_path / "runs")
    env = {**os.environ, "KWS_EXPORTS": str(tmp_path / "exports"), "PYTHONPATH": str(REPO)}
    code = f"from backends.export import resolve_onnx; print(resolve_onnx({str(run)!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count("exporting ") for o in outs) == 1, outs  # one export; the others waited and read it
    path = Path(outs[0].strip().splitlines()[-1])
    g = onnx.load(str(path))
    onnx.checker.check_model(g, full_check=True)
    keys = [m.key for m in g.metadata_props]
    assert keys.count("parity") == 1 and len(keys) == len(set(keys))
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_external_data_is_refused_with_a_message(run_dir, tmp_path):
    from backends import ModelFileError, create_backend
    from backends.export import resolve_onnx

    g = onnx.load(str(resolve_onnx(run_dir, log=None)))
    path = tmp_path / "ext.onnx"
    onnx.save(g, str(path), save_as_external_data=True, location="ext.data", size_threshold=1024)
    for name in ("ort-cpu", "ort-int8"):
        with pytest.raises(ModelFileError, match="ext.onnx: keeps .* tensors in external data files"):
            create_backend(name, path, log=None)


def test_the_open_tracer_sees_onnx_runtime_read_a_data_file(tmp_path):
    import onnxruntime as ort

    from _crafted import DATA_FILE, external_weight_model, opens

    path = external_weight_model(tmp_path)  # what the refusal below stops: ORT reads the file beside it
    with opens(tmp_path) as names:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert DATA_FILE in names


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_external_data_anywhere_is_refused_and_never_opened(tmp_path, placement):
    from backends import ModelFileError, create_backend

    from _crafted import DATA_FILE, onnx_model, opens, put_external

    (tmp_path / DATA_FILE).write_bytes(bytes(64))
    path = tmp_path / "outside.onnx"
    onnx.save(put_external(onnx_model(), placement), str(path))
    with opens(tmp_path) as names:
        for name in ("ort-cpu", "ort-int8"):
            with pytest.raises(ModelFileError, match=rf"outside.onnx: keeps 1 tensors in external data files "
                                                      rf".*-> '{DATA_FILE}'"):
                create_backend(name, path, log=None)
    assert set(names) <= {"outside.onnx"}, names


# --------------------------------------------------------------------------- outputs outside the contract

@pytest.mark.parametrize("craft", list(output_crafts()))
def test_out_of_contract_onnx_outputs_are_never_answers(tmp_path, craft):
    import inference.predict as kp
    from backends import InferenceError, ModelFileError, create_backend

    model, where = output_crafts()[craft]
    path = tmp_path / "contract.onnx"
    onnx.save(model, str(path))
    if where == "load":
        with pytest.raises(ModelFileError, match=r"contract.onnx: "):
            create_backend("ort-cpu", path, log=None)
        return
    be = create_backend("ort-cpu", path, log=None)
    with pytest.raises(InferenceError, match=r"contract.onnx: "):
        be.predict(np.zeros((2, CLIP_SAMPLES), np.float32))
    wav = tmp_path / "a.wav"
    sf.write(wav, np.full(CLIP_SAMPLES, 0.01, np.float32), SAMPLE_RATE)
    kp.get_backend.cache_clear()
    try:
        res = kp.predict_files([wav, wav], model=path, errors="report")
    finally:
        kp.get_backend.cache_clear()
    assert [r.label for r in res] == [None, None] and all("contract.onnx" in r.error for r in res), res


def test_check_output_holds_the_contract():
    from backends import InferenceError
    from backends.base import check_output

    good = np.array([[0.25, 0.75], [1.0, 0.0]], np.float32)
    assert check_output(good, "m", 2, 2) is good
    for bad, message in [
        (good.astype(np.int64), "is int64, not float"),
        (good[:, :1], r"shape \[2, 1\], expected \[2, 2\]"),
        (good[None], r"shape \[1, 2, 2\]"),
        (good[0], r"shape \[2\]"),
        (good[:1], r"shape \[1, 2\], expected \[2, 2\]"),
        ([[0.5, 0.5]], "is list, not an array"),
    ]:
        with pytest.raises(InferenceError, match=message) as e:
            check_output(bad, "m", 2, 2)
        assert e.value.rows == ()
    for row in ([1e30, 0.0], [-0.5, 1.5], [3.0, 1.0], [0.5, 0.4]):
        x = good.copy()
        x[1] = row
        with pytest.raises(InferenceError, match="not probabilities for 1 of 2 clips") as e:
            check_output(x, "m", 2, 2)
        assert e.value.rows == (1,)
    check_output(np.array([[0.5, 0.5 + 5e-4]], np.float32), "m", 2, 1)  # rounding is no error


# --------------------------------------------------------------------------- a bounded run

@pytest.mark.parametrize("where", ["graph", "subgraph", "function"])
def test_control_flow_is_refused_before_it_runs(tmp_path, where):
    from onnx import helper

    from backends import ModelFileError, create_backend
    from _crafted import loop_model, onnx_model

    m = loop_model()
    if where == "subgraph":  # the Loop inside another node's graph attribute
        m = onnx_model()
        loop = loop_model().graph.node[0]
        branch = helper.make_graph([loop], "then", [], [helper.make_tensor_value_info("count", onnx.TensorProto.FLOAT, [])])
        m.graph.node.insert(0, helper.make_node("Identity", ["waveform"], ["w2"], body=branch))
    elif where == "function":
        m = onnx_model()
        f = onnx.FunctionProto(name="Spin", domain="local.kws", output=["count"])
        f.node.append(loop_model().graph.node[0])
        m.functions.append(f)
    path = tmp_path / "loop.onnx"
    onnx.save(m, str(path))
    t = time.monotonic()
    with pytest.raises(ModelFileError, match=r"loop.onnx: holds 1 control-flow nodes \(e.g. Loop at "):
        create_backend("ort-cpu", path, log=None)
    assert time.monotonic() - t < 10


def test_a_wedged_session_is_abandoned_with_a_typed_error(tmp_path, monkeypatch):
    import inference.predict as kp
    from backends import InferenceError, InferenceTimeout, create_backend
    from _crafted import slow_model

    path = tmp_path / "slow.onnx"
    onnx.save(slow_model(), str(path))  # minutes of matmuls, every check passed
    be = create_backend("ort-cpu", path, log=None)
    be.timeout_s = 0.5
    t = time.monotonic()
    with pytest.raises(InferenceTimeout, match=r"slow.onnx: inference did not finish within 0.5 s"):
        be.predict(np.zeros((1, CLIP_SAMPLES), np.float32))
    assert time.monotonic() - t < 5
    assert issubclass(InferenceTimeout, InferenceError)

    # predict_files: the deadline from the environment; "report" answers each file with the error
    monkeypatch.setenv("KWS_INFERENCE_TIMEOUT_S", "0.5")
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(CLIP_SAMPLES, np.float32), SAMPLE_RATE)
    kp.get_backend.cache_clear()
    try:
        t = time.monotonic()
        res = kp.predict_files([wav, wav], model=path, batch_size=1, errors="report")
        assert [r.label for r in res] == [None, None] and all("did not finish within 0.5 s" in r.error for r in res)
        with pytest.raises(InferenceTimeout):
            kp.predict_files([wav], model=path)
        assert time.monotonic() - t < 15
    finally:
        kp.get_backend.cache_clear()


def test_ctrl_c_stops_a_running_inference(tmp_path):
    import signal

    from _crafted import slow_model

    path = tmp_path / "slow.onnx"
    onnx.save(slow_model(nodes=2000), str(path))
    code = ("import sys, numpy as np\n"
            "from backends import create_backend\n"
            f"be = create_backend('ort-cpu', {str(path)!r}, log=None)\n"
            "be.timeout_s = 600\n"
            "print('ready', flush=True)\n"
            "try:\n"
            "    be.predict(np.zeros((1, 16000), np.float32))\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
            "    sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 130 and "interrupted" in out and time.monotonic() - t < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_live_gives_up_on_a_wedged_model(tmp_path, capsys, monkeypatch):
    from _crafted import slow_model

    path = tmp_path / "slow.onnx"
    onnx.save(slow_model(), str(path))
    sf.write(tmp_path / "a.wav", np.zeros(CLIP_SAMPLES, np.float32), SAMPLE_RATE)
    monkeypatch.setenv("KWS_INFERENCE_TIMEOUT_S", "0.5")
    t = time.monotonic()
    assert live.main(["--onnx", str(path), "--input", str(tmp_path / "a.wav"), "--headless"]) != 0
    err = capsys.readouterr().err
    assert "did not finish within 0.5 s" in err and "Traceback" not in err
    assert time.monotonic() - t < 20


# --------------------------------------------------------------------------- output paths

def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_export_refuses_a_directory_and_a_file_it_did_not_write(run_dir, tmp_path, capsys):
    from cli.export import main as export_main

    (tmp_path / "out").mkdir()
    assert export_main([str(run_dir), "-o", str(tmp_path / "out")]) == 1
    _one_line_error(capsys, "out: is a directory")
    ckpt = tmp_path / "precious.onnx"
    ckpt.write_bytes(b"not a model, but someone's file")
    assert export_main([str(run_dir), "-o", str(ckpt)]) == 1
    _one_line_error(capsys, "precious.onnx: exists and is not an ONNX model; pass --force")
    assert ckpt.read_bytes() == b"not a model, but someone's file"
    assert export_main([str(run_dir), "-o", str(ckpt), "--force"]) == 0
    assert onnx.load(str(ckpt)).graph.node
    assert export_main([str(run_dir), "-o", str(ckpt)]) == 0  # an ONNX model there: a re-export replaces it


def test_a_read_only_destination_is_a_one_line_error(run_dir, tmp_path, capsys, monkeypatch):
    from backends import create_backend
    from backends.export import ExportCacheError
    from cli.export import main as export_main
    from cli.predict import main as predict_main
    from _crafted import deny_writes

    ro = tmp_path / "ro"
    ro.mkdir()
    wav = tmp_path / "a.wav"
    sf.write(wav, np.full(CLIP_SAMPLES, 0.01, np.float32), SAMPLE_RATE)
    deny_writes(monkeypatch, ro)
    assert export_main([str(run_dir), "-o", str(ro / "m.onnx")]) == 1
    _one_line_error(capsys, f"{ro / 'm.onnx'}", "Read-only file system")

    monkeypatch.setenv("KWS_EXPORTS", str(ro / "exports"))  # a cold cache on a read-only disk
    with pytest.raises(ExportCacheError, match="the exports cache is not writable .*KWS_EXPORTS"):
        create_backend("ort-cpu", run_dir, log=None)
    assert export_main([str(run_dir)]) == 1
    _one_line_error(capsys, str(ro / "exports"), "exports cache is not writable")
    import inference.predict as kp

    kp.get_backend.cache_clear()
    assert predict_main([str(wav), "--model", str(run_dir)]) == 1
    _one_line_error(capsys, str(ro / "exports"), "exports cache is not writable")
    kp.get_backend.cache_clear()

    assert train_cli.main([*RUN, "--data", "synth", "--out", str(ro / "run")]) == 2
    _one_line_error(capsys, f"--out {ro / 'run'}: cannot create the run folder (Read-only file system)")


def test_train_refuses_an_existing_file_as_its_run_folder(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert train_cli.main([*RUN, "--data", "synth", "--out", str(f)]) == 2
    _one_line_error(capsys, "notes.txt: is an existing file, not a run folder")
    assert f.read_text() == "mine"


# --------------------------------------------------------------------------- 5, 6, 7: run folders

RUN = ["--model", "dscnn", "--batch-size", "8", "--no-progress", "--epochs", "1"]


def _words_with_bad_files(root: Path) -> list[Path]:
    """Three words of six speakers (two takes each), two files per word broken; returns the broken ones."""
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    bad = []
    for k, word in enumerate(["lights", "music", "stop"]):
        (root / word).mkdir(parents=True)
        for s in range(6):
            for take in range(2):
                x = 0.3 * np.sin(2 * np.pi * 200 * (k + 1) * t) + 0.01 * rng.standard_normal(t.size)
                path = root / word / f"spk{s}_{take}.wav"
                sf.write(path, x.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
                if take == 1 and s in (0, 3):
                    path.write_bytes(path.read_bytes()[:300])  # a cut copy
                    bad.append(path)
    return bad


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folder")
    bad = _words_with_bad_files(tmp / "words")
    out = tmp / "run"
    rc = train_cli.main([*RUN, "--data", f"folder:{tmp / 'words'}", "--out", str(out), "--cache-dir", str(tmp / "c")])
    assert rc == 0
    return out, bad


def test_skipped_files_are_listed_and_counted(folder_run):
    out, bad = folder_run
    skipped = json.loads((out / "skipped.json").read_text())
    assert sorted(f["path"] for f in skipped["files"]) == sorted(str(p.resolve()) for p in bad)
    assert all("truncated" in f["problem"] and f["split"] in ("train", "validation", "test") for f in skipped["files"])
    rep = json.loads((out / "report.json").read_text())
    per_split = {s: sum(f["split"] == s for f in skipped["files"]) for s in ("train", "validation", "test")}
    assert rep["skipped_files"] == per_split and sum(per_split.values()) == len(bad)
    assert f"skipped files: {len(bad)}" in (out / "report.md").read_text()


def test_a_second_run_into_one_folder_is_refused(folder_run, tmp_path, capsys):
    out, _ = folder_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    stale = run / ".last.safetensors.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 1000)  # what a SIGKILL during a checkpoint write leaves
    with file_lock(run / ".lock"):  # another train.py is training into it
        assert train_cli.main(["--resume", str(run), "--no-progress", "--epochs", "2"]) == 2
        assert "in use by another process" in capsys.readouterr().err
        assert stale.exists()
    assert train_cli.main(["--resume", str(run), "--no-progress", "--epochs", "2"]) == 0
    assert not stale.exists()  # swept under the lock


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "train_state.safetensors").write_bytes((d / "train_state.safetensors").read_bytes()[:5000]),
     "train_state.safetensors: unreadable training state"),
    (lambda d: (d / "config.yaml").write_text(""), "config.yaml: is empty"),
    (lambda d: (d / "metrics.csv").write_text("epoch,lr\n1,abc\n"), "metrics.csv: line 2"),
    (lambda d: (d / "metrics.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe"), "metrics.csv"),
])
def test_broken_run_files_are_one_line_errors(folder_run, tmp_path, capsys, damage, message):
    out, _ = folder_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    damage(run)
    assert train_cli.main(["--resume", str(run), "--no-progress", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(run) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- 8: live.py shows the cause

def test_an_onnx_that_will_not_load_shows_the_cause(tmp_path, capsys):
    from onnx import TensorProto, helper

    from kws.frontend import FrontendConfig

    x = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", CLIP_SAMPLES])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])
    node = helper.make_node("Foo", ["waveform"], ["probs"], domain="com.example")
    m = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    for k, v in {"labels": json.dumps(["yes", "no"]), "frontend": json.dumps(FrontendConfig().to_dict()),
                 "input_kind": "waveform"}.items():
        m.metadata_props.add(key=k, value=v)
    path = tmp_path / "custom_op.onnx"
    onnx.save(m, str(path))
    sf.write(tmp_path / "a.wav", np.zeros(CLIP_SAMPLES, np.float32), SAMPLE_RATE)
    for backend in ([], ["--backend", "auto"]):
        assert live.main(["--onnx", str(path), "--input", str(tmp_path / "a.wav"), "--headless", *backend]) == 2
        err = capsys.readouterr().err
        assert "com.example:Foo(-1) is not a registered function/op" in err, err
        assert "runs PyTorch checkpoints" not in err and "Traceback" not in err


# --------------------------------------------------------------------------- 9: replay streams the file

@pytest.mark.parametrize("rate, channels, subtype", [(44_100, 2, "FLOAT"), (48_000, 1, "PCM_16"),
                                                    (16_000, 1, "PCM_24"), (8_000, 2, "PCM_16")])
def test_stream_audio_equals_load_audio(tmp_path, rate, channels, subtype):
    rng = np.random.default_rng(rate)
    x = (0.3 * rng.standard_normal((int(rate * 2.3), channels))).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, x, rate, subtype=subtype)
    blocks = list(stream_audio(path, block_s=0.37))
    assert len(blocks) > 3 and np.array_equal(np.concatenate(blocks), load_audio(path))


def test_stream_audio_finds_bad_data_in_the_middle(tmp_path):
    x = np.zeros(SAMPLE_RATE * 3, np.float32)
    x[2 * SAMPLE_RATE] = np.nan
    sf.write(tmp_path / "nan.wav", x, SAMPLE_RATE, subtype="FLOAT")
    gen = stream_audio(tmp_path / "nan.wav", block_s=1.0)
    assert next(gen).size == SAMPLE_RATE
    with pytest.raises(AudioError, match="nan.wav: 1 NaN or infinite samples"):
        list(gen)


def test_replay_memory_does_not_grow_with_the_file(tmp_path):
    from realtime.sources import ReplaySource

    minutes = 3  # 48 kHz stereo: 35 MB on disk, 69 MB as float32 had it been read whole
    path = tmp_path / "long.wav"
    with sf.SoundFile(str(path), "w", samplerate=48_000, channels=2, subtype="PCM_16") as f:
        block = (0.1 * np.sin(np.arange(48_000) / 7.0)).astype(np.float32)
        for _ in range(minutes * 60):
            f.write(np.stack([block, block], 1))
    src = ReplaySource(path, realtime=False, block_s=0.05)
    assert src.duration_s == pytest.approx(minutes * 60)
    got = []
    tracemalloc.start()
    try:
        src.start(lambda b, t: got.append(b.size))
        assert src.done.wait(120) and src.error is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(got) == minutes * 60 * SAMPLE_RATE and max(got) == 800
    assert peak < 8 * 2**20, f"replay held {peak / 2**20:.1f} MB"


# --------------------------------------------------------------------------- 10: speaker split

def test_one_oddly_named_file_keeps_the_speaker_split(tmp_path):
    from kws.data import open_source

    root = tmp_path / "words"
    for w in ("yes", "no"):
        (root / w).mkdir(parents=True)
        for s in range(10):
            for take in range(3):
                sf.write(root / w / f"spk{s}_{take}.wav", np.full(4000, 0.1, np.float32), SAMPLE_RATE)
    sf.write(root / "yes" / "recording (copy).wav", np.full(4000, 0.1, np.float32), SAMPLE_RATE)
    src = open_source(f"folder:{root}", labels="auto", cache_dir=tmp_path / "c")
    assert src.index.split_rule.startswith("speaker-disjoint (10 speakers")
    notes = " ".join(src.summary()["notes"])
    assert "1 of 61 files carry no <speaker>_<n> id" in notes and "recording (copy).wav" in notes
    speakers = {s: {e.speaker for e in src.entries(s) if e.speaker} for s in ("train", "validation", "test")}
    assert not (speakers["train"] & speakers["test"]) and not (speakers["train"] & speakers["validation"])


# --------------------------------------------------------------------------- 11: stale temporaries

def test_the_data_cache_sweeps_every_stale_key(tmp_path):
    from kws.data import open_source

    root = tmp_path / "words"
    for w in ("a", "b"):
        (root / w).mkdir(parents=True)
        for s in range(4):
            sf.write(root / w / f"spk{s}_0.wav", np.full(4000, 0.1, np.float32), SAMPLE_RATE)
    src = open_source(f"folder:{root}", labels="auto", cache_dir=tmp_path / "c")
    folder = src.cache_folder
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / ".train-0123456789abcdef0123.npy.x1y2z3.tmp"  # a killed build of another key
    live_tmp = folder / ".test-fedcba9876543210fedc.npy.a1b2c3.tmp"  # a build in progress
    stale.write_bytes(b"\0" * 60_000)
    live_tmp.write_bytes(b"\0" * 100)
    with file_lock(folder / ".test-fedcba9876543210fedc.lock"):
        src.split("train")
    assert not stale.exists() and live_tmp.exists()


# --------------------------------------------------------------------------- 12: overload sheds hops first

def test_overload_sheds_hops_before_it_drops_audio():
    import time

    from _live_fakes import LABELS, SlowModel
    from realtime.engine import DetectionEngine, EngineConfig, VADConfig

    model = SlowModel(delay_s=0.02)  # twice the 10 ms hop: 50 decisions/s possible of 100 asked
    cfg = EngineConfig(hop_s=0.01, queue_s=0.5, vad=VADConfig(enabled=False))
    eng = DetectionEngine(model, LABELS, cfg).start()
    n_hops = 200
    block = np.zeros(cfg.hop_samples, np.float32)
    for _ in range(n_hops):  # a sound card: one hop every 10 ms, never waiting
        eng.feed(block)
        time.sleep(0.01)
    eng.end_of_stream()
    assert eng.join(10) and eng.error is None
    s = eng.stats()
    assert s.dropped_blocks == 0 and s.shed_hops > 20
    assert s.decisions + s.shed_hops + s.skipped_hops == n_hops and model.calls == s.decisions
    assert s.queue_high_water < cfg.queue_samples  # the lag never reached the bound where audio is dropped
