"""The report builder turns a hand-written bench JSON into CSVs, Markdown and PNG plots."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.report import build_report, latest_runs, load_runs, md_table, summary_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ["yes", "no", "_silence_"]


def lat(p50: float) -> dict:
    return {"n": 1000, "mean_ms": p50 * 1.1, "std_ms": 0.1, "min_ms": p50 * 0.9, "p50_ms": p50, "p90_ms": p50 * 1.2,
            "p99_ms": p50 * 1.5, "max_ms": p50 * 2, "stopped_by": "runs", "warmup_runs": 50}


def matrix_row(model: str, backend: str, threads: int, p50: float, macs: int) -> dict:
    return {"kind": "matrix", "model": model, "arch": model, "weights": "shipped", "backend": backend,
            "threads": threads, "status": "ok", "device": "cpu", "providers": ["CPUExecutionProvider"],
            "params": 1000, "macs": macs, "macs_with_frontend": macs + 10, "weights_bytes": 4000,
            "model_file": None, "model_file_bytes": None, "load_s": 0.5, "first_inference_ms": 9.0,
            "latency": lat(p50), "latency_model_only": None if backend == "ort-cpu" else lat(p50 / 2),
            "model_only_reason": "no features-in graph" if backend == "ort-cpu" else "",
            "throughput": {"1": {"clips_per_s": 1000 / p50, "batch_ms_p50": p50, "runs": 1000},
                           "32": {"clips_per_s": 2000 / p50, "batch_ms_p50": 16 * p50, "runs": 50},
                           "64": {"clips_per_s": 2500 / p50, "batch_ms_p50": 26 * p50, "runs": 50}},
            "peak_rss_mb": 400.0, "rss_baseline_mb": 300.0, "peak_rss_delta_mb": 100.0}


def acc_row(model: str, backend: str, acc: float, cm: list[list[int]]) -> dict:
    return {"kind": "accuracy", "model": model, "backend": backend, "dataset": "synth", "n": 30, "accuracy": acc,
            "macro_f1": acc - 0.01, "macro_precision": acc, "macro_recall": acc, "top1_agreement": 1.0,
            "accuracy_12class": acc, "n_unmapped": 0, "confusion": cm}


def run_json(run_id: str = "20250101T000000Z-abc-quick") -> dict:
    rows = []
    for model, base, acc in (("dscnn", 1.0, 0.8), ("resnet18", 8.0, 0.9)):
        rows.append({"kind": "model", "model": model, "arch": model, "weights": "shipped", "ref": model,
                     "params": 1000, "macs": 5_000_000, "macs_with_frontend": 6_000_000, "weights_file": "x",
                     "weights_bytes": 4000, "n_labels": 3, "checkpoint_meta": {}})
        for backend, f in (("torch-cpu", 1.0), ("ort-cpu", 0.7)):
            for threads, g in ((2, 1.0), (1, 1.6)):
                rows.append(matrix_row(model, backend, threads, base * f * g, 5_000_000))
            rows.append(acc_row(model, backend, acc, [[9, 1, 0], [1, 9, 0], [0, 0, 10]]))
        rows.append({"kind": "matrix", "model": model, "arch": model, "weights": "shipped", "backend": "torch-cuda",
                     "threads": None, "status": "n/a: CUDA is not available (no GPU)"})
    rows.append({"kind": "matrix", "model": "efficientnet_b0", "arch": "efficientnet_b0", "weights": "-",
                 "backend": "torch-cpu", "threads": None,
                 "status": "n/a: no shipped weights in zoo/weights/ and no --run folder"})
    rows.append({"kind": "matrix", "model": "resnet18", "arch": "resnet18", "weights": "shipped", "backend": "ort-int8",
                 "threads": None, "status": "error: preparing the model file failed: ParityError: int8 lost 9 %",
                 "traceback": "..."})
    rows.append({"kind": "streaming", "model": "resnet18", "dataset": "gsc12-dev",
                 "status": "error: ModelLoadError: cannot load model"})
    curve = [{"threshold": t, "hit_rate": h, "wrong_word_rate": 0.0, "miss_rate": 1 - h, "extra_detections": 0,
              "false_accepts": fa, "fa_per_hour": fa * 30.0} for t, h, fa in ((0.3, 0.95, 4), (0.6, 0.9, 1), (0.9, 0.7, 0))]
    for model in ("dscnn", "resnet18"):
        rows.append({"kind": "streaming", "model": model, "dataset": "synth", "backend": "ort-cpu", "providers": [],
                     "engine": {"threshold": 0.6}, "default_threshold": 0.6, "keywords": ["yes", "no"],
                     "noise": "test noise", "noise_rms": 0.01, "free_seconds": 120.0, "free_stream_short": True,
                     "fa_resolution_per_hour": 30.0, "false_accepts": 1, "fa_per_hour": 30.0,
                     "free_model_ran_fraction": 0.1, "target_fa_per_hour": 1.0, "reference_snr_db": 10.0,
                     "per_snr": [{"snr_db": 10.0, "n_words": 30, "stream_seconds": 100.0, "hit_rate": 0.9,
                                  "wrong_word_rate": 0.03, "miss_rate": 0.1, "extra_detections": 0,
                                  "model_ran_fraction": 0.5, "curve": curve, "threshold_at_target_fa": 0.9,
                                  "miss_rate_at_target_fa": 0.3}], "seconds": 3.0})
        rows.append({"kind": "noise", "model": model, "dataset": "synth", "backend": "ort-cpu", "noise": "test noise",
                     "per_snr": [{"snr_db": s, "accuracy": a, "macro_f1": a, "n": 27}
                                 for s, a in ((None, 0.9), (20.0, 0.85), (10.0, 0.7), (5.0, 0.5), (0.0, 0.3))],
                     "seconds": 1.0})
    meta = {"run_id": run_id, "command": "python -m bench --quick", "time_utc": "2025-01-01T00:00:00+00:00",
            "git": {"commit": "abcdef0123", "dirty": False}, "quick": True, "quick_note": "two models only",
            "machine": {"cpu": "Test CPU", "cores": {"logical": 2, "usable": 2},
                        "description": "Test CPU, 2 usable of 2 logical cores"},
            "gpu": [], "onnxruntime_providers": ["CPUExecutionProvider"], "load_average_start": [1.0, 1.0, 1.0],
            "load_average_end": [1.5, 1.0, 1.0], "wall_seconds": 100.0,
            "datasets": [{"name": "synth", "spec": "synth", "split": "test", "clips": 30, "subset": "all",
                          "labels": LABELS, "noise": "test noise"}],
            "config": {"matrix": {"latency": {"warmup_runs": 50, "min_runs": 1000, "max_seconds": 20.0,
                                              "floor_runs": 20}}}}
    return {"metadata": meta, "results": rows}


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    p = tmp_path / "results" / "bench" / "20250101T000000Z-abc-quick.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(run_json()))
    return p


def test_report_writes_csv_markdown_and_plots(run_file: Path):
    out = run_file.parent.parent
    files = build_report([run_file], out)
    md = files.markdown.read_text()
    names = {p.name for p in files.plots}
    assert names == {"accuracy_latency.png", "latency_heatmap.png", "throughput.png", "snr.png", "miss_fa.png",
                     "confusion_best.png"}
    for p in files.plots:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000
        assert f"](plots/{p.name})" in md  # embedded in the Markdown
    # hardware and the shared-machine statement
    assert "Test CPU" in md and "shared 2-core machine" in md
    assert "Quick mode" in md
    # n/a rows keep their reasons
    assert "| CUDA is not available (no GPU) | dscnn, resnet18 | torch-cuda |" in md
    assert "| no shipped weights in zoo/weights/ and no --run folder | efficientnet_b0 | torch-cpu |" in md
    # the best model's confusion matrix is the most accurate one
    assert "resnet18 / torch-cpu on synth" in md
    # failures are listed, not dropped
    assert "## Failures" in md and "int8 lost 9 %" in md and "ModelLoadError: cannot load model" in md
    # the 1 FA/h caveat uses the stream's resolution
    assert "30.0 FA/h" in md and "shorter than 10 minutes" in md
    csv = pd.read_csv(out / "bench_matrix.csv")
    assert {"model", "backend", "threads", "status", "latency_p50_ms", "latency_p99_ms", "throughput_64_clips_per_s",
            "accuracy", "macro_f1", "top1_agreement", "peak_rss_mb", "dataset"} <= set(csv.columns)
    ok = csv[(csv.model == "dscnn") & (csv.backend == "ort-cpu") & (csv.threads == 1)]
    assert ok.latency_p50_ms.iloc[0] == pytest.approx(1.0 * 0.7 * 1.6)
    assert "confusion" not in csv.columns
    noise = pd.read_csv(out / "bench_noise.csv")
    assert len(noise) == 10 and set(noise.snr) == {"clean", "20 dB", "10 dB", "5 dB", "0 dB"}
    curves = pd.read_csv(out / "bench_curves.csv")
    assert len(curves) == 6


def test_summary_uses_one_thread_rows_and_keeps_na(run_file: Path):
    runs = load_runs([run_file])
    s = summary_table(runs, "synth")
    ok = s[s.status == "ok"]
    assert set(ok.threads) == {1}  # the all-cores rows live in the threads table
    assert len(s[s.status.str.startswith("n/a")]) == 3
    row = ok[(ok.model == "resnet18") & (ok.backend == "torch-cpu")].iloc[0]
    assert row["p50 ms"] == pytest.approx(8.0 * 1.6) and row["accuracy"] == pytest.approx(0.9)
    assert row["MMACs"] == pytest.approx(5.0)


def test_later_runs_win_and_latest_is_picked(run_file: Path, tmp_path: Path):
    newer = run_json("20250102T000000Z-def")
    for r in newer["results"]:
        if r["kind"] == "matrix" and r.get("latency"):
            r["latency"]["p50_ms"] = 123.0
    p2 = run_file.parent / "20250102T000000Z-def.json"
    p2.write_text(json.dumps(newer))
    assert latest_runs(run_file.parent) == [p2]
    runs = load_runs([run_file, p2])
    m = runs.df("matrix")
    assert len(m) == len(load_runs([run_file]).df("matrix"))  # de-duplicated, not doubled
    assert all(lat["p50_ms"] == 123.0 for lat in m.latency.dropna())


def test_bad_files_name_the_file(tmp_path: Path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="x.json"):
        load_runs([bad])
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a bench result file"):
        load_runs([bad])
    with pytest.raises(FileNotFoundError, match="no bench result files"):
        latest_runs(tmp_path / "empty")


def test_md_table_escapes_and_formats():
    t = md_table(pd.DataFrame([{"a": "x|y", "b": 0.123456, "c": None, "d": 12345}]))
    assert "x\\|y" in t and "0.123" in t and "–" in t and "12,345" in t
