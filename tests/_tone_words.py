"""Word folders of tone bursts, for tests that need a tiny recorded corpus on disk."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE


def write_tone_words(root: Path, words: Sequence[str], names: Sequence[str], base_hz: float) -> Path:
    """root/<word>/<name>.wav for every word and name: word k is a tone near (k + 1) * base_hz,
    jittered 5 % per file, in a Gaussian envelope over light noise (seeded: the same files each run)."""
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    for k, word in enumerate(words):
        (root / word).mkdir(parents=True)
        for name in names:
            f0 = base_hz * (k + 1) * (1 + 0.05 * rng.standard_normal())
            x = 0.3 * np.sin(2 * np.pi * f0 * t) * np.exp(-((t - 0.5) / 0.2) ** 2)
            sf.write(root / word / f"{name}.wav", (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32),
                     SAMPLE_RATE, subtype="PCM_16")
    return root
