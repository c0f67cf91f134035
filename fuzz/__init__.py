"""Fuzzing of every reader of outside files (audio, ONNX metadata, safetensors headers): see `python -m fuzz -h`.

Targets in fuzz.targets, engines (atheris, seeded mutation loop) in fuzz.engine. The bounded
CI run is tests/test_fuzz.py; results/fuzz.md records the long run.
"""
