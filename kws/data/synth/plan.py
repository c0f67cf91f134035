"""The plan: every random choice of a build, drawn from the seed before any audio is made. It holds
the records a build is made of (Speaker, Room, Channel, Noise, ClipSpec, Plan), the draws of each,
the spread of takes over speakers, and the speaker-disjoint split assignment; rendering then only
reads its entries, which is why the bytes do not depend on the number of workers or their order.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from kws.data.synth.festival import FESTIVAL_VOICES
from kws.data.synth.piper import PIPER_VOICES
from kws.data.synth.settings import (
    CLIPS_PER_SPEAKER, DISTORTED_SHARE, ENGINE_SHARES, ENGINES, ENGLISH_ACCENTS, FLITE_VOICES, FOREIGN_ACCENTS,
    FOREIGN_SHARE, MARKS, NOISE_KINDS, RARE_VARIANTS, ROOM_SHARE, SPLIT_FRACTIONS, VARIANTS, SynthError,
    SynthSettings,
)


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
