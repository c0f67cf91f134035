"""The decoded clip cache: one int16 [N, 16000] `.npy` per split, memory-mapped.

Decoding a WAV costs far more than copying 32 kB from the page cache, so each split is
decoded once (in parallel, with a progress bar), written atomically, and then only
memory-mapped: an epoch never re-decodes audio.

Layout: `<cache root>/clips/<source>/<split>-<key>.npy` plus `<split>-<key>.json`, the
manifest (clip files, words, speakers, bad files). The key hashes the clip entries (path,
size, mtime, word, cut position, gain) and the decoding settings, so it changes whenever the
clip list changes -- fast mode, seed, label view (through the clips it keeps) or an edited
file -- and two label views of the same clips ("35s" and "12") share one cache.

The manifest is written after the array and is the commit mark: a build killed at any point
leaves either no cache or a complete one (temporary files are removed, or swept up by the
next build in that folder: its own key's under its lock, every other key's whose lock is free).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from kws.audio import CLIP_SAMPLES, INT16_SCALE, SAMPLE_RATE, AudioError, fit_length, load_audio, to_int16
from kws.data.index import BadFile, ClipEntry
from kws.data.noise import load_noise
from kws.data.views import LabelView
from kws.fsutil import LockedError, atomic_path, atomic_write_json, file_lock, sweep_temps, temp_files
from kws.paths import data_cache

CACHE_FORMAT = 1  # bump when decoding changes, so old caches are not reused
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
_BLOCK = 64  # clips per decode task: amortises thread hand-off, bounds memory in flight


cache_root = data_cache  # `cache_dir`, else $KWS_CACHE, else <project>/data_cache/ (kws.paths)


# --------------------------------------------------------------------------- decoding

def loudest_offset(x: np.ndarray, length: int = CLIP_SAMPLES) -> int:
    """Start of the `length`-sample window with the most energy.

    Home recordings of one word are often longer than 1 s with the word off-centre; the
    loudest second is where the word is, a centre crop may cut it.
    """
    energy = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    window = energy[length:] - energy[:-length]
    return int(np.argmax(window))


def fit_clip(x: np.ndarray, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Fit a waveform to `length` samples: centre-pad a short one, keep the loudest window of a long one."""
    if x.shape[-1] > length:
        return fit_length(x, length, loudest_offset(x, length))
    return fit_length(x, length, "center")


def decode_entry(entry: ClipEntry) -> np.ndarray:
    """One clip as int16 [CLIP_SAMPLES] at 16 kHz. Raises AudioError for a bad file."""
    if entry.start is None:
        x = fit_clip(load_audio(entry.path))
    else:
        x = fit_length(load_noise(entry.path)[entry.start:entry.start + CLIP_SAMPLES], CLIP_SAMPLES, 0)
    if entry.gain != 1.0:
        x = x * np.float32(entry.gain)
    return to_int16(x)


def _decode_or_report(entry: ClipEntry) -> np.ndarray | BadFile:
    try:
        return decode_entry(entry)
    except AudioError as e:
        return BadFile(e.path, e.problem, e.kind)
    except Exception as e:  # noqa: BLE001 - one exotic failure must not abort a 100k-file job
        return BadFile(entry.path, f"unexpected {type(e).__name__}: {e}", "error")


def _decode_block(entries: Sequence[ClipEntry]) -> list[np.ndarray | BadFile]:
    return [_decode_or_report(e) for e in entries]


def decode_all(
    entries: Sequence[ClipEntry], workers: int = DEFAULT_WORKERS
) -> Iterator[tuple[int, list[np.ndarray | BadFile]]]:
    """(first index, results) blocks in entry order. libsndfile and scipy release the GIL,
    so threads decode in parallel without pickling clips between processes."""
    blocks = [entries[i:i + _BLOCK] for i in range(0, len(entries), _BLOCK)]
    if workers <= 1 or len(blocks) <= 1:
        for k, block in enumerate(blocks):
            yield k * _BLOCK, _decode_block(block)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kws-decode") as ex:
        for k, results in enumerate(ex.map(_decode_block, blocks)):
            yield k * _BLOCK, results


# --------------------------------------------------------------------------- keys and files

def entries_key(entries: Sequence[ClipEntry]) -> str:
    """Content key of a clip list: entries, file stats and decoding settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "sr": SAMPLE_RATE, "n": CLIP_SAMPLES}).encode())
    for e in entries:
        try:
            st = os.stat(e.path)
            stat = (st.st_size, st.st_mtime_ns)
        except OSError:
            stat = (-1, -1)  # decoding will report it as missing
        h.update(json.dumps([e.path, e.word, e.speaker, e.start, e.gain, *stat]).encode())
        h.update(b"\n")
    return h.hexdigest()[:20]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] or "source"


# --------------------------------------------------------------------------- the clip set

class ClipSet:
    """A split of a source: int16 clips (memory-mapped), labels, and their provenance.

    `cs[i]` is `(float32 waveform [16000] in [-1, 1), int label)`, so a ClipSet is directly a
    map-style dataset for torch's DataLoader; `cs.batch(idx)` reads many clips at once.
    """

    def __init__(
        self,
        waves: np.ndarray,
        words: Sequence[str],
        files: Sequence[str],
        speakers: Sequence[str],
        view: LabelView,
        bad: Sequence[BadFile] = (),
        path: Path | None = None,
        name: str = "",
    ) -> None:
        if waves.ndim != 2 or waves.shape[1] != CLIP_SAMPLES or waves.dtype != np.int16:
            raise ValueError(f"{name}: clips must be int16 [N, {CLIP_SAMPLES}], got {waves.dtype} {waves.shape}")
        if not (len(words) == len(files) == len(speakers) == waves.shape[0]):
            raise ValueError(f"{name}: {waves.shape[0]} clips but {len(words)} words, {len(files)} files")
        self.waves = waves
        self.words = list(words)
        self.files = list(files)
        self.speakers = list(speakers)
        self.labels = view.labels
        self.y = np.fromiter((view.index_of(w) for w in self.words), dtype=np.int64, count=len(self.words))
        self.bad = tuple(bad)
        self.path = path
        self.name = name

    def __len__(self) -> int:
        return int(self.waves.shape[0])

    def __getstate__(self) -> dict:
        # DataLoader workers started by spawn (macOS, Windows) pickle the dataset: send the
        # cache path and re-map it there, instead of copying gigabytes through a pipe.
        state = self.__dict__.copy()
        if isinstance(self.waves, np.memmap) and self.path is not None:
            state["waves"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.waves is None:
            self.waves = np.load(self.path, mmap_mode="r")

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.waves[i].astype(np.float32) / np.float32(INT16_SCALE), int(self.y[i])

    def batch(self, idx: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 [B, 16000] and int64 [B] for indices `idx` (read in file order, returned in `idx` order)."""
        idx = np.asarray(idx, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        out = np.empty((len(idx), CLIP_SAMPLES), dtype=np.float32)
        out[order] = self.waves[idx[order]]  # sorted reads are sequential on disk
        out *= np.float32(1.0 / INT16_SCALE)
        return out, self.y[idx]

    def counts(self) -> dict[str, int]:
        """Clips per label, in label order (labels with no clips included)."""
        n = np.bincount(self.y, minlength=len(self.labels))
        return {lab: int(c) for lab, c in zip(self.labels, n)}

    def __repr__(self) -> str:
        return f"ClipSet({self.name!r}, clips={len(self)}, labels={len(self.labels)}, bad={len(self.bad)})"


def _compact(tmp: Path, keep: np.ndarray) -> None:
    """Rewrite `tmp` with only the rows in `keep` (after bad files left holes)."""
    src = np.load(tmp, mmap_mode="r")
    with atomic_path(tmp) as tmp2:
        dst = np.lib.format.open_memmap(tmp2, mode="w+", dtype=np.int16, shape=(int(keep.sum()), CLIP_SAMPLES))
        rows = np.flatnonzero(keep)
        for i in range(0, len(rows), 4096):
            dst[i:i + 4096] = src[rows[i:i + 4096]]
        dst.flush()
        del dst
    del src


def build_cache(
    entries: Sequence[ClipEntry],
    npy_path: Path,
    manifest_path: Path,
    key: str,
    workers: int = DEFAULT_WORKERS,
    desc: str = "decode",
) -> dict:
    """Decode `entries` into `npy_path` (atomically), then write the manifest. Returns it."""
    n = len(entries)
    bad: list[BadFile] = []
    keep = np.zeros(n, dtype=bool)
    t0 = time.perf_counter()
    with atomic_path(npy_path) as tmp:
        waves = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(n, CLIP_SAMPLES))
        with tqdm(total=n, desc=desc, unit="clip", dynamic_ncols=True) as bar:
            for first, results in decode_all(entries, workers):
                for j, res in enumerate(results):
                    if isinstance(res, BadFile):
                        bad.append(res)
                    else:
                        waves[first + j] = res
                        keep[first + j] = True
                bar.update(len(results))
                if bad:
                    bar.set_postfix(bad=len(bad), refresh=False)
        waves.flush()
        del waves
        if bad:
            _compact(tmp, keep)
    seconds = time.perf_counter() - t0
    kept = [e for e, k in zip(entries, keep) if k]
    manifest = {
        "format": CACHE_FORMAT,
        "key": key,
        "clips": len(kept),
        "files": [e.ref for e in kept],
        "words": [e.word for e in kept],
        "speakers": [e.speaker for e in kept],
        "bad": [b.to_dict() for b in bad],
        "decode_seconds": round(seconds, 3),
        "decode_clips_per_s": round(n / seconds, 1) if seconds > 0 else None,
    }
    atomic_write_json(manifest_path, manifest)
    return manifest


def _read_manifest(npy_path: Path, manifest_path: Path, key: str) -> tuple[dict, np.ndarray] | None:
    """The cached (manifest, memmap) if complete and consistent, else None."""
    try:
        manifest = json.loads(manifest_path.read_text())
        waves = np.load(npy_path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if (manifest.get("format") != CACHE_FORMAT or manifest.get("key") != key
            or waves.dtype != np.int16 or waves.shape != (manifest.get("clips"), CLIP_SAMPLES)):
        return None
    return manifest, waves


def open_split_cache(
    entries: Sequence[ClipEntry],
    folder: Path,
    split: str,
    view: LabelView,
    workers: int = DEFAULT_WORKERS,
    name: str = "",
) -> ClipSet:
    """The ClipSet of `entries`, decoded into `folder` on first use and memory-mapped after."""
    key = entries_key(entries)
    npy_path = folder / f"{split}-{key}.npy"
    manifest_path = folder / f"{split}-{key}.json"
    _sweep_stale_tmp(folder)  # on every open: a kill's leftovers must not wait for the next build
    found = _read_manifest(npy_path, manifest_path, key)
    if found is None:
        # one lock per key: two jobs opening one source build its cache once, not twice
        with file_lock(_lock_path(folder, f"{split}-{key}")):
            found = _read_manifest(npy_path, manifest_path, key)  # another job may have built it
            if found is None:
                _sweep_stale_tmp(folder, f"{split}-{key}")
                manifest_path.unlink(missing_ok=True)  # an old manifest must not bless a new array
                build_cache(entries, npy_path, manifest_path, key, workers, desc=f"decode {name}")
                found = _read_manifest(npy_path, manifest_path, key)
        if found is None:  # pragma: no cover - the file system lost what was just written
            raise OSError(f"{npy_path}: cache could not be read back after building it")
    manifest, waves = found
    bad = [BadFile(**b) for b in manifest["bad"]]
    return ClipSet(waves, manifest["words"], manifest["files"], manifest["speakers"], view,
                   bad=bad, path=npy_path, name=name)


_TEMP_STEM = re.compile(r"^\.+(?P<stem>[A-Za-z]+-[0-9a-f]+)\.(?:npy|json)\.")


def _lock_path(folder: Path, stem: str) -> Path:
    return folder / f".{stem}.lock"


def _sweep_stale_tmp(folder: Path, own: str | None = None) -> int:
    """Delete what SIGKILLed builds left in `folder` (normal failures clean up after themselves).

    The temporaries of `own` (whose lock the caller holds) go at once; those of any other key
    only if its lock is free, since a held lock means a build in progress whose files are live.
    Returns the bytes freed.
    """
    by_stem: dict[str, list[Path]] = {}
    for p in temp_files(folder):
        m = _TEMP_STEM.match(p.name)
        if m:  # array, manifest and compaction (`..x.npy.A.tmp.B.tmp`) temporaries of one key
            by_stem.setdefault(m["stem"], []).append(p)
    freed = sweep_temps(by_stem.pop(own, [])) if own is not None else 0
    for stem, paths in by_stem.items():
        try:
            with file_lock(_lock_path(folder, stem), blocking=False):
                freed += sweep_temps(paths)
        except LockedError:
            continue
    return freed
