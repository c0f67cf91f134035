"""Rendering: the Renderer turns one plan entry (a ClipSpec and its Speaker) into 1 s of audio,
asking the speaker's engine for the dry word (re-spoken faster when too long, with a plain
fallback when festival crashes), then putting it through the room, the channel, the placement and
the noise. One Renderer per worker process; Piper voices load on first use.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE
from kws.data.synth.dsp import active_rms, apply_channel, fit_word, place, room_impulse, to_16k, trim_silence
from kws.data.synth.espeak import EspeakLib, _espeak_params
from kws.data.synth.festival import FESTIVAL_VOICES, festival_synth
from kws.data.synth.flite import _FLITE_F0, flite_synth
from kws.data.synth.piper import PiperVoice
from kws.data.synth.plan import ClipSpec, Speaker
from kws.data.synth.settings import MAX_WORD_SECONDS, EngineCrash, SynthError
from kws.data.synth.voices import VOICE_DIR, lang_voice_name


class Renderer:
    """Turns a ClipSpec into 1 s of PCM16; one per worker process."""

    def __init__(self, noise_beds: dict[str, np.ndarray], espeak_data: Path) -> None:
        self.noise = noise_beds
        self.espeak = EspeakLib(espeak_data)  # the speakers' voices are already installed there
        self._piper: dict[str, PiperVoice] = {}  # loaded on first use (seconds): most workers never need one
        self.fallbacks = 0  # festival calls of the current clip that crashed and were said plainly

    def _piper_voice(self, voice: str) -> PiperVoice:
        if voice not in self._piper:
            self._piper[voice] = PiperVoice(voice)
        return self._piper[voice]

    def speak(self, spec: ClipSpec, sp: Speaker) -> tuple[np.ndarray, str]:
        """The dry word at 16 kHz, trimmed, at most MAX_WORD_SECONDS; and how it was fitted."""
        max_len = int(MAX_WORD_SECONDS * SAMPLE_RATE)
        rate, how = spec.rate, "none"
        for _ in range(3):  # too long -> speak faster (natural), before any time-compression
            x = self._tts(spec, sp, rate)
            if len(x) <= max_len:
                return x, how
            rate, how = rate * len(x) / max_len * 1.05, "rate"
        return fit_word(x, max_len), "compress"

    def _tts(self, spec: ClipSpec, sp: Speaker, rate: float) -> np.ndarray:
        floor_db = 40.0
        if sp.engine in ("flite", "festival", "piper"):
            if sp.engine == "piper":
                pv = self._piper_voice(sp.accent)
                # Piper reads espeak's en-US phonemes (by file: a build's voice list is too long
                # for espeak to find "en-us" by name). noise_scale: voice quality and pitch
                # movement; noise_w: rhythm (Piper's defaults: 0.667, 0.8).
                ipa = self.espeak.phonemes([spec.text], f"{VOICE_DIR}/{lang_voice_name('en-US')}")[0]
                x, sr = pv.synth(ipa + spec.mark, 1.0 / rate, 0.35 + 0.6 * spec.intonation,
                                 0.4 + 0.6 * spec.pitch_level, spec.seed), pv.sample_rate
            elif sp.engine == "flite":
                f0 = _FLITE_F0.get(sp.accent, 110.0) * sp.pitch_scale * (0.8 + 0.4 * spec.pitch_level)
                x, sr = flite_synth(spec.text + spec.mark, sp.accent, 1.0 / rate, f0, 5 + 30 * spec.intonation)
            else:
                floor_db = FESTIVAL_VOICES[sp.accent].floor_db
                try:
                    x, sr = festival_synth(spec.text + spec.mark, sp.accent, rate,
                                           sp.pitch_scale * (0.8 + 0.4 * spec.pitch_level),
                                           0.4 + 1.2 * spec.intonation, spec.seed)
                except EngineCrash:  # it crashes on this input: the bare word at the voice's own pitch,
                    self.fallbacks += 1  # then also at its own rate with seed 0 (some crashes follow those too)
                    try:
                        x, sr = festival_synth(spec.text, sp.accent, rate, 1.0, 1.0, spec.seed)
                    except EngineCrash:
                        x, sr = festival_synth(spec.text, sp.accent, 1.0, 1.0, 1.0, 0)
            x = to_16k(x, sr)
            # speed perturbation: replaying faster raises formants like a shorter vocal tract
            x = signal.resample(x, max(1, round(len(x) / sp.vtl))).astype(np.float32)
        else:
            x = self.espeak.synth(spec.text + spec.mark, f"{VOICE_DIR}/{sp.id}",
                                  *_espeak_params(rate, spec.pitch_level, spec.intonation), seed=spec.seed)
            x = to_16k(x, self.espeak.sample_rate)
        x = trim_silence(x, floor_db=floor_db)
        if len(x) < SAMPLE_RATE // 20:
            raise SynthError(f"{spec.relpath}: TTS gave {len(x)} samples of speech for {spec.text!r} "
                             f"({sp.engine} {sp.accent}+{sp.variant})")
        return x

    def render(self, spec: ClipSpec, sp: Speaker) -> tuple[np.ndarray, dict[str, Any]]:
        rng = np.random.default_rng(spec.seed)
        self.fallbacks = 0
        dry, how = self.speak(spec, sp)
        # the room shapes the sound before the microphone and its line colour it
        wet = signal.fftconvolve(dry, room_impulse(spec.room, rng)).astype(np.float32) if spec.room else dry
        wet = apply_channel(wet, spec.channel)
        gain = 10 ** (spec.level_dbfs / 20) / (np.abs(wet).max() + 1e-9)
        clip, offset = place(len(dry), wet * gain, spec.position)
        speech_rms = active_rms(clip[offset : offset + len(dry)])
        if spec.noise:
            bed = self.noise[spec.noise.kind]
            start = int(rng.integers(0, len(bed) - CLIP_SAMPLES + 1))
            seg = bed[start : start + CLIP_SAMPLES]
            clip = clip + seg * (speech_rms / (np.sqrt(np.mean(seg**2)) + 1e-12) / 10 ** (spec.noise.snr_db / 20))
        clip = clip + rng.standard_normal(CLIP_SAMPLES).astype(np.float32) * 10 ** (spec.floor_dbfs / 20)
        peak = float(np.abs(clip).max())
        if peak > 0.98:  # loud noise on a loud word: scale down rather than clip
            clip = clip * (0.98 / peak)
        info = {"speech_s": round(len(dry) / SAMPLE_RATE, 4), "offset_s": round(offset / SAMPLE_RATE, 4),
                "fit": how, "peak_dbfs": round(20 * math.log10(max(float(np.abs(clip).max()), 1e-9)), 2)}
        if self.fallbacks:
            info["engine_fallback"] = "said plainly after a festival crash"
        return clip.astype(np.float32), info
