"""libespeak-ng driven through ctypes (EspeakLib): the one engine every build has, loaded fresh
for each utterance so that a clip is a pure function of its parameters, plus the mapping from a
speaker's normalised habits to espeak's rate, pitch and range. The shared library itself is loaded
only when a session opens; the wheel that ships it is imported only when its paths are asked for.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from kws.audio import from_int16
from kws.data.synth.settings import SynthError


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


def _espeak_params(rate: float, pitch_level: float, intonation: float) -> tuple[int, int, int]:
    """Normalised habits -> espeak's rate (wpm), pitch (0-99) and range (0-99)."""
    return (int(np.clip(round(175 * rate), 80, 450)), int(round(99 * pitch_level)), int(round(99 * intonation)))
