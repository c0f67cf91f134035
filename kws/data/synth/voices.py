"""espeak voices: the private copy of espeak-ng-data a build writes its speakers into, the voice
file of each speaker (language file + variant + vocal-tract length and pitch scale), and the check
that a foreign voice's reading of an English word is close enough to pass for an accent (broad
phone classes and an edit distance over espeak's IPA).
"""
from __future__ import annotations

import functools
import shutil
import unicodedata
from pathlib import Path
from typing import Iterable, Sequence

from kws.data.synth.espeak import EspeakLib, espeak_paths
from kws.data.synth.settings import ENGLISH_ACCENTS, FOREIGN_ACCENTS, SynthError


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
