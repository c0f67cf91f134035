"""kws: the audio, data, training and prediction core of the keyword-spotting zoo.

The sample rate and clip length are defined once, in :mod:`kws.audio`.
"""
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, AudioError, load_audio, load_clip

__all__ = ["SAMPLE_RATE", "CLIP_SAMPLES", "AudioError", "load_audio", "load_clip"]


def __getattr__(name: str):
    # The prediction API pulls in torch/onnxruntime; import it lazily so that
    # `import kws` stays cheap for the data tools and the realtime engine.
    if name in ("predict_audio", "predict_files"):
        from kws import predict

        return getattr(predict, name)
    raise AttributeError(name)
