"""A tiny end-to-end bench run: one random dscnn, two real backends, a handful of clips.

It goes through everything the full suite does (worker subprocesses, the fp32 reference,
streaming through the live engine, SNR mixtures, the JSON, the report), only smaller.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bench.__main__ import config_from_args, main, run_parser
from bench.matrix import MatrixConfig, quick_models, resolve_models
from zoo.checkpoint import untrained_checkpoint
from bench.noise import NoiseConfig
from bench.streaming import StreamingConfig
from bench.suite import SuiteConfig, run_suite
from kws.timing import TimingPolicy
from kws.labels import GSC_V2_WORDS, SILENCE

TINY_MATRIX = MatrixConfig(latency=TimingPolicy(warmup_runs=2, min_runs=25, max_seconds=0.3, floor_runs=5),
                           throughput=TimingPolicy(warmup_runs=1, min_runs=2, max_seconds=0.2, floor_runs=2),
                           batch_sizes=(8,), threads=(2, 1), eval_batch=16)
TINY_STREAMING = StreamingConfig(words_per_stream=4, snrs_db=(10.0,), reference_snr_db=10.0, free_seconds=20.0,
                                 lead_in_s=2.0, thresholds=(0.2, 0.6, 0.95))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A training-run folder holding a random-weight dscnn with the shipped label set (35 words + silence)."""
    import torch

    import zoo

    torch.manual_seed(0)
    model = zoo.create_model("dscnn", labels=GSC_V2_WORDS + (SILENCE,)).eval()
    folder = tmp_path_factory.mktemp("runs") / "dscnn-test"
    zoo.save_checkpoint(model, folder / "best.safetensors", {"data": "random weights (test)"})
    return folder


@pytest.fixture(scope="module")
def bench_run(run_folder: Path, tmp_path_factory) -> tuple[Path, dict]:
    import backends

    real = backends.list_backends

    def with_fake_gpu_gap():  # one backend reported unavailable, whatever this machine has
        return [dataclasses.replace(s, available=False, reason="test: pretend there is no GPU")
                if s.name == "ort-cuda" else s for s in real()]

    mp = pytest.MonkeyPatch()
    mp.setattr(backends, "list_backends", with_fake_gpu_gap)
    out = tmp_path_factory.mktemp("results")
    cfg = SuiteConfig(data_specs=("synth:tiny",), quick=True, max_clips=12, runs=(str(run_folder),),
                      models=("dscnn",), backends=("torch-cpu", "ort-cpu", "ort-cuda"), matrix=TINY_MATRIX,
                      streaming=TINY_STREAMING, noise=NoiseConfig(snrs_db=(None, 10.0)))
    try:
        path = run_suite(cfg, out, command="pytest", argv=["--quick"], log=lambda s: None)
    finally:
        mp.undo()
    return path, json.loads(path.read_text())


def rows(data: dict, kind: str) -> list[dict]:
    return [r for r in data["results"] if r["kind"] == kind]


def test_run_writes_one_json_with_metadata(bench_run):
    path, data = bench_run
    assert path.parent.name == "bench" and path.name.endswith("-quick.json")
    meta = data["metadata"]
    for key in ("git", "packages", "machine", "onnxruntime_providers", "command", "datasets", "config",
                "run_id", "load_average_start", "load_average_end", "wall_seconds"):
        assert key in meta, key
    assert meta["complete"] is True and meta["quick"] is True
    assert meta["datasets"][0]["name"] == "synth_tiny" and meta["datasets"][0]["clips"] <= 12


def test_matrix_rows_measured_and_na(bench_run, run_folder):
    _, data = bench_run
    m = rows(data, "matrix")
    name = f"dscnn@{run_folder.name}"
    ok = [r for r in m if r["model"] == name and r["status"] == "ok"]
    assert {(r["backend"], r["threads"]) for r in ok} == {("torch-cpu", 2), ("torch-cpu", 1), ("ort-cpu", 2),
                                                          ("ort-cpu", 1)}
    for r in ok:
        lat = r["latency"]
        assert lat["n"] >= 5 and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert r["load_s"] > 0 and r["first_inference_ms"] > 0
        assert r["throughput"]["8"]["clips_per_s"] > 0
        # the worker's own high-water mark: above the bare interpreter, and not the parent's (pytest + torch)
        assert r["peak_rss_mb"] > r["rss_baseline_mb"] + 50 and r["rss_baseline_mb"] > 10
        assert r["peak_rss_source"].startswith("VmHWM")
        assert r["params"] > 10_000 and r["macs"] > 0 and r["weights_bytes"] > 0
        assert r["latency_model_only"] is not None or r["model_only_reason"]
    # every other registered model and the unavailable backend are explicit n/a rows
    na = [r for r in m if r["status"].startswith("n/a")]
    assert any(r["model"] == name and r["backend"] == "ort-cuda" and "pretend there is no GPU" in r["status"]
               for r in na)
    import zoo

    others = set(zoo.list_models()) - {"dscnn"}
    assert {r["model"] for r in na} >= others
    assert all(r["status"].startswith("n/a: skipped by --quick") or "shipped" in r["status"]
               for r in na if r["model"] in others)


def test_accuracy_rows_agree_with_reference(bench_run, run_folder):
    _, data = bench_run
    acc = {r["backend"]: r for r in rows(data, "accuracy")}
    assert set(acc) == {"torch-cpu", "ort-cpu"}
    assert acc["torch-cpu"]["top1_agreement"] == 1.0  # the same fp32 PyTorch model
    for r in acc.values():
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and len(r["confusion"]) == 36
        assert sum(map(sum, r["confusion"])) + r["n_unmapped"] == r["n"]
        assert 0.0 <= r["top1_agreement"] <= 1.0


def test_streaming_and_noise_rows(bench_run):
    _, data = bench_run
    (s,) = rows(data, "streaming")
    assert s["free_stream_short"] is True and s["free_seconds"] == pytest.approx(20.0)
    assert s["per_snr"][0]["n_words"] == 4 and len(s["per_snr"][0]["curve"]) == 3
    (n,) = rows(data, "noise")
    assert [p["snr_db"] for p in n["per_snr"]] == [None, 10.0]


def test_report_from_the_run(bench_run):
    path, _ = bench_run
    out = path.parent.parent
    assert main(["report", str(path), "--out", str(out)]) == 0
    md = (out / "bench_report.md").read_text()
    assert "dscnn@" in md and "pretend there is no GPU" in md
    assert (out / "plots" / "accuracy_latency.png").is_file()
    assert (out / "bench_matrix.csv").is_file()


def test_resume_skips_what_is_done(bench_run, run_folder, tmp_path):
    path, data = bench_run
    cfg = SuiteConfig(data_specs=("synth:tiny",), quick=True, max_clips=12, runs=(str(run_folder),),
                      models=("dscnn",), backends=("torch-cpu", "ort-cpu"), matrix=TINY_MATRIX,
                      streaming=TINY_STREAMING, noise=NoiseConfig(snrs_db=(None, 10.0)))
    out = tmp_path / "results"
    (out / "bench").mkdir(parents=True)
    copy = json.loads(json.dumps(data))
    p2 = run_suite(cfg, out, resume=copy, log=lambda s: None)
    again = json.loads(p2.read_text())
    assert len(again["results"]) == len(data["results"])  # nothing measured twice
    assert again["metadata"]["resumed"]


def test_cli_arguments_make_the_quick_config(run_folder):
    a = run_parser().parse_args(["--quick", "--data", "synth:tiny", "--run", str(run_folder), "--backends",
                                 "torch-cpu", "--free-minutes", "1", "--stream-words", "5", "--threads", "1"])
    cfg = config_from_args(a)
    assert cfg.quick and cfg.models == quick_models() and cfg.backends == ("torch-cpu",)
    assert cfg.streaming.free_seconds == 60.0 and cfg.streaming.words_per_stream == 5
    assert cfg.matrix.threads == (1,) and cfg.matrix.latency.min_runs < 1000
    full = config_from_args(run_parser().parse_args([]))
    assert not full.quick and full.matrix.latency.min_runs == 1000 and full.streaming.free_seconds == 600.0
    entries = resolve_models([run_folder], only=("mobilenetv3_small_100",))
    assert any(e.source == "run" and e.ref is not None for e in entries)  # a named run is always measured
    with pytest.raises(SystemExit):
        run_parser().parse_args(["--bogus"])
    assert np.isfinite(cfg.matrix.latency.max_seconds)


def test_untrained_architectures_are_timed_but_never_scored(tmp_path, monkeypatch):
    import shutil

    import zoo.model

    # every registered model ships weights now: a weights folder with only the DS-CNN's stands for a
    # zoo where the others (a model just added, say) have none
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(zoo.model.model_dir() / "dscnn.safetensors", weights)
    monkeypatch.setattr(zoo.model, "model_dir", lambda: weights)
    entries = resolve_models(untrained_dir=tmp_path)
    by_arch = {e.arch: e for e in entries}
    # every registered model gets a measurable entry; those without trained weights are "untrained"
    assert all(e.ref is not None for e in entries)
    assert by_arch["dscnn"].source == "shipped"
    untrained = [e for e in entries if e.source == "untrained"]
    assert {e.arch for e in untrained} == set(by_arch) - {"dscnn"}
    assert all(Path(e.ref).is_file() for e in untrained)
    first = untrained[0]
    assert untrained_checkpoint(first.arch, tmp_path) == Path(first.ref)  # cached, seeded
