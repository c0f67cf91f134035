"""Run a LiveSession without a UI: detections to stdout (text or JSON lines), the rest to stderr."""
from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from realtime.engine import Detection, EngineStats
from realtime.session import LiveSession


def format_detection(d: Detection, as_json: bool, realtime: bool = True) -> str:
    """One line per detection. Latency only for real-time sources: in a fast replay it is queueing time."""
    if as_json:
        rec = d.to_json()
        if not realtime:
            rec["latency_ms"] = None
        return json.dumps({"event": "detection", **rec})
    lat = "" if d.latency_s is None or not realtime else f"  ({d.latency_s * 1e3:.0f} ms)"
    return f"{d.time_s:9.2f} s  {d.label:<10s} {d.confidence:6.1%}{lat}"


def format_summary(stats: EngineStats, realtime: bool = True) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} ms"

    lat = (f"latency p50 {ms(stats.latency_p50_ms)}, p95 {ms(stats.latency_p95_ms)}" if realtime
           else "latency not measured (fast replay)")
    return (f"{stats.decisions} decisions over {stats.stream_s:.1f} s of audio ({stats.inferred} ran the model), "
            f"{stats.detections} detections; {lat}; "
            f"shed {stats.shed_hops} hops under overload; "
            f"dropped {stats.dropped_blocks} blocks ({stats.dropped_samples} samples)")


def run_headless(session: LiveSession, *, as_json: bool = False, duration_s: float | None = None,
                 out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print detections as they come until the source ends, `duration_s` passes, or Ctrl-C.

    Returns the exit status: 0, 1 when the source or the engine failed while running.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    t0 = time.monotonic()
    status = 0
    rt = session.source.realtime
    session.start()  # a SourceError (no device, ...) propagates: the caller owns that message
    print(f"listening: {session.source.description}; model {session.predictor.model} "
          f"on {session.predictor.describe()}; {'; '.join(session.notes)}", file=err, flush=True)
    try:
        while True:
            for det in session.poll_detections():
                print(format_detection(det, as_json, rt), file=out, flush=True)
            problem = session.check()
            if problem:
                print(f"error: {problem}", file=err, flush=True)
                status = 1
                break
            if session.finished:
                break
            if duration_s is not None and time.monotonic() - t0 >= duration_s:
                break
            time.sleep(0.02)
    except KeyboardInterrupt:
        status = 130
    finally:
        session.stop()
    for det in session.poll_detections():  # decided after the last poll
        print(format_detection(det, as_json, rt), file=out, flush=True)
    stats = session.stats()
    if as_json:
        print(json.dumps({"event": "summary", "realtime": rt, **stats.__dict__}), file=out, flush=True)
    print(format_summary(stats, rt), file=err, flush=True)
    return status
