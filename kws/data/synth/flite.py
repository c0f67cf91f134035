"""The flite engine: Debian's flite CLI, one process per utterance, with its voice, duration
stretch and f0 targets; its version for the cache key. Optional: a build uses it only where the
program is installed.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from kws.data.synth.settings import SynthError


def flite_binary() -> str | None:
    return shutil.which("flite")


def flite_version() -> str:
    exe = flite_binary()
    if not exe:
        raise SynthError("engine 'flite' requested but the flite program is not installed "
                         "(Debian: apt-get install flite)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    line = next((ln.strip() for ln in out.splitlines() if "version" in ln), "flite")
    return line.removeprefix("version:").strip()


_FLITE_F0 = {"slt": 170.0, "rms": 100.0, "awb": 110.0, "kal16": 105.0, "kal": 105.0}


def flite_synth(text: str, voice: str, stretch: float, f0_mean: float, f0_std: float) -> tuple[np.ndarray, int]:
    """Speak `text` with the flite CLI; (float32 mono, sample rate)."""
    import soundfile as sf

    exe = flite_binary()
    if not exe:
        raise SynthError("flite is not installed")
    with tempfile.TemporaryDirectory(prefix="kws-flite-") as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = [exe, "-voice", voice, "--setf", f"duration_stretch={stretch:.4f}",
               "--setf", f"int_f0_target_mean={f0_mean:.2f}", "--setf", f"int_f0_target_stddev={f0_std:.2f}",
               "-t", text, "-o", str(wav)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or not wav.exists():
            raise SynthError(f"flite failed for {text!r} with voice {voice}: {proc.stderr.strip()[-300:]}")
        x, sr = sf.read(str(wav), dtype="float32", always_2d=False)
    if x.ndim > 1:
        x = x.mean(axis=1)
    return x.astype(np.float32), int(sr)
