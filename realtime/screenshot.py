"""Screenshot of the running app from a real X display (e.g. Xvfb), for the README.

    Xvfb :99 -screen 0 1280x820x24 &
    DISPLAY=:99 python -m realtime.screenshot --weights runs/dscnn --out results/live_screenshot.png

The app replays a stream of real words (gsc12-dev when present) in real time and the X
server's framebuffer is grabbed (QScreen.grabWindow(0), what `import -window root` reads)
a moment after the n-th detection, so the log, the big display, a toast and the bars are live.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
from pathlib import Path

from realtime.engine import EngineConfig
from realtime.measure import demo_stream
from realtime.predictor import load_predictor
from realtime.sources import ReplaySource
from backends.registry import DEFAULT_BACKEND


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="efficientnet_b0", help="zoo name with shipped weights, run folder or file")
    p.add_argument("--weights", help="run folder / .safetensors / .onnx (overrides --model)")
    p.add_argument("--backend", default=DEFAULT_BACKEND)
    p.add_argument("--threshold", type=float, default=EngineConfig().threshold)
    p.add_argument("--input", help="audio file to replay (default: a stream of real words)")
    p.add_argument("--after", type=int, default=4, help="grab after this many detections")
    p.add_argument("--timeout", type=float, default=40.0, help="grab anyway after this many seconds")
    p.add_argument("--out", default="results/live_screenshot.png")
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(raw_argv)
    if not os.environ.get("DISPLAY"):
        print("error: no X display: start Xvfb (Xvfb :99 &) and set DISPLAY=:99", file=sys.stderr)
        return 2
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from kws.fsutil import atomic_path
    from realtime.gui import LiveWindow, apply_dark_theme

    from kws.runinfo import git_info

    source_name = Path(args.input).name if args.input else "a stream of real Speech Commands words"
    if args.input:
        make_source = lambda: ReplaySource(args.input, realtime=True)  # noqa: E731
    else:
        wave, _, _ = demo_stream(24.0, spacing_s=1.7)
        make_source = lambda: ReplaySource(wave=wave, realtime=True, name="speech_commands_words.wav")  # noqa: E731
    ref = args.weights or args.model
    app = QApplication(sys.argv[:1])
    apply_dark_theme(app)
    cfg = EngineConfig(threshold=args.threshold)
    win = LiveWindow(lambda: load_predictor(ref, args.backend, 1), make_source, cfg,
                     title=f"{Path(ref).name} · {args.backend}", autostart=True)
    win.move(0, 0)
    win.show()
    out = Path(args.out)
    state = {"done": False}

    def grab() -> None:
        if state["done"]:
            return
        state["done"] = True
        geo = win.frameGeometry()
        shot = app.primaryScreen().grabWindow(0, geo.x(), geo.y(), geo.width(), geo.height()).toImage()
        # PNG text, read by `python -m bench index`: what this is, how it was made, on which code, when
        git = git_info()
        for key, value in (("Description", f"The live window replaying {source_name} with {ref} on {args.backend}, "
                                           f"grabbed after {len(win.detections)} detections"),
                           ("Software", "python -m realtime.screenshot"),
                           ("Command", shlex.join(["python", "-m", "realtime.screenshot", *raw_argv])),
                           ("Commit", f"{git.get('commit') or '?'}{' (dirty)' if git.get('dirty') else ''}"),
                           ("Creation Time", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))):
            shot.setText(key, value)
        with atomic_path(out) as tmp:
            if not shot.save(str(tmp), "PNG"):
                raise OSError(f"{out}: could not write the screenshot")
        print(f"wrote {out} ({shot.width()}x{shot.height()}), {len(win.detections)} detections, "
              f"errors: {win.errors or 'none'}", file=sys.stderr)
        app.quit()

    def check() -> None:
        if len(win.detections) >= args.after or win.errors or (win.state == "ready" and win.detections):
            QTimer.singleShot(350, grab)  # let the toast fade in and the bars settle

    poll = QTimer()
    poll.timeout.connect(check)
    poll.start(50)
    QTimer.singleShot(int(args.timeout * 1000), grab)
    app.exec()
    return 0 if state["done"] else 1


if __name__ == "__main__":
    sys.exit(main())
