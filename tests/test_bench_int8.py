"""python -m bench.int8: rows and report from a real quantization run, model references, the report step."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from backends.clips import Clips
from tests._backend_fixtures import clips, make_run


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """A real (small) backends.quantize run on a random DS-CNN: its report as the bench reads it."""
    from backends.export import export_onnx
    from backends.quantize import VARIANTS, quantize_int8
    from zoo import load_model

    tmp = tmp_path_factory.mktemp("int8")
    model, _ = load_model(make_run(tmp))
    fp32 = tmp / "m.onnx"
    export_onnx(model, fp32, clips=Clips(clips(4), None, "synthetic"), log=None)
    variants = [v for v in VARIANTS if v.name in ("qdq-dense", "qdq-weight-bound", "qdq-dense-float-sensitive")]
    r = quantize_int8(fp32, tmp / "m.int8.onnx", calib=Clips(clips(8, seed=5), None, "syn calib"),
                      evalset=Clips(clips(24, seed=6), None, "syn eval"), variants=variants, timing_rounds=2, log=None)
    return json.loads(json.dumps(asdict(r), default=str)), str(fp32)  # as the ONNX metadata holds it


def test_rows_carry_every_variant_with_interval_and_verdict(quantized):
    from backends.quantize import MIN_AGREEMENT, MIN_SPEEDUP
    from bench.int8 import rows_for

    q, fp32 = quantized
    rows = rows_for("dscnn", "random init", q, fp32)
    assert [r["variant"] for r in rows] == ["qdq-dense", "qdq-dense-float-sensitive", "qdq-weight-bound"]
    for r in rows:
        assert r["evaluation_clips"] == 24 and r["evaluation"] == "syn eval" and r["fp32_onnx"] == fp32
        lo, hi = r["agreement_ci"]
        assert lo <= r["top1_agreement"] <= hi
        assert r["passes"] == (r["top1_agreement"] >= MIN_AGREEMENT and r["speedup_p10"] >= MIN_SPEEDUP)
        assert r["served"] == (r["variant"] == q["chosen"])
    assert rows[1]["sensitive_float"] and 0 < rows[0]["fp32_top_share"] <= 1


def test_markdown_and_report_step(quantized, tmp_path):
    from bench.int8 import main, rows_for
    from kws.runinfo import write_results

    q, fp32 = quantized
    path = write_results(tmp_path / "int8.json", rows_for("resnet18", "random init", q, fp32),
                         command="python -m bench.int8 --run resnet18=x", load_average=(1.0, 1.0, 1.0))
    assert main(["report", str(path)]) == 0
    md = (tmp_path / "int8.md").read_text()
    assert "## resnet18" in md and "| qdq-weight-bound |" in md and "served: **" in md
    assert "resnet18: speed-up >= 1.5x at >= 99% agreement: " in md  # the published target for this model


def test_model_references(tmp_path):
    from bench.int8 import model_refs

    with pytest.raises(SystemExit, match="no shipped weights"):
        model_refs(["no_such_model"], [])
    with pytest.raises(SystemExit, match="expected NAME=PATH"):
        model_refs([], ["resnet18"])
    with pytest.raises(SystemExit, match="not found"):
        model_refs([], [f"resnet18={tmp_path / 'missing'}"])
    run = make_run(tmp_path)
    assert model_refs([], [f"dscnn={run}"]) == {"dscnn": (str(run), f"run {run}")}
