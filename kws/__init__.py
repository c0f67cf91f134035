"""kws: the core of the keyword-spotting zoo: audio I/O, the frontends, labels, data, paths, metrics.

Nothing here imports the model zoo, the backends or anything above them (tests/test_layers.py).
The sample rate and clip length are defined once, in :mod:`kws.audio`.
"""
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, AudioError, load_audio, load_clip

__all__ = ["SAMPLE_RATE", "CLIP_SAMPLES", "AudioError", "load_audio", "load_clip"]
