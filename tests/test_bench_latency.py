"""python -m bench.latency: an extra ONNX file timed beside a model's backends, in the same run."""
from __future__ import annotations

import json

import pytest


def test_extra_onnx_row_is_timed_and_compared(tmp_path, monkeypatch):
    import bench.latency as bl
    from backends.export import resolve_onnx

    monkeypatch.setenv("KWS_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.setattr(bl, "bench_order", lambda: ("torch-cpu", "ort-cpu"))  # int8 would quantize for minutes
    onnx_file = resolve_onnx("dscnn", log=None)
    assert bl.main(["--models", "dscnn", "--extra", f"dscnn={onnx_file}", "--rounds", "2",
                    "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "backend_latency.json").read_text())["results"]
    extra = [r for r in rows if r["backend"] == f"ort-cpu {onnx_file}"]
    assert len(extra) == 1 and extra[0]["p50_ms"] > 0 and extra[0]["top1_agreement_vs_torch"] == 1.0
    assert extra[0]["speedup_vs_torch_cpu"] > 0 and extra[0]["weights"] == f"ONNX file {onnx_file}"
    assert f"ort-cpu {onnx_file}" in (tmp_path / "backend_latency.md").read_text()
    with pytest.raises(SystemExit):
        bl.main(["--models", "dscnn", "--extra", "dscnn", "--out", str(tmp_path)])


def test_json_carries_p10_and_the_report_is_made_from_it(tmp_path, monkeypatch):
    import bench.latency as bl

    monkeypatch.setenv("KWS_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.setattr(bl, "bench_order", lambda: ("torch-cpu", "ort-cpu"))
    assert bl.main(["--models", "dscnn", "--rounds", "2", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "backend_latency.json").read_text())
    assert data["metadata"]["command"].startswith("python -m bench.latency --models dscnn")
    assert "load_average_end" in data["metadata"] and data["metadata"]["git"]["commit"]
    ort = next(r for r in data["results"] if r["backend"] == "ort-cpu")
    assert 0 < ort["p10_ms"] <= ort["p50_ms"] <= ort["p99_ms"] and ort["speedup_vs_torch_cpu_p10"] > 0
    md = tmp_path / "backend_latency.md"
    md.unlink()
    assert bl.main(["report", str(tmp_path / "backend_latency.json")]) == 0
    assert f"| dscnn | ort-cpu | {ort['p10_ms']:.2f} | {ort['p50_ms']:.2f} |" in md.read_text()


@pytest.mark.parametrize("p50, torch_p50, met", [(2.9, 12.0, True), (3.1, 13.0, False), (2.9, 11.0, False)])
def test_the_latency_target(p50, torch_p50, met):
    from bench.latency import markdown

    rows = [{"model": "efficientnet_b0", "backend": b, "threads": 1, "weights": "w", "p10_ms": x * 0.9, "p50_ms": x,
             "p99_ms": x * 2, "speedup_vs_torch_cpu": torch_p50 / x, "speedup_vs_torch_cpu_p10": torch_p50 / x}
            for b, x in (("torch-cpu", torch_p50), ("ort-cpu", p50))]
    line = [s for s in markdown({"metadata": {}, "results": rows}).splitlines() if s.startswith("- efficientnet_b0")]
    assert len(line) == 1
    assert (": met;" in line[0]) == met and (": not met;" in line[0]) == (not met)
