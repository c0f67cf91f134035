"""Hours of keyword-free audio with speech in it: the negatives behind every false-accepts-per-hour figure.

A wake-word engine is judged by how often it fires when nobody says its words, on hours of
real-world audio (openWakeWord measures on many hours of speech, music and noise). The
stream here is made of:

- **real non-keyword words**: every clip of the real sets in ../shared/data whose word is not one
  of the ten core words (gsc12-dev's 25 other words, gsc-v1-sample's, the FSDD digits), its
  leading and trailing silence cut;
- **synthetic sentences without the keywords**: everyday sentences from a small grammar
  (:func:`sentence`; every one checked by :func:`keyword_free`: no keyword, homophone or
  inflection of one), spoken by espeak-ng voices built the way the synthetic data set builds
  its speakers (kws.data.synth's public API: accent, variant, vocal-tract length, pitch, rate);
- each utterance in its own synthetic room (reverberation, kws.data.synth.room_impulse), at a
  random SNR over a noise bed: real background noise (gsc12-dev's `_silence_` clips, cut from
  Speech Commands' `_background_noise_` recordings) or synthetic noise (white, pink, brown, babble,
  mains hum, running tap: the synthetic set's generators), at a random level per segment.

**Roles.** A stream is built for one role, and the three roles share no text, voice, real
speaker or noise clip (the role split is fixed, not seeded, so a new seed gives new audio of
the same role):

- `test` (false accepts per hour): lexicon third 0 of the sentence grammar, espeak variants
  third 0 and flite's awb and rms; the real non-keyword words of one cross-validation fold's
  speakers (`fold="k/5"`: the speakers that fold's model never heard; "" every real word); the
  French and Russian Asterisk prompts (real continuous speech, other speakers and languages);
  real noise clips third 0;
- `calib` (threshold calibration): lexicon third 1, espeak variants third 1, flite's kal16, the
  Italian Asterisk prompts, real noise clips third 1; no real words (every real speaker is some
  model's training speaker or another fold's test speaker);
- `train` (negatives the heads train on, kws.training's `feature_negatives`): lexicon third 2
  with near misses of the commands (`NEAR_MISSES`: lift, nope, town, top, goat, cup ...), alone
  and inside sentences; espeak variants third 2, flite's slt and kal, festival's English voices
  and Piper; the synthetic set's other words and halves of its commands (`partial`: the first or
  last 30-60 % of a command is no command); the English and Spanish Asterisk prompts; real noise
  clips third 2.

Asterisk prompts (Debian's asterisk-core-sounds-*-wav, CC-BY-SA-3.0, 8 kHz, installed by
scripts/install.sh and never committed) are used when installed; every prompt whose name holds
a command word (`agent-loggedoff`, `vm-no`) is left out, since the packages carry no
transcripts to check the speech itself.

It is built in segments (2 minutes each), every segment a pure function of (settings, its
index), each written atomically into the data cache: a killed build resumes where it
stopped and two builds of the same settings give the same bytes. `python -m bench negatives`
builds it; `load_negatives()` reads it back with its events (what was said where).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from kws.audio import SAMPLE_RATE, from_int16, to_int16
from kws.fsutil import atomic_path, atomic_write_json, file_lock, read_json, sweep_temps, temp_files
from kws.labels import GSC12_WORDS, GSC_V2_WORDS, SILENCE

VERSION = 2  # bump whenever a change alters the generated audio: part of the cache key
REAL_SETS = ("gsc12-dev", "gsc-v1-sample", "fsdd-dev")
ROLES = ("test", "calib", "train")  # third k of every split list belongs to ROLES[k]
ASTERISK_ROOT = Path("/usr/share/asterisk/sounds")  # Debian's asterisk-core-sounds-*-wav
ASTERISK_LANGUAGES = {"test": ("fr_CA_f_June", "ru_RU_f_IvrvoiceRU"), "calib": ("it_IT_m_Carlo",),
                      "train": ("en_US_f_Allison", "es_MX_f_Allison")}  # one speaker per folder (Allison twice)
FLITE_BY_ROLE = {"test": ("awb", "rms"), "calib": ("kal16",), "train": ("slt", "kal")}
# Sounds like a command without being one: said alone and inside sentences, only in `train`.
# True homophones ("know", "write") are not here: training them as no command would teach the
# model to miss the command itself.
NEAR_MISSES = ("yet", "yeah", "yep", "yell", "chess", "nope", "nose", "note", "now", "snow", "gnome", "cup", "pup",
               "yup", "op", "dawn", "town", "gown", "lift", "loft", "laughed", "lived", "light",
               "bright", "fight", "ride", "white", "rice", "own", "an", "in", "won", "of", "cough", "scoff",
               "oft", "top", "shop", "stock", "step", "stuff", "stomp", "goat", "ghost", "gold", "goal", "toe", "so",
               "ten", "fork", "seventeen", "ninety", "bard", "bet", "bead", "love", "hi", "mars", "mouse", "hose",
               "fish", "tow", "lot", "rye")
NOISE_KINDS = ("white", "pink", "brown", "babble", "hum", "tap")

# Words a negative must not hold: the keywords, words that sound the same, their inflections and the
# compounds they are a part of ("stopped", "nobody", "upstairs": the keyword is said in full). Words that
# merely share sounds with one ("yesterday", "often", "bright") stay: real speech is full of them.
HOMOPHONES = {"know", "knows", "known", "write", "writes", "rite", "rites", "wright", "yess", "awf", "upp"}
SUFFIXES = ("", "s", "es", "ed", "ing", "ped", "ping", "per", "pers", "ted", "ting", "ter", "ters", "er", "ers",
            "ne", "ward", "wards", "stairs", "town", "load", "loads", "set", "line", "side", "on", "to", "body",
            "thing", "where", "one")


def banned_words(keywords: Iterable[str] = GSC12_WORDS) -> frozenset[str]:
    out = set(HOMOPHONES)
    for k in keywords:
        out |= {k + s for s in SUFFIXES}
    return frozenset(out)


_TOKEN = re.compile(r"[a-z']+")


def keyword_free(text: str, keywords: Iterable[str] = GSC12_WORDS) -> bool:
    """Whether no word of `text` is a keyword, a homophone or an inflection of one."""
    banned = banned_words(keywords)
    return not any(t in banned for t in _TOKEN.findall(text.lower()))


# ----------------------------------------------------------------------------- sentences

SUBJECTS = ("the teacher", "my brother", "her sister", "a little girl", "the old man", "our neighbour", "the children",
            "my friend", "the doctor", "the baker", "a tall woman", "the driver", "his mother", "the students",
            "the small cat", "a brown dog", "the farmer", "the team", "the manager", "somebody", "the pilot",
            "your uncle", "the musician", "the waiter", "my grandmother", "the new family", "a young boy",
            "the gardener", "the police officer", "the painter", "my cousin", "the whole class", "the twins")
VERBS = ("bought", "found", "painted", "cleaned", "carried", "wanted", "needed", "opened", "closed", "visited",
         "remembered", "forgot", "finished", "cooked", "fixed", "sold", "borrowed", "washed", "watched",
         "brought", "moved", "dropped", "lost", "chose", "ordered", "delivered", "counted", "measured",
         "described", "repaired", "packed", "hid", "shared", "tasted", "wrapped", "kept")
OBJECTS = ("a new bicycle", "the kitchen table", "three apples", "some fresh bread", "the blue car", "an old book",
           "the front door", "a letter", "the garden fence", "two tickets", "the window", "a cup of tea",
           "the big box", "the shopping bags", "a pair of shoes", "the map", "the radio", "a small piano",
           "the broken clock", "the yellow boat", "four chairs", "the birthday cake", "a basket of fruit",
           "the photographs", "the red umbrella", "a warm blanket", "the heavy suitcase", "seven candles",
           "the wooden spoon", "a bottle of milk", "the silver necklace", "the green jacket", "a bag of rice",
           "the empty bottles", "the piano keys", "a jar of honey", "the last biscuit", "twelve eggs")
PLACES = ("in the garden", "at the station", "near the river", "at the market", "in the kitchen", "behind the house",
          "at school", "in the city", "at the beach", "in the library", "at the office", "by the lake",
          "in the park", "at the hospital", "in the village", "under the bridge", "at the corner shop",
          "inside the museum", "in the basement", "at the airport", "in the small hotel", "near the church",
          "at the bus stand", "beside the fountain", "in the car park", "at the cinema")
TIMES = ("yesterday", "last week", "this morning", "after dinner", "before lunch", "every evening", "at midnight",
         "in the spring", "a few days ago", "last summer", "every weekend", "early today", "late at night",
         "last monday", "in the afternoon", "two years ago", "at the weekend", "before breakfast", "in winter")
REASONS = ("because it was cheap", "because it was raining", "for the party", "with great care",
           "as fast as possible", "without saying a word", "to help a friend", "before the guests arrived",
           "while the music played", "for the first time", "after a long day", "just in case",
           "because the shop was closing", "to surprise the family")
ADJECTIVES = ("warm", "cold", "quiet", "busy", "lovely", "strange", "noisy", "calm", "funny", "boring",
              "wonderful", "terrible", "peaceful", "crowded", "dark", "sunny", "windy", "careful", "tired")
PLURALS = ("people", "birds", "cars", "children", "boats", "trees", "houses", "chairs", "books", "flowers",
           "horses", "lamps", "windows", "students", "bicycles", "clouds")
NUMBERS = ("two", "three", "five", "seven", "nine", "twelve", "twenty", "many", "several", "a few", "forty")
QUESTIONS = ("did you see {obj} {place}", "where did {subj} put {obj}", "how many people came to the meeting",
             "why is the kitchen so cold", "what time does the train leave", "who painted the picture in the hall",
             "when will the shop open again", "could you pass me {obj}", "have you ever been to the mountains",
             "is it true that {subj} {verb} {obj}", "what did {subj} buy {time}", "how long was the film",
             "can we have dinner {place}", "would you like some more tea", "which of these is yours")
STATEMENTS = ("{subj} {verb} {obj} {place} {time}", "{time} {subj} {verb} {obj}", "{subj} {verb} {obj} {reason}",
              "the weather was {adj} {time}", "i think {subj} {verb} {obj}", "we had a {adj} time {place}",
              "{subj} is very {adj} {time}", "there were {num} {plural} {place}", "{subj} said it was {adj} {place}",
              "{time} the street was {adj} and {adj2}", "{subj} and {subj2} {verb} {obj} {place}",
              "please tell {subj} that dinner is ready", "the meeting is at seven in the evening",
              "it was a {adj} day, and {subj} {verb} {obj}", "{subj} likes to read {place} {time}")


def third(xs: Sequence[Any], role: str) -> tuple[Any, ...]:
    """The share of a list that belongs to `role` (every third item): the roles' lists are disjoint."""
    if role not in ROLES:
        raise ValueError(f"negatives role must be one of {ROLES}, got {role!r}")
    return tuple(xs[ROLES.index(role)::3])


def sentence(rng: np.random.Generator, role: str = "test") -> str:
    """One everyday sentence with no keyword (resampled until :func:`keyword_free` says so).

    Each role draws from its own third of every word list (subjects, verbs, objects ...), so
    the sentences of two roles share the grammar's shape but no content word.
    """
    def usable(x: str) -> bool:  # training sentences are `_unknown_`: none of the 35 words in them ("five")
        return role != "train" or not any(t in GSC_V2_WORDS for t in _TOKEN.findall(x))

    lists = {name: tuple(x for x in third(xs, role) if usable(x)) for name, xs in (
        ("subj", SUBJECTS), ("verb", VERBS), ("obj", OBJECTS), ("place", PLACES), ("time", TIMES),
        ("reason", REASONS), ("adj", ADJECTIVES), ("plural", PLURALS), ("num", NUMBERS))}

    def pick(xs: Sequence[str]) -> str:
        return xs[int(rng.integers(len(xs)))]

    while True:
        tpl = pick(third(QUESTIONS, role)) if rng.random() < 0.25 else pick(third(STATEMENTS, role))
        if not usable(tpl):
            continue
        text = tpl.format(subj=pick(lists["subj"]), subj2=pick(lists["subj"]), verb=pick(lists["verb"]),
                          obj=pick(lists["obj"]), place=pick(lists["place"]), time=pick(lists["time"]),
                          reason=pick(lists["reason"]), adj=pick(lists["adj"]), adj2=pick(lists["adj"]),
                          plural=pick(lists["plural"]), num=pick(lists["num"]))
        if keyword_free(text):
            return text


def near_miss_text(rng: np.random.Generator) -> str:
    """A near miss of a command, alone (as a command is said) or inside a `train` sentence."""
    word = NEAR_MISSES[int(rng.integers(len(NEAR_MISSES)))]
    if rng.random() < 0.5:
        return word
    words = sentence(rng, "train").split()
    at = int(rng.integers(len(words) + 1))
    return " ".join(words[:at] + [word] + words[at:])


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class NegativesConfig:
    """Everything that determines the stream's bytes (with the real clips and espeak's version: the key)."""

    hours: float = 2.0
    segment_s: float = 120.0
    seed: int = 0
    keywords: tuple[str, ...] = GSC12_WORDS
    real_sets: tuple[str, ...] = REAL_SETS
    snr_db: tuple[float, float] = (5.0, 25.0)  # speech (active RMS) over the noise bed, per utterance
    noise_dbfs: tuple[float, float] = (-55.0, -35.0)  # noise bed RMS per segment
    real_noise_share: float = 0.5  # segments over real background noise (the rest: synthetic kinds)
    p_reverb: float = 0.85
    rt60_s: tuple[float, float] = (0.15, 0.9)
    drr_db: tuple[float, float] = (-3.0, 12.0)
    gap_s: tuple[float, float] = (0.15, 1.2)
    role: str = "test"  # see the module docstring: what the stream is for decides what it may hold
    fold: str = ""  # "k/n": only the real words of that fold's test speakers (kws.data.folds); "": every one
    data: str = ""  # the spec whose fold split `fold` means (a recipe's data: the split depends on every part)
    asterisk_share: float = 1.0  # of the role's Asterisk prompts, dealt over segments (fold k/n: its nth)
    synth_words: int = 1200  # `train`: other words and command halves from the synthetic set's training split
    near_miss_share: float = 0.25  # `train`: of the sentences, near misses alone or inside one
    version: int = VERSION

    def __post_init__(self) -> None:
        if not (self.hours > 0 and 10 <= self.segment_s <= 600):
            raise ValueError(f"negatives: hours {self.hours} must be > 0 and segments 10-600 s")
        if self.role not in ROLES:
            raise ValueError(f"negatives: role must be one of {ROLES}, got {self.role!r}")
        if self.fold and self.role != "test":
            raise ValueError("negatives: only the test role holds real words, so only it takes a fold")
        object.__setattr__(self, "hours", float(self.hours))  # 2 and 2.0 are one stream (and one cache key)
        object.__setattr__(self, "keywords", tuple(self.keywords))
        object.__setattr__(self, "real_sets", tuple(self.real_sets))

    @property
    def n_segments(self) -> int:
        return int(np.ceil(self.hours * 3600 / self.segment_s - 1e-9))

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_s * SAMPLE_RATE))


@dataclass(frozen=True)
class Utterance:
    """A recorded utterance placed whole in the stream: a real non-keyword word, an Asterisk prompt,
    or (`train`) a synthetic word or command half."""

    wave: np.ndarray  # float32 at 16 kHz, silence trimmed
    word: str
    file: str  # path relative to ../shared/data (Asterisk: to its sounds folder)
    speaker: str
    corpus: str
    kind: str = "real"  # the event kind: "real" | "asterisk" | "synth_word"




def real_words(cfg: NegativesConfig) -> list[Utterance]:
    """`test`: every clip of the real sets whose word is no keyword (all splits; with `fold`, only
    that fold's test speakers), trimmed to the spoken part. Other roles: none (see the docstring)."""
    from kws.data import SHORTCUTS, open_source
    from kws.data.synth import trim_silence

    if cfg.role != "test":
        return []
    present = [n for n in cfg.real_sets if Path(SHORTCUTS[n].partition(":")[2]).is_dir()]
    if not present:
        return []
    out = []
    if cfg.fold:  # the fold split of the recipe's own spec (fold assignment depends on every part)
        src = open_source(cfg.data or "+".join(present), labels=None, fold=cfg.fold)
        cs, part = src.split("test"), src.part_of("test")
        picks = [(cs, i, src.parts[part[i]].name) for i in range(len(cs)) if part[i] >= 0 and src.parts[part[i]].recorded]
    else:
        picks = []
        for name in present:
            src = open_source(SHORTCUTS[name], labels=None)
            for split in ("train", "validation", "test"):
                cs = src.split(split)
                picks += [(cs, i, name) for i in range(len(cs))]
    for cs, i, name in picks:
        w = cs.words[i]
        if w in cfg.keywords or w == SILENCE or not keyword_free(w, cfg.keywords):
            continue
        x = trim_silence(from_int16(cs.waves[i]))
        if x.size < SAMPLE_RATE // 10:
            continue
        root = Path(SHORTCUTS[name].partition(":")[2])
        out.append(Utterance(x, w, _rel(cs.files[i], root.parent), cs.speakers[i] or "", name))
    return sorted(out, key=lambda r: r.file)


def asterisk_name_ok(name: str, keywords: Iterable[str] = GSC12_WORDS) -> bool:
    """Whether a prompt's name (`vm-press-one`) holds no command word, alone or run into another
    (`agent-loggedoff`). The packages ship no transcripts: the name is all there is to check."""
    banned = banned_words(keywords)
    long_words = [k for k in keywords if len(k) >= 3]
    for token in re.split(r"[^a-z]+", name.lower()):
        if not token:
            continue
        if token in banned or token in keywords or any(token.startswith(k) or token.endswith(k) for k in long_words):
            return False
    return True


def asterisk_prompts(cfg: NegativesConfig) -> list[Utterance]:
    """The role's Asterisk prompts (real continuous speech), name-checked, resampled to 16 kHz;
    with `fold` k/n every nth one, so the folds' streams together hold each prompt once."""
    from kws.audio import AudioError, load_audio
    from kws.data.synth import trim_silence

    # Training negatives become `_unknown_`: a prompt holding any of the 35 words ("vm-press-one") would
    # teach that word as no word, so there every word is checked; elsewhere only the commands can fire.
    words = GSC_V2_WORDS if cfg.role == "train" else cfg.keywords
    files = []
    for lang in ASTERISK_LANGUAGES[cfg.role]:
        folder = ASTERISK_ROOT / lang
        if folder.is_dir():
            files += sorted(p for p in folder.rglob("*.wav") if asterisk_name_ok(p.relative_to(folder).as_posix(), words))
    if cfg.fold:
        k, n = (int(v) for v in cfg.fold.split("/"))
        files = files[k - 1::n]
    if cfg.asterisk_share < 1:
        keep = np.random.default_rng([cfg.seed, 0xA57]).permutation(len(files))[:int(len(files) * cfg.asterisk_share)]
        files = [files[i] for i in sorted(keep)]
    out = []
    for p in files:
        try:
            x = trim_silence(load_audio(p, max_seconds=30))
        except AudioError:
            continue  # a broken prompt is no negative; the rest still are
        if x.size >= SAMPLE_RATE // 10:
            lang = p.relative_to(ASTERISK_ROOT).parts[0]
            out.append(Utterance(x, p.stem, p.relative_to(ASTERISK_ROOT).as_posix(), lang, "asterisk", "asterisk"))
    return out


def synth_words(cfg: NegativesConfig) -> list[Utterance]:
    """`train`: words of the synthetic set's training split: the other words whole, the commands
    cut to their first or last 30-60 % (half a command is no command)."""
    from kws.data import open_source
    from kws.data.synth import trim_silence

    if cfg.role != "train" or cfg.synth_words <= 0:
        return []
    cs = open_source("synth", labels=None).split("train")
    rng = np.random.default_rng([cfg.seed, 0x5E7])
    idx = [i for i in range(len(cs)) if cs.words[i] != SILENCE and not cs.words[i].startswith("_")]
    out = []
    for i in sorted(rng.choice(len(idx), size=min(cfg.synth_words, len(idx)), replace=False)):
        j = idx[int(i)]
        w, x = cs.words[j], trim_silence(from_int16(cs.waves[j]))
        if w in cfg.keywords:
            share = float(rng.uniform(0.3, 0.6))
            n = max(1, int(x.size * share))
            first = rng.random() < 0.5
            x = x[:n] if first else x[-n:]
            w = f"{w} ({'first' if first else 'last'} {100 * share:.0f} %)"
        if x.size >= SAMPLE_RATE // 20:
            out.append(Utterance(x, w, Path(cs.files[j]).name, cs.speakers[j] or "", "synth", "synth_word"))
    return out


def placed_utterances(cfg: NegativesConfig) -> list[Utterance]:
    """Everything placed whole in the role's stream: real words, Asterisk prompts, synthetic words."""
    return real_words(cfg) + asterisk_prompts(cfg) + synth_words(cfg)


def real_noise(cfg: NegativesConfig) -> np.ndarray:
    """The role's third of gsc12-dev's `_silence_` clips joined into one noise source (empty without the data)."""
    from bench.signals import noise_from_clips
    from kws.data import SHORTCUTS, open_source

    root = Path(SHORTCUTS["gsc12-dev"].partition(":")[2])
    if not root.is_dir():
        return np.zeros(0, np.float32)
    src = open_source(SHORTCUTS["gsc12-dev"], labels=None)
    found = sorted(((cs.files[i], cs.waves[i]) for s in ("train", "validation", "test") for cs in [src.split(s)]
                    for i in range(len(cs)) if cs.words[i] == SILENCE), key=lambda fw: fw[0])
    clips = [w for _, w in third(found, cfg.role)]
    return noise_from_clips(from_int16(np.stack(clips))) if clips else np.zeros(0, np.float32)


def _rel(path: str, base: Path) -> str:
    p = Path(path)
    return p.relative_to(base).as_posix() if p.is_relative_to(base) else p.name


# ----------------------------------------------------------------------------- building


def espeak_variants(role: str) -> tuple[str, ...]:
    from kws.data import synth

    return third([v for v in synth.VARIANTS if v not in synth.RARE_VARIANTS], role)


class Speaker:
    """An espeak voice drawn like the synthetic set's speakers (accent, the role's variants, vocal tract, pitch)."""

    engine_name = "espeak"

    def __init__(self, engine: Any, name: str, rng: np.random.Generator, role: str = "test") -> None:
        from kws.data import synth

        accents = list(synth.ENGLISH_ACCENTS)
        w = np.array([synth.ENGLISH_ACCENTS[a] for a in accents])
        self.accent = accents[int(rng.choice(len(accents), p=w / w.sum()))]
        variants = espeak_variants(role)
        self.variant = variants[int(rng.integers(len(variants)))]
        self.vtl, self.pitch_scale = float(rng.uniform(0.86, 1.16)), float(rng.uniform(0.8, 1.25))
        self.rate, self.pitch, self.intonation = (float(rng.uniform(0.8, 1.3)), float(rng.uniform(0.2, 0.8)),
                                                  float(rng.uniform(0.2, 0.9)))
        text = synth.voice_file_text(engine.data_path, self.accent, self.variant, self.vtl, self.pitch_scale)
        self.voice = synth.install_voice(engine.data_path, name, text)
        self.name = name

    @property
    def label(self) -> str:
        return f"{self.accent}+{self.variant or 'default'}"

    def say(self, engine: Any, text: str, seed: int) -> np.ndarray:
        from kws.data import synth

        x = engine.synth(text, self.voice, int(np.clip(round(175 * self.rate), 80, 450)), int(round(99 * self.pitch)),
                         int(round(99 * self.intonation)), seed=seed)
        return synth.trim_silence(synth.to_16k(x, engine.sample_rate))


class OtherVoice:
    """A flite, festival (English voices) or Piper voice at a drawn rate and pitch."""

    def __init__(self, engine_name: str, voice: str, rng: np.random.Generator, piper: Any = None) -> None:
        self.engine_name, self.voice, self.piper = engine_name, voice, piper
        self.rate, self.pitch, self.intonation = (float(rng.uniform(0.85, 1.2)), float(rng.uniform(0.2, 0.8)),
                                                  float(rng.uniform(0.2, 0.9)))
        self.pitch_scale = float(rng.uniform(0.85, 1.15))

    @property
    def label(self) -> str:
        return f"{self.engine_name}:{self.voice}"

    def say(self, engine: Any, text: str, seed: int) -> np.ndarray:
        from kws.data import synth
        from kws.data.synth.flite import _FLITE_F0, flite_synth
        from kws.data.synth.voices import VOICE_DIR, lang_voice_name

        if self.engine_name == "flite":
            f0 = _FLITE_F0.get(self.voice, 110.0) * self.pitch_scale * (0.8 + 0.4 * self.pitch)
            x, sr = flite_synth(text, self.voice, 1.0 / self.rate, f0, 5 + 30 * self.intonation)
        elif self.engine_name == "festival":
            x, sr = synth.festival_synth(text, self.voice, self.rate, self.pitch_scale * (0.8 + 0.4 * self.pitch),
                                         0.4 + 1.2 * self.intonation, seed)
        else:
            ipa = engine.phonemes([text], f"{VOICE_DIR}/{lang_voice_name('en-US')}")[0]
            x, sr = self.piper.synth(ipa, 1.0 / self.rate, 0.35 + 0.6 * self.intonation, 0.4 + 0.6 * self.pitch,
                                     seed), self.piper.sample_rate
        return synth.trim_silence(synth.to_16k(np.asarray(x, np.float32), sr))


def other_voices(role: str) -> list[tuple[str, str]]:
    """(engine, voice) of the role's non-espeak voices that are installed."""
    from kws.data import synth

    out = [("flite", v) for v in FLITE_BY_ROLE[role]] if synth.flite_binary() else []
    if role == "train":
        out += [("festival", v) for v in synth.festival_voices() if synth.FESTIVAL_VOICES[v].lang == "en"]
        out += [("piper", v) for v in synth.piper_voices()]
    return out


class Builder:
    """Renders segments; one per process (it holds a private espeak data folder)."""

    def __init__(self, cfg: NegativesConfig, words: list[Utterance], noise: np.ndarray, espeak_dir: Path) -> None:
        from kws.data import synth

        self.cfg, self.words, self.noise = cfg, words, noise
        from kws.data.synth.voices import lang_file, lang_voice_name

        data = synth.private_espeak_data(espeak_dir, synth.ENGLISH_ACCENTS)
        # Piper reads espeak's en-US phonemes through this voice file (as the synthetic set's renderer does)
        synth.install_voice(data, lang_voice_name("en-US"),
                            lang_file(data, "en-US").read_text(encoding="utf-8", errors="replace"))
        self.engine = synth.EspeakLib(data)
        order = np.random.default_rng([cfg.seed, 0xA11]).permutation(len(words))
        self.assign = np.array_split(order, cfg.n_segments)  # every placed utterance in exactly one segment
        self.others = other_voices(cfg.role)
        self._piper: dict[str, Any] = {}

    def voices(self, index: int, rng: np.random.Generator) -> list[Any]:
        """The segment's six speakers: espeak voices, and (when installed) a share of the role's others."""
        from kws.data import synth

        out: list[Any] = []
        for k in range(6):
            if self.others and rng.random() < 0.4:
                eng, v = self.others[int(rng.integers(len(self.others)))]
                if eng == "piper" and v not in self._piper:
                    self._piper[v] = synth.PiperVoice(v)
                out.append(OtherVoice(eng, v, rng, self._piper.get(v)))
            else:
                out.append(Speaker(self.engine, f"neg{index % 1000:03d}v{k}", rng, self.cfg.role))
        return out

    def bed(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str, float]:
        from bench.signals import has_usable_noise, noise_bed
        from kws.data import synth

        level_db = float(rng.uniform(*self.cfg.noise_dbfs))
        level = 10 ** (level_db / 20)
        if rng.random() < self.cfg.real_noise_share and has_usable_noise(self.noise):
            return noise_bed(self.noise, n, level, rng), "real: gsc12-dev _silence_", level_db
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        gen = {"white": synth.noise_white, "pink": synth.noise_pink, "brown": synth.noise_brown,
               "hum": synth.noise_hum, "tap": synth.noise_tap,
               "babble": lambda m, r: synth.noise_babble(m, r, self.engine)}[kind]
        x = gen(n, rng).astype(np.float64)
        return (x * level / (np.sqrt(np.mean(x * x)) + 1e-12)).astype(np.float32), f"synthetic: {kind}", level_db

    def room(self, rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, float | None]:
        from scipy import signal

        from kws.data import synth

        if rng.random() >= self.cfg.p_reverb:
            return x, None
        rt60 = float(rng.uniform(*self.cfg.rt60_s))
        rir = synth.room_impulse(synth.Room(rt60, float(rng.uniform(*self.cfg.drr_db))), rng)
        return signal.fftconvolve(x, rir).astype(np.float32), rt60

    def speak(self, sp: Any, text: str, seed: int) -> np.ndarray | None:
        """A voice's reading of `text`, or None when its engine fails on it (the sentence is skipped)."""
        from kws.data import synth

        try:
            x = sp.say(self.engine, text, seed)
        except synth.SynthError:
            return None
        return x if x.size >= SAMPLE_RATE // 20 else None

    def segment(self, index: int) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
        """Segment `index`: int16 audio, its utterances, its noise."""
        from kws.data import synth

        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, index])
        n = cfg.segment_samples
        bed, noise_kind, level_db = self.bed(rng, n)
        bed_rms = float(np.sqrt(np.mean(bed.astype(np.float64) ** 2))) or 1e-4
        speakers = self.voices(index, rng)
        items: list[tuple[str, Any]] = [(self.words[i].kind, self.words[i]) for i in self.assign[index]]
        mean_gap = float(np.mean(cfg.gap_s))
        used = sum(w.wave.size / SAMPLE_RATE + mean_gap for _, w in items)
        tries = 0
        while used < cfg.segment_s - 1.0 and tries < 2000:  # sentences fill the rest of the segment
            tries += 1
            sp = speakers[int(rng.integers(len(speakers)))]
            near = cfg.role == "train" and rng.random() < cfg.near_miss_share
            text = near_miss_text(rng) if near else sentence(rng, cfg.role)
            x = self.speak(sp, text, int(rng.integers(2 ** 31 - 1)))
            if x is None:
                continue
            items.append(("near_miss" if near else "sentence", (text, sp, x)))
            used += x.size / SAMPLE_RATE + mean_gap
        order = rng.permutation(len(items))
        out = bed.astype(np.float64)
        events: list[dict[str, Any]] = []
        pos = int(rng.uniform(0.2, 1.0) * SAMPLE_RATE)
        for j in order:
            kind, item = items[j]
            spoken = kind in ("sentence", "near_miss")
            dry = item[2] if spoken else item.wave
            wet, rt60 = self.room(rng, dry)
            if pos + dry.size > n:
                continue  # no room left in this segment: dropped (counted by the event list)
            snr = float(rng.uniform(*cfg.snr_db))
            gain = bed_rms * 10 ** (snr / 20) / (synth.active_rms(wet) or 1e-6)
            seg = wet[: n - pos] * gain
            out[pos:pos + seg.size] += seg
            ev = {"kind": kind, "start_s": round(pos / SAMPLE_RATE, 4),
                  "end_s": round((pos + dry.size) / SAMPLE_RATE, 4), "snr_db": round(snr, 2),
                  "rt60_s": None if rt60 is None else round(rt60, 3)}
            if spoken:
                ev.update(text=item[0], voice=item[1].label)
            else:
                ev.update(word=item.word, file=item.file, speaker=item.speaker, corpus=item.corpus)
            events.append(ev)
            pos += dry.size + int(rng.uniform(*cfg.gap_s) * SAMPLE_RATE)
        peak = float(np.abs(out).max())
        if peak > 0.98:
            out *= 0.98 / peak  # a sound card's full scale, without clipping
        info = {"index": index, "noise": noise_kind, "noise_dbfs": round(level_db, 2),
                "placed_assigned": int(len(self.assign[index])),
                "placed": sum(e["kind"] not in ("sentence", "near_miss") for e in events),
                "speech_s": round(sum(e["end_s"] - e["start_s"] for e in events), 2)}
        return to_int16(out), events, info


# ----------------------------------------------------------------------------- the cache


def _key(cfg: NegativesConfig, words: list[Utterance], noise: np.ndarray) -> str:
    from kws.data import synth

    h = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode())
    for w in words:
        h.update(f"{w.file}:{w.word}:{w.wave.size}".encode())
        h.update(w.wave.tobytes())
    h.update(noise.tobytes())
    h.update(synth.EspeakLib().version().encode())
    return h.hexdigest()[:16]


def cache_folder(cfg: NegativesConfig, key: str) -> Path:
    from kws.data.cache import cache_root

    fold = f"-fold{cfg.fold.replace('/', 'of')}" if cfg.fold else ""
    return cache_root() / "negatives" / f"neg-{cfg.role}{fold}-{cfg.hours:g}h-seed{cfg.seed}-{key}"


def build_negatives(cfg: NegativesConfig = NegativesConfig(), progress: bool = True) -> Path:
    """Build (or finish building) the stream; returns its cache folder. Segments already there are kept."""
    from tqdm import tqdm

    words, noise = placed_utterances(cfg), real_noise(cfg)
    folder = cache_folder(cfg, _key(cfg, words, noise))
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock", what="this negative stream"):
        sweep_temps(temp_files(folder))
        todo = [i for i in range(cfg.n_segments) if not _segment_ok(folder, i, cfg)]
        if todo:
            with tempfile.TemporaryDirectory(prefix="kws-negatives-") as tmp:
                builder = Builder(cfg, words, noise, Path(tmp) / "espeak-ng-data")
                t0 = time.perf_counter()
                bar = tqdm(todo, desc="negatives", unit="seg", disable=not progress)
                for i in bar:
                    x, events, info = builder.segment(i)
                    with atomic_path(folder / f"seg-{i:04d}.npy") as tmp_npy:
                        with open(tmp_npy, "wb") as f:
                            np.save(f, x)
                    # the JSON last: a segment counts as built only when both are there
                    atomic_write_json(folder / f"seg-{i:04d}.json", {"info": info, "events": events})
                    done = cfg.segment_s * (bar.n + 1)
                    bar.set_postfix(audio_x=f"{done / (time.perf_counter() - t0):.1f}x real time")
        atomic_write_json(folder / "manifest.json", {
            "settings": dataclasses.asdict(cfg), "segments": cfg.n_segments, "placed_utterances": len(words),
            "real_noise_seconds": round(noise.size / SAMPLE_RATE, 1), "doc": __doc__.split("\n\n")[1]})
    return folder


def _segment_ok(folder: Path, i: int, cfg: NegativesConfig) -> bool:
    npy, js = folder / f"seg-{i:04d}.npy", folder / f"seg-{i:04d}.json"
    if not (npy.is_file() and js.is_file()):
        return False
    try:
        x = np.load(npy, mmap_mode="r")
        read_json(js)
    except (OSError, ValueError):
        return False
    return x.dtype == np.int16 and x.shape == (cfg.segment_samples,)


@dataclass(frozen=True, eq=False)
class NegativeStream:
    wave: np.ndarray  # float32 at 16 kHz, every segment end to end
    events: tuple[dict[str, Any], ...]  # utterances, times in stream seconds, with their segment
    segments: tuple[dict[str, Any], ...]
    folder: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def hours(self) -> float:
        return self.wave.size / SAMPLE_RATE / 3600

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, float] = {}
        for e in self.events:
            kinds[e["kind"]] = kinds.get(e["kind"], 0.0) + e["end_s"] - e["start_s"]
        noise: dict[str, int] = {}
        for s in self.segments:
            noise[s["noise"]] = noise.get(s["noise"], 0) + 1
        return {"hours": round(self.hours, 3), "segments": len(self.segments),
                "utterances": {k: sum(e["kind"] == k for e in self.events) for k in sorted({e["kind"] for e in self.events})},
                "speech_hours": {k: round(v / 3600, 3) for k, v in kinds.items()},
                "real_speakers": len({e["speaker"] for e in self.events if e["kind"] == "real" and e["speaker"]}),
                "noise_segments": noise, "cache": self.folder.name, "settings": self.settings}


def load_negatives(cfg: NegativesConfig = NegativesConfig(), build: bool = True) -> NegativeStream:
    """The stream of `cfg`, built first if needed (`build=False`: FileNotFoundError when incomplete)."""
    words, noise = placed_utterances(cfg), real_noise(cfg)
    folder = cache_folder(cfg, _key(cfg, words, noise))
    missing = [i for i in range(cfg.n_segments) if not _segment_ok(folder, i, cfg)]
    if missing:
        if not build:
            raise FileNotFoundError(f"{folder}: {len(missing)} of {cfg.n_segments} segments missing; build them with "
                                    f"`python -m bench negatives --hours {cfg.hours:g}`")
        build_negatives(cfg)
    wave = np.empty(cfg.n_segments * cfg.segment_samples, np.float32)
    events, segments = [], []
    for i in range(cfg.n_segments):
        x = np.load(folder / f"seg-{i:04d}.npy")
        wave[i * cfg.segment_samples:(i + 1) * cfg.segment_samples] = from_int16(x)
        doc = read_json(folder / f"seg-{i:04d}.json")
        t0 = i * cfg.segment_s
        for e in doc["events"]:
            events.append({**e, "segment": i, "start_s": round(e["start_s"] + t0, 4),
                           "end_s": round(e["end_s"] + t0, 4)})
        segments.append(doc["info"])
    return NegativeStream(wave, tuple(events), tuple(segments), folder, dataclasses.asdict(cfg))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench negatives", description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=NegativesConfig.hours)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--role", choices=ROLES, default="test", help="what the stream is for (see the docstring)")
    p.add_argument("--fold", default="", help="test role: only the real words of this fold's speakers (K/N)")
    a = p.parse_args(argv)
    cfg = NegativesConfig(hours=a.hours, seed=a.seed, role=a.role, fold=a.fold)
    folder = build_negatives(cfg)
    print(json.dumps(load_negatives(cfg, build=False).summary(), indent=1))
    print(f"negatives: {folder}")
    return 0
