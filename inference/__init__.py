"""Prediction: label audio files with any zoo model on any backend (CLI: `kws-predict`, `python predict.py`).

    from inference import predict_audio, predict_files
    label, confidence = predict_audio("yes.wav")
"""
from inference.predict import Prediction, format_table, predict_audio, predict_files

__all__ = ["Prediction", "format_table", "predict_audio", "predict_files"]
