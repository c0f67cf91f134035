"""python -m backends.bench_latency: an extra ONNX file timed beside a model's backends, in the same run."""
from __future__ import annotations

import json

import pytest


def test_extra_onnx_row_is_timed_and_compared(tmp_path, monkeypatch):
    import backends.bench_latency as bl
    from backends.export import resolve_onnx

    monkeypatch.setenv("KWS_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.setattr(bl, "BENCH_BACKENDS", ("torch-cpu", "ort-cpu"))  # int8 would quantize for minutes
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
