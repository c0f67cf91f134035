"""The festival engine: Debian's festival and its free voices (FESTIVAL_VOICES), one process per
utterance with the pitch targets moved in Scheme, retried when festival 2.5 dies of a signal; and
the respelling of an English word's en-US phonemes in the orthography of each non-English voice,
so that voice reads it with an accent. Optional: a build uses the voices installed here.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kws.data.synth.espeak import EspeakLib
from kws.data.synth.settings import EngineCrash, SynthError
from kws.data.synth.voices import VOICE_DIR, lang_voice_name


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
