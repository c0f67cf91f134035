"""Measure the live detector: mic-to-decision latency, decisions/s and CPU use, in real time.

    python -m realtime.measure                       # efficientnet_b0 on ort-cpu, dscnn on ort-cpu and ort-int8
    python -m realtime.measure --configs dscnn:torch-cpu --seconds 10
    python -m realtime.measure --configs speech_embedding_mlp:ort-cpu,dscnn:ort-cpu --paths streaming,window \
        --out results/live_streaming                # the streaming path beside the full-window path

Paths (`--paths`): `streaming`, the model's streaming form (realtime.engine: frames once per hop,
the speech embedding once per 80 ms), and `window`, the whole last second every hop. Both run
the same model at the same hop (the streaming form's: 48 ms for log-mel models, which answer
on whole 16 ms frames; 50 ms otherwise), one after the other on the same stream, so their CPU
per hop (process CPU time / decisions) and their time in the model per hop compare directly.

A speech stream (real Speech Commands words from ../shared/data/gsc12-dev when present, one
every `--spacing` seconds over quiet noise) is replayed in real time through the same
LiveSession the app uses: block i is handed over when its newest sample would have left a
sound card, so the latency measured (newest sample entered the engine -> decision) is the
one a microphone gets. CPU is the process's CPU time over wall time (100 % = one core),
audio thread and all. Each configuration runs with the VAD (the model runs only around
speech, as in use) and without it (the model runs every hop: the worst case).

Latency and CPU do not depend on the weights' values: when a model has no shipped weights
yet, a randomly initialised checkpoint of the same architecture is measured (and marked so).
Writes results/live_latency.json (+ .md).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kws.audio import SAMPLE_RATE
from backends.registry import backend_spec
from kws.paths import GSC12_DEV, RESULTS

from realtime.engine import Decision, EngineConfig, VADConfig, stream_hop_s
from realtime.predictor import ModelLoadError, load_predictor
from realtime.session import LiveSession
from realtime.sources import ReplaySource

DEMO_WORDS = ("yes", "stop", "left", "go", "up", "no", "right", "down", "on", "off")
TARGETS = {"decisions_per_s": 20.0, "latency_p95_ms": 60.0, "cpu_pct_tiny": 15.0,
           "streaming_cpu_per_hop_vs_window": 1 / 3}


def demo_stream(seconds: float, spacing_s: float = 3.0, data_dir: Path = GSC12_DEV, seed: int = 0,
                noise_db: float = -55.0) -> tuple[np.ndarray, list[tuple[str, float]], str]:
    """Words every `spacing_s` over white noise; real clips when `data_dir` exists, else tone bursts.

    Returns (wave, [(word, onset_s)], description).
    """
    from kws.audio import load_clip

    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    x = (rng.standard_normal(n) * 10 ** (noise_db / 20)).astype(np.float32)
    events: list[tuple[str, float]] = []
    real = data_dir.is_dir()
    t, i = 0.5, 0
    while t + 1.0 <= seconds:
        word = DEMO_WORDS[i % len(DEMO_WORDS)]
        if real:
            files = sorted((data_dir / word).glob("*.wav"))
            clip = load_clip(files[(i // len(DEMO_WORDS)) % len(files)])
        else:  # no real speech here: a 0.5 s tone burst per word keeps the VAD duty cycle realistic
            k = np.arange(SAMPLE_RATE // 2)
            clip = (0.2 * np.hanning(k.size) * np.sin(2 * np.pi * (300 + 100 * i % 1000) * k / SAMPLE_RATE))
        s = round(t * SAMPLE_RATE)
        x[s : s + clip.size] += clip[: n - s].astype(np.float32)
        events.append((word, t))
        t += spacing_s
        i += 1
    desc = (f"{len(events)} real Speech Commands words from gsc12-dev" if real else f"{len(events)} tone bursts") + \
        f", one every {spacing_s:g} s, over {noise_db:g} dBFS white noise"
    return x, events, desc


def model_reference(name: str, workdir: Path) -> tuple[str, str]:
    """(reference for create_backend, weights description): shipped weights or a random-init checkpoint."""
    from zoo.checkpoint import shipped_or_untrained

    return shipped_or_untrained(name, workdir)


def measure_one(pred, wave: np.ndarray, cfg: EngineConfig) -> dict[str, Any]:
    import psutil

    times: list[float] = []

    def on_decision(d: Decision) -> None:
        times.append(time.perf_counter())

    src = ReplaySource(wave=wave, realtime=True, block_s=cfg.hop_s, name="measure")
    session = LiveSession(pred, src, cfg, on_decision=on_decision)
    proc = psutil.Process()
    c0, t0 = proc.cpu_times(), time.perf_counter()
    session.start()
    finished = session.wait(timeout=wave.size / SAMPLE_RATE + 60)
    t1, c1 = time.perf_counter(), proc.cpu_times()
    session.stop()
    problem = session.check()
    if problem or not finished:
        raise RuntimeError(problem or "the replay did not finish")
    stats = session.stats()
    infer = np.asarray(session.engine.infer_times()) * 1e3
    lat = np.asarray(session.engine.latencies(inferred_only=True)) * 1e3
    lat_all = np.asarray(session.engine.latencies(inferred_only=False)) * 1e3
    wall = t1 - t0
    cpu = (c1.user - c0.user + c1.system - c0.system) / wall * 100
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0

    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 2) if a.size else None

    return {
        "decisions": stats.decisions, "inferred": stats.inferred,
        "inferred_fraction": round(stats.inferred / max(1, stats.decisions), 3),
        "decisions_per_s": round(rate, 2),
        "latency_p50_ms": pct(lat, 50), "latency_p95_ms": pct(lat, 95), "latency_max_ms": pct(lat, 100),
        "latency_all_p50_ms": pct(lat_all, 50), "latency_all_p95_ms": pct(lat_all, 95),
        "infer_p50_ms": None if stats.infer_p50_ms is None else round(stats.infer_p50_ms, 2),
        "infer_mean_ms": round(float(infer.mean()), 3) if infer.size else None,
        "infer_p95_ms": pct(infer, 95),
        "cpu_pct_one_core": round(cpu, 1), "wall_s": round(wall, 2),
        "cpu_ms_per_hop": round((c1.user - c0.user + c1.system - c0.system) * 1e3 / max(1, stats.decisions), 3),
        "dropped_blocks": stats.dropped_blocks, "detections": stats.detections,
        "path": "streaming" if session.engine.stream is not None else "window",
        "hop_ms": session.engine.cfg.hop_s * 1e3,
    }


def run(models: list[tuple[str, str]], seconds: float, spacing: float, threads: int,
        paths: Sequence[str] = ("window",)) -> tuple[list[dict], dict]:
    wave, events, desc = demo_stream(seconds, spacing)
    rows: list[dict] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kws-measure-") as tmp:
        refs: dict[str, tuple[str, str]] = {}
        for name, backend in models:
            if name not in refs:
                refs[name] = model_reference(name, Path(tmp))
            ref, weights = refs[name]
            try:
                pred = load_predictor(ref, backend, threads)
            except ModelLoadError as e:
                print(f"skip {name} on {backend}: {e}", file=sys.stderr)
                rows.append({"model": name, "backend": backend, "skipped": str(e)})
                continue
            hop = EngineConfig().hop_s
            if pred.open_stream is not None:  # both paths at the hop the streaming form allows
                hop = stream_hop_s(pred.open_stream().spec.hop_multiple, hop)
            for vad in (True, False):
                by_path = {}
                for path in paths:
                    if path == "streaming" and pred.open_stream is None:
                        print(f"skip {name} streaming: {pred.stream_note}", file=sys.stderr)
                        continue
                    cfg = EngineConfig(hop_s=hop, vad=VADConfig(enabled=vad), streaming=path == "streaming")
                    print(f"{name} on {pred.describe()}, {path} path, VAD {'on' if vad else 'off'}: {seconds:g} s in "
                          f"real time…", file=sys.stderr, flush=True)
                    r = measure_one(pred, wave, cfg)
                    row = {"model": name, "backend": pred.backend, "providers": list(pred.providers),
                           "device": pred.device, "precision": pred.precision, "weights": weights, "threads": threads,
                           "vad": vad, **r}
                    row["meets"] = {
                        "decisions_per_s>=20": r["dropped_blocks"] == 0 and r["decisions_per_s"] >= 19.8,
                        "latency_p95<=60ms": r["latency_p95_ms"] is not None and r["latency_p95_ms"] <= 60.0,
                        "cpu<=15%": r["cpu_pct_one_core"] <= 15.0,
                    }
                    by_path[path] = row
                    rows.append(row)
                    print("  " + ", ".join(f"{k}={row[k]}" for k in ("decisions_per_s", "latency_p50_ms",
                                                                   "latency_p95_ms", "cpu_ms_per_hop", "infer_mean_ms",
                                                                   "cpu_pct_one_core", "dropped_blocks")),
                          file=sys.stderr)
                if {"streaming", "window"} <= set(by_path):
                    s, w = by_path["streaming"], by_path["window"]
                    s["vs_window"] = {"cpu_per_hop": round(s["cpu_ms_per_hop"] / w["cpu_ms_per_hop"], 3),
                                      "model_per_hop": round(s["infer_mean_ms"] / w["infer_mean_ms"], 3)
                                      if s["infer_mean_ms"] and w["infer_mean_ms"] else None}
                    s["meets"]["cpu_per_hop<=1/3_of_window"] = s["vs_window"]["cpu_per_hop"] <= 1 / 3
    extra = {"stream": desc, "stream_s": seconds, "load_avg_before": [round(v, 2) for v in load_before],
             "load_avg_after": [round(v, 2) for v in os.getloadavg()],
             "latency_definition": "newest sample of the hop entered the engine (real-time replay hands each 50 ms "
                                   "block over when its last sample would leave a sound card) -> decision made; "
                                   "p50/p95 over decisions that ran the model",
             "cpu_definition": "process CPU time (all threads) / wall time; 100 % = one core",
             "targets": TARGETS}
    return rows, extra


def write_markdown(path: Path, rows: list[dict], meta: dict) -> None:
    from kws.fsutil import atomic_write_text

    lines = ["# Live detector: latency, decisions/s, CPU", "",
             f"Machine: {meta['machine']['description']}. Load average before/after: "
             f"{meta['load_avg_before']} / {meta['load_avg_after']} (the cores are shared; figures include contention).",
             f"Stream: {meta['stream']}, {meta['stream_s']:g} s, replayed in real time through the app's engine.",
             f"Latency: {meta['latency_definition']}. CPU: {meta['cpu_definition']}.",
             "Targets: >= 20 decisions/s, <= 60 ms p95, <= 15 % of one core with the tiny/int8 model.", "",
             "| model | backend (provider) | weights | path | hop | VAD | model runs | decisions/s | latency p50 | "
             "p95 | model per hop (mean) | CPU per hop | streaming / window CPU per hop | CPU (1 core) | dropped |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['backend']} | — | — | skipped: {r['skipped'][:80]} | | | | | | |")
            continue
        prov = r["providers"][0] if r["providers"] else "?"
        if r.get("precision") and backend_spec(r["backend"]).precision != "fp32":  # what an int8 backend served
            prov += f", {r['precision']}"
        w = "shipped" if r["weights"].startswith("shipped") else "random init"
        ratio = r.get("vs_window", {}).get("cpu_per_hop")
        lines.append(f"| {r['model']} | {r['backend']} ({prov}) | {w} | {r.get('path', 'window')} | "
                     f"{r.get('hop_ms', 50):g} ms | {'on' if r['vad'] else 'off'} | "
                     f"{r['inferred_fraction']:.0%} of hops | {r['decisions_per_s']:.1f} | {r['latency_p50_ms']} ms | "
                     f"{r['latency_p95_ms']} ms | {r.get('infer_mean_ms')} ms | {r.get('cpu_ms_per_hop')} ms | "
                     f"{'–' if ratio is None else f'{ratio:.2f}'} | {r['cpu_pct_one_core']:.1f} % | "
                     f"{r['dropped_blocks']} |")
    lines += ["", "`model runs`: share of hops on which the VAD let the model run (VAD off: every hop, the worst case).",
              "`model per hop`: mean time in the model (predict on the window, or the stream model's answer) per "
              "decided hop; `CPU per hop`: the process's CPU time (audio replay and engine threads included) over "
              "the decisions made; the ratio compares the streaming path with the full-window path of the same model "
              "at the same hop, measured one after the other in this run (target: <= 1/3).",
              "ort-int8 `fp32`: the backend serves the fp32 graph when no int8 variant of the model was both faster "
              "and as accurate on this CPU (its export log says which variants it tried).",
              "Regenerate: `" + meta["command"] + "`.", ""]
    atomic_write_text(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="efficientnet_b0:ort-cpu,dscnn:ort-cpu,dscnn:ort-int8",
                   help="comma-separated model:backend pairs")
    p.add_argument("--seconds", type=float, default=20.0, help="stream length per configuration")
    p.add_argument("--spacing", type=float, default=3.0, help="seconds between words")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--paths", default="window", help="comma-separated: streaming, window (default: window)")
    p.add_argument("--out", default=str(RESULTS / "live_latency"), help="output path without suffix")
    args = p.parse_args(argv)
    models = [tuple(c.split(":", 1)) for c in args.configs.split(",") if c]
    paths = tuple(x.strip() for x in args.paths.split(",") if x.strip())
    if set(paths) - {"streaming", "window"}:
        p.error(f"--paths: unknown path(s) {sorted(set(paths) - {'streaming', 'window'})}")
    rows, extra = run(models, args.seconds, args.spacing, args.threads, paths)  # type: ignore[arg-type]
    from kws.runinfo import run_metadata, write_results

    command = "python -m realtime.measure " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    write_results(out.with_suffix(".json"), rows, command=command.strip(), **extra)
    write_markdown(out.with_suffix(".md"), rows, run_metadata(command.strip(), **extra))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
