"""Optional download of the official Speech Commands archives.

Streaming download with a progress bar, HTTP Range resume of a `.part` file, sha256
verification, then extraction into a temporary folder renamed into place, so a killed job
leaves either nothing, a resumable `.part`, or a complete data set -- never half of one.
Tar members are extracted with the "data" filter: no absolute paths, no `..`, no links
out of the folder, no device files.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from kws.data.cache import cache_root
from kws.fsutil import sha256_of

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Archive:
    """A published archive and its sha256 (from the torchaudio SPEECHCOMMANDS checksums)."""

    name: str
    url: str
    sha256: str
    size_hint: str  # for messages only


ARCHIVES: dict[str, Archive] = {
    "v0.01": Archive(
        "speech_commands_v0.01",
        "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
        "1.4 GB",
    ),
    "v0.02": Archive(
        "speech_commands_v0.02",
        "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        "2.3 GB",
    ),
}


class DownloadError(RuntimeError):
    """A download or extraction that failed; the message says what to do next."""


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200" -> 100
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _open(url: str, offset: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": "kws-zoo/0.1"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) URLs from ARCHIVES or the user


def download_file(
    url: str,
    dest: str | Path,
    sha256: str | None,
    timeout: float = _TIMEOUT_S,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest`, resuming `dest.part` if present, and verify its sha256.

    Returns `dest`. An existing `dest` with the right checksum is not downloaded again.
    Raises DownloadError on network failure (the `.part` stays for a resume) or on a
    checksum mismatch (the bad file is deleted, so the next run starts clean).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (sha256 is None or sha256_of(dest) == sha256.lower()):
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, have, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the .part is already whole
            return _verify_and_commit(part, dest, url, sha256)
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: cannot connect ({getattr(e, 'reason', e)})") from None
    with resp:
        mode = "ab"
        if have and (resp.status != 206 or _content_range_start(resp.headers.get("Content-Range")) != have):
            have, mode = 0, "wb"  # the server ignored the range: start over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        try:
            with open(part, mode) as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress, dynamic_ncols=True,
            ) as bar:
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
                f.flush()
                os.fsync(f.fileno())
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"{url}: connection lost after {part.stat().st_size} bytes ({e}); "
                                f"run again to resume from {part}") from None
    got = part.stat().st_size
    if total is not None and got < total:
        raise DownloadError(f"{url}: connection closed after {got} of {total} bytes; run again to resume from {part}")
    return _verify_and_commit(part, dest, url, sha256)


def _verify_and_commit(part: Path, dest: Path, url: str, sha256: str | None) -> Path:
    if sha256 is not None:
        actual = sha256_of(part)
        if actual != sha256.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: sha256 mismatch (expected {sha256.lower()}, got {actual}); "
                                f"the corrupt download was deleted, run again to download from scratch")
    os.replace(part, dest)
    return dest


def _members(tar: tarfile.TarFile, bar: tqdm) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        bar.update(1)
        yield member


def extract_tar(archive: str | Path, dest: str | Path, progress: bool = True) -> Path:
    """Extract `archive` into `dest` atomically (temporary sibling folder, then rename).

    An existing `dest` is taken as a finished extraction and returned unchanged.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:*") as tar, tqdm(
            unit="file", desc=f"extract {archive.name}", disable=not progress, dynamic_ncols=True
        ) as bar:
            # Streaming iteration (no getmembers()) reads a 2 GB .tar.gz once, not twice.
            tar.extractall(tmp, members=_members(tar, bar), filter="data")
        os.replace(tmp, dest)
    except tarfile.FilterError as e:
        raise DownloadError(f"{archive}: unsafe archive member refused ({e})") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(f"{archive}: cannot extract ({e})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def download_speech_commands(
    version: str = "v0.02",
    dest: str | Path | None = None,
    sha256: str | None = None,
    url: str | None = None,
    keep_archive: bool = True,
    progress: bool = True,
) -> Path:
    """Download, verify and extract Speech Commands; returns the data folder (use `gsc:<it>`).

    dest: the extracted folder (default `<cache root>/<archive name>`); the archive is kept
    next to it unless keep_archive is False. sha256/url override the published ones (mirrors).
    """
    if version not in ARCHIVES:
        raise DownloadError(f"unknown Speech Commands version {version!r}; expected {', '.join(ARCHIVES)}")
    arch = ARCHIVES[version]
    dest = Path(dest) if dest is not None else cache_root() / arch.name
    if dest.exists():
        return dest
    tarball = dest.parent / f"{arch.name}.tar.gz"
    download_file(url or arch.url, tarball, sha256 or arch.sha256, progress=progress)
    extract_tar(tarball, dest, progress=progress)
    if not keep_archive:
        tarball.unlink(missing_ok=True)
    return dest
