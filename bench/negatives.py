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
from kws.labels import GSC12_WORDS, SILENCE

VERSION = 1  # bump whenever a change alters the generated audio: part of the cache key
REAL_SETS = ("gsc12-dev", "gsc-v1-sample", "fsdd-dev")
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


def sentence(rng: np.random.Generator) -> str:
    """One everyday sentence with no keyword (resampled until :func:`keyword_free` says so)."""
    def pick(xs: Sequence[str]) -> str:
        return xs[int(rng.integers(len(xs)))]

    while True:
        tpl = pick(QUESTIONS) if rng.random() < 0.25 else pick(STATEMENTS)
        text = tpl.format(subj=pick(SUBJECTS), subj2=pick(SUBJECTS), verb=pick(VERBS), obj=pick(OBJECTS),
                          place=pick(PLACES), time=pick(TIMES), reason=pick(REASONS), adj=pick(ADJECTIVES),
                          adj2=pick(ADJECTIVES), plural=pick(PLURALS), num=pick(NUMBERS))
        if keyword_free(text):
            return text


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
    version: int = VERSION

    def __post_init__(self) -> None:
        if not (self.hours > 0 and 10 <= self.segment_s <= 600):
            raise ValueError(f"negatives: hours {self.hours} must be > 0 and segments 10-600 s")
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
class RealWord:
    wave: np.ndarray  # float32 at 16 kHz, silence trimmed
    word: str
    file: str  # path relative to ../shared/data
    speaker: str
    corpus: str


def real_words(cfg: NegativesConfig) -> list[RealWord]:
    """Every clip of the real sets whose word is no keyword (all splits), trimmed to the spoken part."""
    from kws.data import SHORTCUTS, open_source
    from kws.data.synth import trim_silence

    out = []
    for name in cfg.real_sets:
        spec = SHORTCUTS[name]
        root = Path(spec.partition(":")[2])
        if not root.is_dir():
            continue
        src = open_source(spec, labels=None)
        for split in ("train", "validation", "test"):
            cs = src.split(split)
            for i in range(len(cs)):
                w = cs.words[i]
                if w in cfg.keywords or w == SILENCE or not keyword_free(w, cfg.keywords):
                    continue
                x = trim_silence(from_int16(cs.waves[i]))
                if x.size < SAMPLE_RATE // 10:
                    continue
                out.append(RealWord(x, w, _rel(cs.files[i], root.parent), cs.speakers[i] or "", name))
    return sorted(out, key=lambda r: r.file)


def real_noise(cfg: NegativesConfig) -> np.ndarray:
    """gsc12-dev's `_silence_` clips joined into one noise source (empty without the data)."""
    from bench.signals import noise_from_clips
    from kws.data import SHORTCUTS, open_source

    root = Path(SHORTCUTS["gsc12-dev"].partition(":")[2])
    if not root.is_dir():
        return np.zeros(0, np.float32)
    src = open_source(SHORTCUTS["gsc12-dev"], labels=None)
    clips = [cs.waves[i] for s in ("train", "validation", "test") for cs in [src.split(s)]
             for i in range(len(cs)) if cs.words[i] == SILENCE]
    return noise_from_clips(from_int16(np.stack(clips))) if clips else np.zeros(0, np.float32)


def _rel(path: str, base: Path) -> str:
    p = Path(path)
    return p.relative_to(base).as_posix() if p.is_relative_to(base) else p.name


# ----------------------------------------------------------------------------- building


class Speaker:
    """An espeak voice drawn like the synthetic set's speakers (accent, variant, vocal tract, pitch, habits)."""

    def __init__(self, engine: Any, name: str, rng: np.random.Generator) -> None:
        from kws.data import synth

        accents = list(synth.ENGLISH_ACCENTS)
        w = np.array([synth.ENGLISH_ACCENTS[a] for a in accents])
        self.accent = accents[int(rng.choice(len(accents), p=w / w.sum()))]
        variants = [v for v in synth.VARIANTS if v not in synth.RARE_VARIANTS]
        self.variant = variants[int(rng.integers(len(variants)))]
        self.vtl, self.pitch_scale = float(rng.uniform(0.86, 1.16)), float(rng.uniform(0.8, 1.25))
        self.rate, self.pitch, self.intonation = (float(rng.uniform(0.8, 1.3)), float(rng.uniform(0.2, 0.8)),
                                                  float(rng.uniform(0.2, 0.9)))
        text = synth.voice_file_text(engine.data_path, self.accent, self.variant, self.vtl, self.pitch_scale)
        self.voice = synth.install_voice(engine.data_path, name, text)
        self.name = name

    def say(self, engine: Any, text: str, seed: int) -> np.ndarray:
        from kws.data import synth

        x = engine.synth(text, self.voice, int(np.clip(round(175 * self.rate), 80, 450)), int(round(99 * self.pitch)),
                         int(round(99 * self.intonation)), seed=seed)
        return synth.trim_silence(synth.to_16k(x, engine.sample_rate))


class Builder:
    """Renders segments; one per process (it holds a private espeak data folder)."""

    def __init__(self, cfg: NegativesConfig, words: list[RealWord], noise: np.ndarray, espeak_dir: Path) -> None:
        from kws.data import synth

        self.cfg, self.words, self.noise = cfg, words, noise
        self.engine = synth.EspeakLib(synth.private_espeak_data(espeak_dir, synth.ENGLISH_ACCENTS))
        order = np.random.default_rng([cfg.seed, 0xA11]).permutation(len(words))
        self.assign = np.array_split(order, cfg.n_segments)  # every real word in exactly one segment

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

    def segment(self, index: int) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
        """Segment `index`: int16 audio, its utterances, its noise."""
        from kws.data import synth

        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, index])
        n = cfg.segment_samples
        bed, noise_kind, level_db = self.bed(rng, n)
        bed_rms = float(np.sqrt(np.mean(bed.astype(np.float64) ** 2))) or 1e-4
        speakers = [Speaker(self.engine, f"neg{index % 1000:03d}v{k}", rng) for k in range(6)]
        items: list[tuple[str, Any]] = [("real", self.words[i]) for i in self.assign[index]]
        mean_gap = float(np.mean(cfg.gap_s))
        used = sum(w.wave.size / SAMPLE_RATE + mean_gap for _, w in items)
        while used < cfg.segment_s - 1.0:  # sentences fill the rest of the segment
            sp = speakers[int(rng.integers(len(speakers)))]
            text = sentence(rng)
            x = sp.say(self.engine, text, int(rng.integers(2 ** 31 - 1)))
            items.append(("sentence", (text, sp, x)))
            used += x.size / SAMPLE_RATE + mean_gap
        order = rng.permutation(len(items))
        out = bed.astype(np.float64)
        events: list[dict[str, Any]] = []
        pos = int(rng.uniform(0.2, 1.0) * SAMPLE_RATE)
        for j in order:
            kind, item = items[j]
            dry = item.wave if kind == "real" else item[2]
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
            if kind == "real":
                ev.update(word=item.word, file=item.file, speaker=item.speaker, corpus=item.corpus)
            else:
                ev.update(text=item[0], voice=f"{item[1].accent}+{item[1].variant or 'default'}")
            events.append(ev)
            pos += dry.size + int(rng.uniform(*cfg.gap_s) * SAMPLE_RATE)
        peak = float(np.abs(out).max())
        if peak > 0.98:
            out *= 0.98 / peak  # a sound card's full scale, without clipping
        info = {"index": index, "noise": noise_kind, "noise_dbfs": round(level_db, 2),
                "real_words_assigned": int(len(self.assign[index])),
                "real_words_placed": sum(e["kind"] == "real" for e in events),
                "speech_s": round(sum(e["end_s"] - e["start_s"] for e in events), 2)}
        return to_int16(out), events, info


# ----------------------------------------------------------------------------- the cache


def _key(cfg: NegativesConfig, words: list[RealWord], noise: np.ndarray) -> str:
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

    return cache_root() / "negatives" / f"neg-{cfg.hours:g}h-seed{cfg.seed}-{key}"


def build_negatives(cfg: NegativesConfig = NegativesConfig(), progress: bool = True) -> Path:
    """Build (or finish building) the stream; returns its cache folder. Segments already there are kept."""
    from tqdm import tqdm

    words, noise = real_words(cfg), real_noise(cfg)
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
            "settings": dataclasses.asdict(cfg), "segments": cfg.n_segments, "real_words": len(words),
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
                "utterances": {k: sum(e["kind"] == k for e in self.events) for k in ("real", "sentence")},
                "speech_hours": {k: round(v / 3600, 3) for k, v in kinds.items()},
                "real_speakers": len({e["speaker"] for e in self.events if e["kind"] == "real" and e["speaker"]}),
                "noise_segments": noise, "cache": self.folder.name, "settings": self.settings}


def load_negatives(cfg: NegativesConfig = NegativesConfig(), build: bool = True) -> NegativeStream:
    """The stream of `cfg`, built first if needed (`build=False`: FileNotFoundError when incomplete)."""
    words, noise = real_words(cfg), real_noise(cfg)
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
    a = p.parse_args(argv)
    cfg = NegativesConfig(hours=a.hours, seed=a.seed)
    folder = build_negatives(cfg)
    print(json.dumps(load_negatives(cfg, build=False).summary(), indent=1))
    print(f"negatives: {folder}")
    return 0
