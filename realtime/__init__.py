"""Real-time keyword detection: a Qt-free streaming engine, audio sources, a CLI and a PyQt6 app.

Only :mod:`realtime.gui` imports Qt; everything else runs headless (servers, tests, the bench's
streaming evaluation, which calls :func:`realtime.engine.run_offline`).
"""
from realtime.engine import Decision, Detection, DetectionEngine, EngineConfig, ScoreTrace, VADConfig, run_offline

__all__ = ["Decision", "Detection", "DetectionEngine", "EngineConfig", "ScoreTrace", "VADConfig", "run_offline"]
