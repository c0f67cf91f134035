"""The report builder turns a hand-written bench JSON into CSVs, Markdown and PNG plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.plotting import text_overlaps
from bench.report import (
    accuracy, base, build_report, latest_runs, load_runs, matrix, md_table, noise, streaming, summary_table,
)
from bench.report.sanity import sanity_findings
from kws.data import LABEL_SETS

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
    # the best model's confusion matrix is the most accurate one; no real speech here: said so
    assert "resnet18 / torch-cpu;" in md and "No real-speech data set in this run" in md
    # every plot has a one-line caption under it, and carries it in its PNG
    for p in files.plots:
        caption = Image.open(p).text["Description"]
        assert caption and "\n" not in caption and f"*{caption}*" in md
        assert "20250101T000000Z-abc-quick" in caption
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


# ----------------------------------------------------------------------------- readable at full size

MODELS7 = ("dscnn", "efficientnet_b0", "mobilenetv3_small_100", "mobilenetv3_large_100", "resnet18", "resnet34",
           "speech_embedding")
BACKENDS6 = ("torch-cpu", "torch-cuda", "ort-cpu", "ort-cuda", "ort-directml", "ort-int8")
REAL = {"name": "gsc12-dev", "spec": "folder:/data/gsc12-dev", "split": "test", "clips": 36, "subset": "all",
        "labels": LABELS, "noise": "test noise", "unknown_share_12class": 0.0}


def big_run() -> dict:
    """7 models x 6 backends on a synthetic and a real data set, with near-equal latencies that
    crowd the plots (the rerun the report must stay readable for)."""
    data = run_json()
    rows = []
    rng = np.random.default_rng(0)
    for i, model in enumerate(MODELS7):
        for j, backend in enumerate(BACKENDS6):
            rows.append(matrix_row(model, backend, 1, 1.0 + 0.05 * i + 0.02 * j, 5_000_000))
            for ds in ("synth", "gsc12-dev"):
                acc = 0.8 - 0.01 * i
                rows.append({**acc_row(model, backend, acc, [[9, 1, 2], [1, 9, 2], [0, 0, 12]]), "dataset": ds})
        curve = [{"threshold": t, "hit_rate": h, "wrong_word_rate": 0.0, "miss_rate": 1 - h, "extra_detections": 0,
                  "false_accepts": fa, "fa_per_hour": fa * 6.0}
                 for t, h, fa in ((0.2, 0.97, 30), (0.3, 0.95, 4 + i), (0.5, 0.9, 1), (0.6, 0.8 - 0.02 * i, 0),
                                  (0.8, 0.6, 0))]
        for ds in ("synth", "gsc12-dev"):
            rows.append({"kind": "streaming", "model": model, "dataset": ds, "backend": "ort-cpu",
                         "default_threshold": 0.6, "free_seconds": 600.0, "free_stream_short": False,
                         "fa_resolution_per_hour": 6.0, "fa_per_hour": 0.0, "target_fa_per_hour": 1.0,
                         "reference_snr_db": 10.0,
                         "per_snr": [{"snr_db": snr, "n_words": 100, "hit_rate": float(h), "wrong_word_rate": 0.0,
                                      "extra_detections": 0, "curve": curve, "threshold_at_target_fa": 0.6,
                                      "miss_rate_at_target_fa": 0.3}
                                     for snr, h in ((20.0, 0.9 - 0.03 * i), (10.0, 0.8 - 0.03 * i), (0.0, 0.3))]})
            rows.append({"kind": "noise", "model": model, "dataset": ds, "backend": "ort-cpu",
                         "per_snr": [{"snr_db": snr, "accuracy": float(a - 0.02 * i + rng.normal(0, 0.002)),
                                      "macro_f1": a, "n": 300}
                                     for snr, a in ((None, 0.9), (20.0, 0.85), (10.0, 0.7), (5.0, 0.5), (0.0, 0.3))]})
    data["results"] = rows
    data["metadata"]["datasets"] = [data["metadata"]["datasets"][0], REAL]
    return data


def test_every_plot_reads_with_7_models_and_6_backends(tmp_path, monkeypatch):
    p = tmp_path / "results" / "bench" / "20250103T000000Z-big.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(big_run()))
    seen: dict[str, list] = {}
    zero_ticks: list[str] = []
    save = base._save

    def checked_save(fig, path, caption, runs):
        seen[path.name] = text_overlaps(fig)
        if path.name == "miss_fa.png":
            zero_ticks.extend(t.get_text() for t in fig.axes[0].get_xticklabels())
        return save(fig, path, caption, runs)

    for section in (matrix, accuracy, streaming, noise):  # the sections that draw, each calling its own _save
        monkeypatch.setattr(section, "_save", checked_save)
    files = build_report([p], p.parent.parent)
    assert set(seen) == {"accuracy_latency.png", "latency_heatmap.png", "throughput.png", "snr.png", "miss_fa.png",
                         "confusion_best.png"}
    assert all(not pairs for pairs in seen.values()), {k: v[:5] for k, v in seen.items() if v}
    assert zero_ticks[0] == "0"  # 0 FA/h has its own tick, left of the log decades
    md = files.markdown.read_text()
    # the confusion matrix is on the real-speech set
    assert "Row-normalised confusion matrix of the most accurate model x backend on gsc12-dev" in md


def test_text_overlaps_sees_overlapping_labels():
    plt, _ = base._plt()
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "one label")
    ax.text(0.51, 0.5, "another label")
    assert text_overlaps(fig) == [("one label", "another label")]
    plt.close(fig)


# ----------------------------------------------------------------------------- sanity checks


def _runs_of(tmp_path: Path, data: dict):
    p = tmp_path / "run.json"
    p.write_text(json.dumps(data))
    return load_runs([p])


def test_sanity_flags_accuracy_rising_with_noise(tmp_path):
    data = run_json()
    noise = next(r for r in data["results"] if r["kind"] == "noise" and r["model"] == "dscnn")
    noise["per_snr"] = [{"snr_db": None, "accuracy": 0.25, "macro_f1": 0.2, "n": 171},
                        {"snr_db": 20.0, "accuracy": 0.42, "macro_f1": 0.3, "n": 171},
                        {"snr_db": 10.0, "accuracy": 0.35, "macro_f1": 0.3, "n": 171}]
    found = sanity_findings(_runs_of(tmp_path, data))
    assert [f.check for f in found] == ["noise"]
    assert "dscnn on synth: clip accuracy rises with noise, 0.250 clean -> 0.420 at 20 dB" in found[0].text
    # a rise inside sampling noise is not flagged
    noise["per_snr"][1]["accuracy"] = noise["per_snr"][2]["accuracy"] = 0.27
    assert not sanity_findings(_runs_of(tmp_path, data))


def test_sanity_flags_a_model_below_chance(tmp_path):
    data = run_json()
    for r in data["results"]:
        if r["kind"] == "accuracy" and r["model"] == "dscnn":
            # 20 of 30 clips are "yes"; the model gets 10 right: below always answering "yes"
            r.update(accuracy=10 / 30, confusion=[[5, 15, 0], [0, 3, 2], [0, 3, 2]])
    found = sanity_findings(_runs_of(tmp_path, data))
    assert [f.check for f in found] == ["chance"]
    assert "dscnn (torch-cpu, ort-cpu) on synth: accuracy 0.333 is below chance" in found[0].text
    assert "0.667" in found[0].text


def test_sanity_flags_agreement_on_near_constant_predictions(tmp_path):
    data = run_json()
    for r in data["results"]:
        if r["kind"] == "accuracy" and r["model"] == "resnet18":
            r.update(accuracy=0.4, confusion=[[10, 0, 0], [9, 1, 0], [10, 0, 0]], accuracy_12class=0.4)
        if r["kind"] == "accuracy" and r["model"] == "resnet18" and r["backend"] == "ort-cpu":
            r["backend"] = "ort-int8"
    found = [f for f in sanity_findings(_runs_of(tmp_path, data)) if f.check == "constant"]
    assert len(found) == 1 and found[0].text.startswith("resnet18 (ort-int8) on synth: top-1 agreement")
    assert "answers 'yes' to 97% of the clips" in found[0].text


def test_sanity_drops_12class_figures_on_data_without_its_words(tmp_path):
    data = run_json()
    labels = list(LABEL_SETS["35s"])
    one, two = labels.index("one"), labels.index("two")
    cm = np.zeros((36, 36), dtype=int)
    cm[one, one], cm[two, two], cm[two, one] = 10, 8, 2
    data["metadata"]["datasets"][0]["labels"] = labels
    for r in data["results"]:
        if r["kind"] == "accuracy":
            r.update(accuracy=0.9, confusion=cm.tolist(), accuracy_12class=1.0)  # an old JSON's meaningless 1.0
    p = tmp_path / "results" / "bench" / "20250101T000000Z-abc-quick.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(data))
    found = sanity_findings(load_runs([p]))
    assert {f.check for f in found} == {"12-class"} and len(found) == 2  # dscnn and resnet18
    md = build_report([p], p.parent.parent).markdown.read_text()
    assert "Warning (12-class)" in md
    table = md.split("### Accuracy on synth")[1].split("###")[0]
    assert "12-class" not in table  # not printed at all
