"""The soak, CI size: a minute of audio replayed at 2x real time through the live engine, the model on
every hop. Memory stays flat (<= 5 % after warm-up) and every hop is decided or counted."""
from __future__ import annotations

import pytest

from realtime.soak import MAX_GROWTH_PCT, rss_growth, soak


@pytest.mark.slow
def test_one_minute_soak_keeps_memory_flat_and_counts_every_hop(tmp_path, monkeypatch):
    monkeypatch.setenv("KWS_EXPORTS", str(tmp_path / "exports"))
    row = soak("dscnn", "ort-cpu", minutes=0.5, speed=2.0, sample_s=1.0, warmup_s=5.0, workdir=tmp_path)
    assert row["finished"] and row["error"] is None, row
    assert row["audio_s"] == pytest.approx(60.0) and len(row["samples"]) >= 20
    # decided + shed + skipped: drops are counted; the streaming path decides every 48 ms (whole 16 ms frames)
    assert row["hop_ms"] == pytest.approx(48.0) and row["hops_accounted"] == row["hops"] == 1250
    assert row["decisions"] > 0 and row["inferred"] == row["decisions"]  # VAD off: the model on every hop
    assert row["rss_growth_pct"] <= MAX_GROWTH_PCT and row["flat"], {k: v for k, v in row.items() if k != "samples"}


def test_rss_growth_is_measured_after_the_warm_up():
    samples = [{"t_s": t, "rss_mb": r} for t, r in ((1, 50.0), (5, 100.0), (6, 101.0), (7, 104.0), (8, 102.0))]
    g = rss_growth(samples, warmup_s=5)
    assert g["rss_baseline_mb"] == 100.0 and g["rss_max_mb"] == 104.0 and g["rss_growth_pct"] == 4.0
    assert rss_growth(samples[:1], warmup_s=5)["rss_growth_pct"] is None
