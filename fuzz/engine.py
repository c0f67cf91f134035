"""Two ways to feed a target: atheris (coverage-guided libFuzzer) or a seeded mutation loop.

Both count every case by outcome and never stop at a finding: an unexpected outcome is
recorded (type, message, the input saved under `findings/`) and the run goes on, so a long
run reports how many there were. One worker process fuzzes one target (atheris' `Fuzz()`
never returns, and a crash in native code must not take the other targets down); it writes
its summary as JSON, also every `FLUSH_EVERY` cases so that a crash still leaves counts.
"""
from __future__ import annotations

import collections
import hashlib
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from fuzz.targets import MAX_LEN, Target, make_target

FLUSH_EVERY = 1000
INSTRUMENTED = ["kws", "backends", "zoo"]  # the project's code: coverage guides atheris through it


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


class Tally:
    """Outcome counts of one target, its findings, and the summary written as JSON."""

    def __init__(self, target: str, engine: str, seed: int, cases: int, findings: Path, summary: Path) -> None:
        self.target, self.engine, self.seed, self.asked = target, engine, seed, cases
        self.findings, self.summary = findings, summary
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.unexpected: list[dict[str, str]] = []
        self.n = 0
        self.slowest_s = 0.0
        self.header_outcomes: tuple[str, ...] = ()
        self.t0 = time.perf_counter()

    def case(self, tgt: Target, data: bytes) -> None:
        self.header_outcomes = tgt.header_outcomes
        t = time.perf_counter()
        try:
            outcome = tgt.run(data)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - every other outcome is a finding (pyo3 panics included)
            outcome = "UNEXPECTED"
            self._finding(data, e)
        self.slowest_s = max(self.slowest_s, time.perf_counter() - t)
        self.outcomes[outcome] += 1
        self.n += 1
        if self.n % FLUSH_EVERY == 0:
            self.write()

    def _finding(self, data: bytes, e: BaseException) -> None:
        self.findings.mkdir(parents=True, exist_ok=True)
        path = self.findings / f"{self.target}-{hashlib.sha1(data).hexdigest()[:16]}.bin"
        path.write_bytes(data)
        if len(self.unexpected) < 100:
            self.unexpected.append({"type": type(e).__name__, "message": str(e)[:300], "input": str(path)})

    def write(self, done: bool = False) -> dict[str, Any]:
        seconds = time.perf_counter() - self.t0
        out = {"target": self.target, "engine": self.engine, "seed": self.seed, "cases_asked": self.asked,
               "cases": self.n, "done": done, "seconds": round(seconds, 2),
               "cases_per_s": round(self.n / seconds, 1) if seconds > 0 else None,
               "slowest_case_s": round(self.slowest_s, 3),
               "outcomes": dict(sorted(self.outcomes.items())),
               **({"past_header": self.n - sum(self.outcomes.get(k, 0) for k in self.header_outcomes),
                   "past_header_share": round(1 - sum(self.outcomes.get(k, 0) for k in self.header_outcomes)
                                              / max(1, self.n), 4)} if self.header_outcomes else {}),
               "unexpected": self.outcomes.get("UNEXPECTED", 0), "findings": self.unexpected}
        from kws.fsutil import atomic_write_json

        atomic_write_json(self.summary, out)
        return out


# ----------------------------------------------------------------------------- seeded mutation loop

INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """1-4 stacked byte-level mutations (libFuzzer's basic set), deterministic for a given rng."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(b)
        if op == 0 and n:  # flip a bit
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # a random byte
            b[rng.randrange(n)] = rng.randrange(256)
        elif op == 2 and n >= 4:  # an interesting little-endian integer (sizes, counts, offsets)
            i = rng.randrange(n - 3)
            width = rng.choice((1, 2, 4))
            b[i:i + width] = (rng.choice(INTERESTING) & ((1 << 8 * width) - 1)).to_bytes(width, "little")
        elif op == 3:  # insert random bytes
            i = rng.randrange(n + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and n > 1:  # delete a range
            i = rng.randrange(n)
            del b[i:i + rng.randint(1, max(1, min(64, n - i)))]
        elif op == 5 and n > 1:  # duplicate a range
            i = rng.randrange(n)
            b[i:i] = b[i:i + rng.randint(1, 64)]
        elif op == 6 and n:  # truncate
            del b[rng.randrange(n):]
        elif op == 7:  # splice in a piece of another seed
            other = rng.choice(seeds)
            if other:
                i, j = rng.randrange(len(other)), rng.randrange(n + 1)
                b[j:j + rng.randint(0, 64)] = other[i:i + rng.randint(1, 64)]
        elif op == 8 and n:  # an ASCII digit run made huge or negative (JSON sizes, header numbers)
            i = rng.randrange(n)
            b[i:i + 1] = rng.choice((b"9999999999", b"-1", b"1e308", b"NaN", b"0.0", b'"', b"null"))
    return bytes(b[:MAX_LEN])


def mutation_loop(tgt: Target, tally: Tally, cases: int, seed: int, max_seconds: float | None) -> None:
    rng = random.Random(seed)
    corpus = list(tgt.seeds)
    for s in corpus:  # the seeds themselves first: each must be a valid case
        tally.case(tgt, s)
    while tally.n < cases:
        if max_seconds is not None and time.perf_counter() - tally.t0 > max_seconds:
            break
        base = rng.choice(corpus)
        tally.case(tgt, mutate(base, rng, tgt.seeds))


# ----------------------------------------------------------------------------- atheris

def atheris_loop(name: str, tally: Tally, cases: int, seed: int, max_seconds: float | None, work: Path) -> None:
    """libFuzzer drives; this process exits (os._exit) once `cases` cases are counted."""
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        tgt = make_target(name, work)
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(tgt.seeds):
        (corpus / f"seed{i}").write_bytes(s)

    def one(data: bytes) -> None:
        tally.case(tgt, data)
        out_of_time = max_seconds is not None and time.perf_counter() - tally.t0 > max_seconds
        if tally.n >= cases or out_of_time:
            tally.write(done=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    tally.findings.mkdir(parents=True, exist_ok=True)
    # -len_control=0: libFuzzer otherwise caps new inputs at a few bytes and grows the cap slowly, so the
    # first thousands of cases are cut to fragments of the seeds that no header survives
    args = [sys.argv[0], f"-seed={seed}", f"-max_len={MAX_LEN}", "-len_control=0", "-rss_limit_mb=4096",
            "-timeout=60",
            "-print_final_stats=0", f"-artifact_prefix={tally.findings}/{name}-crash-", str(corpus)]
    atheris.Setup(args, one)
    atheris.Fuzz()


def worker(name: str, engine: str, cases: int, seed: int, summary: Path, findings: Path,
           max_seconds: float | None, work: Path) -> int:
    tally = Tally(name, engine, seed, cases, findings, summary)
    if engine == "atheris":
        atheris_loop(name, tally, cases, seed, max_seconds, work)  # exits the process
        return 1  # pragma: no cover - libFuzzer stopped on its own (it should not)
    mutation_loop(make_target(name, work), tally, cases, seed, max_seconds)
    tally.write(done=True)
    return 0
