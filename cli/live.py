#!/usr/bin/env python
"""Live keyword detection from the microphone or a replayed file, in a window or headless.

Usage:
  python live.py                                  # the app: the best shipped model on ort-cpu, default mic
  python live.py --model dscnn --backend ort-int8 # the tiny model, int8
  python live.py --weights runs/my_run            # a trained run folder (or a .safetensors file)
  python live.py --onnx exports/model.onnx --backend ort-cuda
  python live.py --input speech.wav               # replay a file in the app, in real time
  python live.py --input speech.wav --headless    # print the words said in it (as fast as possible)
  python live.py --weights room.safetensors       # thresholds recalibrated for your room (python -m bench calibrate)
  python live.py --weights room.safetensors --sensitivity 2   # its operating point for ~2 false accepts/h
  python live.py --headless --json --device 2     # JSON lines from input device 2, until Ctrl-C
  python live.py --list-devices
  python live.py --weights runs/my_words --save-detections saved/   # Wrong button -> saved/wrong/

Backend: `--backend` defaults to ort-cpu. A backend you name is used or refused with the
reason (no silent substitution); only when you did not name one and ort-cpu is unavailable
does it fall back to torch-cpu, and it says so. `--backend auto` prefers a GPU provider.

Streaming: a model with a streaming form (every zoo model) runs it: the log-mel frames are
computed once per hop, the speech embedding once per 80 ms, instead of the whole last second
every hop (realtime.engine). Log-mel models then decide every 48 ms (a multiple of their 16 ms
frames). `--no-streaming` recomputes the full window every hop, at the hop you ask for.

Thresholds: a model calibrated to a false-accept rate carries one threshold per word in its
metadata (`python -m bench calibrate`), and those are used, with the patience and smoothing
they were fitted at; `--threshold` sets one for every word instead. A calibration also holds
operating points along its curve (0.1 to 10 false accepts per hour): `--sensitivity FA_PER_HOUR`
takes the one nearest that rate (on a log scale), and the app's Sensitivity slider moves
between them.

Replay pacing: `--realtime` (the app's default) feeds the file at its own speed, like a
microphone; `--fast` (the default with --headless) as fast as the model allows, losing nothing.
Exit status: 0 done, 1 failed while running, 2 could not start (model, backend, device, file).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Callable, Sequence

from realtime.engine import EngineConfig
from backends.registry import DEFAULT_BACKEND, backend_names
from realtime.predictor import ModelLoadError, Predictor, load_predictor

PredictorFactory = Callable[[argparse.Namespace], Predictor]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="live.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    m = p.add_argument_group("model")
    m.add_argument("--model", default=None, help="zoo model with shipped weights (default: the shipped model with "
                   "the best cross-validated real-speech accuracy)")
    w = m.add_mutually_exclusive_group()
    w.add_argument("--weights", help="a run folder or .safetensors checkpoint (overrides --model)")
    w.add_argument("--onnx", help="an exported .onnx model (ort-* backends)")
    m.add_argument("--backend", default=None,
                   help=f"{', '.join(backend_names())} or auto (default {DEFAULT_BACKEND})")
    m.add_argument("--threads", type=int, default=1, help="inference threads (default 1: leaves cores to the audio and UI)")
    d = p.add_argument_group("detection")
    defaults = EngineConfig()
    d.add_argument("--threshold", type=float, default=None,
                   help=f"smoothed confidence needed to fire, 0-1, for every word (default: the model's calibrated "
                        f"per-word thresholds, else {defaults.threshold})")
    d.add_argument("--sensitivity", type=float, default=None, metavar="FA_PER_HOUR",
                   help="false accepts per hour you accept: the model's calibrated operating point nearest it "
                        "(per-word thresholds; the model must have operating points: python -m bench calibrate)")
    d.add_argument("--no-streaming", action="store_true",
                   help="recompute the model on the whole last second every hop (the full-window path)")
    d.add_argument("--hop", type=float, default=defaults.hop_s * 1e3, help="ms between decisions (default 50)")
    d.add_argument("--cooldown", type=float, default=defaults.cooldown_s * 1e3,
                   help="ms between two detections (default 500)")
    d.add_argument("--targets", help="comma-separated words allowed to fire (default: every word class)")
    d.add_argument("--no-vad", action="store_true", help="run the model on every hop, even in silence")
    s = p.add_argument_group("audio")
    s.add_argument("--device", help="input device index or name (see --list-devices)")
    s.add_argument("--input", metavar="FILE", help="replay an audio file (any length, any sample rate) instead of the mic")
    pace = s.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=None, help="replay at real-time speed")
    pace.add_argument("--fast", dest="realtime", action="store_false", help="replay as fast as possible")
    s.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    o = p.add_argument_group("output")
    o.add_argument("--headless", action="store_true", help="no window: print detections to stdout")
    o.add_argument("--json", action="store_true", help="with --headless: one JSON object per line")
    o.add_argument("--duration", type=float, help="with --headless: stop after this many seconds")
    o.add_argument("--save-detections", metavar="DIR", help="keep the audio of every detection (the window the model "
                   "decided on) as DIR/<word>/*.wav; the app's Wrong button moves the last one to DIR/wrong/, "
                   "for train.py --hard-negatives DIR/wrong")
    return p


def engine_config(args: argparse.Namespace) -> EngineConfig:
    base = EngineConfig()
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip()) if args.targets else None
    given = args.threshold is not None
    if given and args.sensitivity is not None:
        raise ValueError("--sensitivity picks the model's calibrated thresholds and --threshold sets one for every "
                         "word: give one of them")
    if args.sensitivity is not None and not (math.isfinite(args.sensitivity) and args.sensitivity > 0):
        raise ValueError(f"--sensitivity must be a positive number of false accepts per hour, got {args.sensitivity:g}")
    return dataclasses.replace(base, threshold=args.threshold if given else base.threshold, hop_s=args.hop / 1e3,
                               cooldown_s=args.cooldown / 1e3, targets=targets, use_model_thresholds=not given,
                               fa_per_hour=args.sensitivity, streaming=not args.no_streaming,
                               vad=dataclasses.replace(base.vad, enabled=not args.no_vad))


def model_ref(args: argparse.Namespace) -> str:
    if args.onnx or args.weights or args.model:
        return args.onnx or args.weights or args.model
    from zoo import default_model

    return default_model()


def default_predictor(args: argparse.Namespace) -> Predictor:
    return load_predictor(model_ref(args), args.backend or DEFAULT_BACKEND, args.threads,
                          backend_is_default=args.backend is None, streaming=not args.no_streaming,
                          notify=lambda msg: print(f"note: {msg}", file=sys.stderr, flush=True))


def make_source(args: argparse.Namespace, cfg: EngineConfig, realtime: bool):
    from realtime.sources import MicSource, ReplaySource

    if args.input:
        return ReplaySource(args.input, realtime=realtime, block_s=cfg.hop_s)
    return MicSource(args.device, block_s=cfg.hop_s)


def main(argv: Sequence[str] | None = None, *, predictor_factory: PredictorFactory | None = None) -> int:
    """Entry point. `predictor_factory` lets tests and embedders supply their own model."""
    args = build_parser().parse_args(argv)
    from kws.audio import AudioError
    from realtime.sources import SourceError, list_devices_text

    if args.list_devices:
        try:
            print(list_devices_text())
        except SourceError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if args.json and not args.headless:
        print("error: --json needs --headless", file=sys.stderr)
        return 2
    try:
        cfg = engine_config(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    factory = predictor_factory or default_predictor
    saver = None
    if args.save_detections:
        from realtime.detections import DetectionSaver

        try:
            saver = DetectionSaver(args.save_detections, window_s=cfg.window_s)
        except OSError as e:
            print(f"error: --save-detections {args.save_detections}: {e}", file=sys.stderr)
            return 2
    if not args.headless:
        from realtime.gui import run_app  # the only place Qt is imported

        realtime = True if args.realtime is None else args.realtime
        # a file given on the command line starts playing once the model is loaded; the mic waits for START
        return run_app(lambda: factory(args), lambda: make_source(args, cfg, realtime), cfg,
                       title=f"{model_ref(args)} · {args.backend or DEFAULT_BACKEND}", autostart=bool(args.input),
                       saver=saver)

    from realtime.headless import run_headless
    from realtime.session import LiveSession

    realtime = False if args.realtime is None else args.realtime
    try:
        source = make_source(args, cfg, realtime)  # a bad file fails here, before the model loads
        predictor = factory(args)
        session = LiveSession(predictor, saver.wrap(source) if saver else source, cfg,
                              on_detection=saver.save if saver else None)
        return run_headless(session, as_json=args.json, duration_s=args.duration)
    except (ModelLoadError, SourceError, AudioError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
