"""Long-running checks of the live detector: a soak (memory stays flat, drops are counted) and
the memory a file replay needs (flat whatever the file's length).

    nice -n 10 python -m realtime.soak run --minutes 30 --speed 2 --model resnet34 --out results/soak.json
    nice -n 10 python -m realtime.soak replay-memory --out results/replay_memory.json
    python -m realtime.soak report results/soak.json -o results/soak.md      # (run/replay-memory do this too)

run: words over noise (real Speech Commands words when ../shared/data is there, else tone
bursts) written to a long 16 kHz file, replayed through the app's LiveSession at `--speed`
times real time (the file is streamed, as `live.py --input` does), the model on every hop
(--vad to let the VAD skip silence). Every `--sample-s` the process RSS and the engine's
counters are recorded, and a consumer polls the decisions as the GUI does. Memory is
"flat" when no RSS sample after the warm-up exceeds the first one by more than 5 %.
Overload is allowed and counted: shed hops (decisions skipped, audio kept) and dropped audio.

replay-memory: `live.py --input FILE --headless --fast` on a 1-minute and a 1-hour 48 kHz
stereo file, each in its own process (after one unmeasured replay that fills the export
cache); the peak RSS of each (wait4) is compared.

Each command writes one JSON (kws.runinfo) and the Markdown made from it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kws.paths import PROJECT_ROOT, RESULTS

from kws.audio import SAMPLE_RATE
from backends.registry import DEFAULT_BACKEND

MAX_GROWTH_PCT = 5.0
MAX_REPLAY_EXTRA_MB = 100.0
SLOWEST = "resnet34"  # slowest zoo model on ort-cpu in results/bench_report.md (15.6 ms p50 at batch 1)


def write_stream_file(path: Path, seconds: float, sample_rate: int = SAMPLE_RATE, channels: int = 1,
                      chunk_s: float = 60.0, seed: int = 0) -> str:
    """A long words-over-noise file, written a chunk at a time (memory: one chunk). Returns its description."""
    import soundfile as sf

    from kws.audio import resample
    from realtime.measure import demo_stream

    desc = ""
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=channels, subtype="PCM_16") as f:
        done, i = 0.0, 0
        while done < seconds:
            n = min(chunk_s, seconds - done)
            x, _, desc = demo_stream(n, seed=seed + i)
            if sample_rate != SAMPLE_RATE:
                x = resample(x, SAMPLE_RATE, sample_rate)
            f.write(np.repeat(x[:, None], channels, axis=1) if channels > 1 else x)
            done += n
            i += 1
    return f"{seconds / 60:g} min, {sample_rate} Hz, {channels} channel(s), PCM16; each minute: {desc}"


# ----------------------------------------------------------------------------- soak

def rss_growth(samples: list[dict[str, float]], warmup_s: float) -> dict[str, float | None]:
    """Baseline = the first RSS sample after the warm-up; growth = the largest later excess over it."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    if len(after) < 2:
        return {"rss_baseline_mb": None, "rss_max_mb": None, "rss_final_mb": None, "rss_growth_pct": None,
                "rss_slope_mb_per_h": None}
    base = after[0]["rss_mb"]
    peak = max(s["rss_mb"] for s in after)
    t = np.array([s["t_s"] for s in after])
    r = np.array([s["rss_mb"] for s in after])
    slope = float(np.polyfit(t, r, 1)[0] * 3600) if np.ptp(t) > 0 else 0.0
    return {"rss_baseline_mb": round(base, 1), "rss_max_mb": round(peak, 1), "rss_final_mb": round(after[-1]["rss_mb"], 1),
            "rss_growth_pct": round((peak - base) / base * 100, 2), "rss_slope_mb_per_h": round(slope, 2)}


def soak(model: str, backend: str, minutes: float, speed: float, *, vad: bool = False, hop_s: float = 0.05,
         sample_s: float = 10.0, warmup_s: float | None = None, threads: int = 1,
         workdir: Path | None = None) -> dict[str, Any]:
    """Replay `minutes * speed` minutes of audio at `speed` x real time; memory and counters over time."""
    import psutil

    from realtime.engine import EngineConfig, VADConfig
    from realtime.measure import model_reference
    from realtime.predictor import load_predictor
    from realtime.session import LiveSession
    from realtime.sources import ReplaySource

    wall_s = minutes * 60
    warmup_s = min(60.0, 0.1 * wall_s) if warmup_s is None else warmup_s
    with tempfile.TemporaryDirectory(prefix="kws-soak-", dir=workdir) as tmp:
        audio = Path(tmp) / "stream.wav"
        stream_desc = write_stream_file(audio, wall_s * speed)
        ref, weights = model_reference(model, Path(tmp))
        pred = load_predictor(ref, backend, threads)
        cfg = EngineConfig(hop_s=hop_s, vad=VADConfig(enabled=vad))
        source = ReplaySource(audio, realtime=True, speed=speed, block_s=hop_s)
        session = LiveSession(pred, source, cfg)
        hop_s = session.engine.cfg.hop_s  # the streaming path decides on whole frames: its hop may differ
        proc = psutil.Process()
        samples: list[dict[str, float]] = []
        polled = 0
        t0 = time.monotonic()
        session.start()
        try:
            while not session.finished and time.monotonic() - t0 < wall_s + 120:
                time.sleep(sample_s)
                polled += len(session.poll())  # a consumer, as the GUI is
                session.poll_detections()
                st = session.stats()
                samples.append({"t_s": round(time.monotonic() - t0, 2), "rss_mb": proc.memory_info().rss / 2**20,
                                "stream_s": round(st.stream_s, 2), "decisions": st.decisions,
                                "shed_hops": st.shed_hops, "dropped_blocks": st.dropped_blocks,
                                "queue_samples": st.queue_samples})
            finished = session.wait(timeout=30)
        finally:
            session.stop()
        problem = session.check()
        st = session.stats()
    hops = round(source.duration_s / hop_s)
    row = {"model": model, "backend": backend, "weights": weights, "providers": list(pred.providers),
           "speed": speed, "hop_ms": hop_s * 1e3, "vad": vad, "threads": threads, "stream": stream_desc,
           "audio_s": round(source.duration_s, 1), "wall_s": round(time.monotonic() - t0, 1), "finished": finished,
           "error": problem, "hops": hops, "decisions": st.decisions, "inferred": st.inferred,
           "shed_hops": st.shed_hops, "skipped_hops": st.skipped_hops, "dropped_blocks": st.dropped_blocks,
           "dropped_samples": st.dropped_samples, "dropped_decisions": st.dropped_decisions,
           "decisions_polled": polled, "detections": st.detections,
           "hops_accounted": st.decisions + st.shed_hops + st.skipped_hops,
           "latency_p50_ms": st.latency_p50_ms, "latency_p95_ms": st.latency_p95_ms,
           "infer_p50_ms": st.infer_p50_ms, "queue_high_water_s": round(st.queue_high_water / SAMPLE_RATE, 3),
           "warmup_s": warmup_s, "sample_s": sample_s, **rss_growth(samples, warmup_s),
           "load_avg_end": [round(v, 2) for v in os.getloadavg()]}
    row["flat"] = row["rss_growth_pct"] is not None and row["rss_growth_pct"] <= MAX_GROWTH_PCT
    row["samples"] = samples
    return row


# ----------------------------------------------------------------------------- replay memory

def replay_peak_rss(path: Path, model: str = "dscnn", backend: str = DEFAULT_BACKEND) -> dict[str, Any]:
    """Peak RSS of `live.py --input path --headless --fast` in a process of its own."""
    cmd = [sys.executable, "-m", "cli.live", "--input", str(path), "--headless", "--fast",
           "--model", model, "--backend", backend]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    summary = next((ln for ln in err.splitlines() if "decisions over" in ln), err.strip().splitlines()[-1:])
    return {"exit": proc.returncode, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "wall_s": round(time.monotonic() - t0, 1), "summary": summary}


def replay_memory(lengths_s: tuple[float, ...] = (60.0, 3600.0), sample_rate: int = 48_000, channels: int = 2,
                  workdir: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kws-replay-", dir=workdir) as tmp:
        warm = Path(tmp) / "warm-up.wav"  # a first replay exports the model into the cache: not measured
        write_stream_file(warm, 5.0, sample_rate, channels)
        replay_peak_rss(warm)
        for seconds in lengths_s:
            path = Path(tmp) / f"replay-{seconds:g}s.wav"
            desc = write_stream_file(path, seconds, sample_rate, channels)
            size = path.stat().st_size
            row = {"seconds": seconds, "file": desc, "file_mb": round(size / 2**20, 1), **replay_peak_rss(path)}
            path.unlink()
            rows.append(row)
            print(f"{seconds:6g} s file ({row['file_mb']} MB): peak RSS {row['peak_rss_mb']} MB, "
                  f"{row['wall_s']} s, exit {row['exit']}", file=sys.stderr, flush=True)
    return rows


# ----------------------------------------------------------------------------- reports

def soak_markdown(doc: dict) -> str:
    md = doc["metadata"]
    lines = ["# Soak: the live engine over a long replay", "",
             f"Command: `{md['command']}`  ", f"Commit {str(md['git']['commit'])[:10]}, {md['time_utc']}, "
             f"{md['machine']['description']}.", "",
             "| model | backend | speed | audio | wall | hops | decided | shed | dropped blocks | latency p50 / p95 | "
             "RSS after warm-up | max | growth | slope | flat (<= 5 %) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in doc["results"]:
        lat = (f"{r['latency_p50_ms']:.1f} / {r['latency_p95_ms']:.1f} ms" if r.get("latency_p95_ms") is not None
               else "-")
        lines.append(f"| {r['model']} | {r['backend']} | {r['speed']:g}x | {r['audio_s'] / 60:.1f} min | "
                     f"{r['wall_s'] / 60:.1f} min | {r['hops']:,} | {r['decisions']:,} | {r['shed_hops']:,} | "
                     f"{r['dropped_blocks']:,} | {lat} | {r['rss_baseline_mb']} MB | {r['rss_max_mb']} MB | "
                     f"{r['rss_growth_pct']} % | {r['rss_slope_mb_per_h']} MB/h | {'yes' if r['flat'] else 'NO'} |")
    for r in doc["results"]:
        vad = "on (the model runs around speech)" if r["vad"] else "off (the model runs on every hop)"
        lines += ["", f"{r['model']}: {r['weights']}; stream: {r['stream']}; VAD {vad}, hop {r['hop_ms']:g} ms, {r['threads']} thread(s). Every hop accounted "
                      f"for: {r['hops_accounted']:,} of {r['hops']:,} (decided + shed + skipped in gaps). "
                      f"Load average at the end: {r['load_avg_end']} (a shared 2-core machine: shedding is the "
                      f"engine keeping up with less CPU than it asked for). RSS sampled every {r['sample_s']:g} s; "
                      f"the first {r['warmup_s']:g} s are warm-up."]
    return "\n".join(lines) + "\n"


def replay_markdown(doc: dict) -> str:
    md, rows = doc["metadata"], doc["results"]
    lines = ["# Replay memory: `live.py --input FILE --headless --fast`", "",
             f"Command: `{md['command']}`  ", f"Commit {str(md['git']['commit'])[:10]}, {md['time_utc']}, "
             f"{md['machine']['description']}.", "",
             "| file | size | peak RSS | wall | exit |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['file_mb']} MB | {r['peak_rss_mb']} MB | {r['wall_s']} s | {r['exit']} |")
    if len(rows) >= 2:
        extra = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
        lines += ["", f"The longest file needs {extra:+.1f} MB over the shortest (target: within "
                      f"{MAX_REPLAY_EXTRA_MB:g} MB). Before the replay source streamed its file, an hour of 48 kHz stereo "
                      f"took 2.37 GB: the whole file was decoded into memory."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m realtime.soak", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="the soak")
    r.add_argument("--model", default=SLOWEST, help=f"default {SLOWEST}, the slowest zoo model")
    r.add_argument("--backend", default=DEFAULT_BACKEND)
    r.add_argument("--minutes", type=float, default=30.0, help="wall-clock minutes (audio: minutes x speed)")
    r.add_argument("--speed", type=float, default=2.0)
    r.add_argument("--vad", action="store_true", help="let the VAD skip silence (default: the model on every hop)")
    r.add_argument("--sample-s", type=float, default=10.0)
    r.add_argument("--out", default=str(RESULTS / "soak.json"))
    m = sub.add_parser("replay-memory", help="peak RSS of a 1-minute vs a 1-hour 48 kHz stereo replay")
    m.add_argument("--out", default=str(RESULTS / "replay_memory.json"))
    rep = sub.add_parser("report", help="Markdown from a soak or replay-memory JSON")
    rep.add_argument("json")
    rep.add_argument("-o", "--output")
    return p


def _write_report(json_path: str | Path, output: str | Path | None) -> str:
    from kws.fsutil import atomic_write_text, read_json

    doc = read_json(json_path, "soak results")
    text = replay_markdown(doc) if doc["results"] and "peak_rss_mb" in doc["results"][0] else soak_markdown(doc)
    if output:
        atomic_write_text(output, text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kws.runinfo import write_results

    command = "python -m realtime.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.command == "report":
        text = _write_report(args.json, args.output)
        if not args.output:
            print(text, end="")
        return 0
    if args.command == "replay-memory":
        rows = replay_memory()
        write_results(args.out, rows, command=command)
        _write_report(args.out, Path(args.out).with_suffix(".md"))
        ok = all(r["exit"] == 0 for r in rows) and rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"] <= MAX_REPLAY_EXTRA_MB
        return 0 if ok else 1
    from realtime.predictor import ModelLoadError

    try:
        row = soak(args.model, args.backend, args.minutes, args.speed, vad=args.vad, sample_s=args.sample_s)
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_results(args.out, [row], command=command)
    print(_write_report(args.out, Path(args.out).with_suffix(".md")), end="")
    return 0 if row["flat"] and row["finished"] and not row["error"] else 1


if __name__ == "__main__":
    sys.exit(main())
