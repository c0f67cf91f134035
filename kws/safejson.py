"""JSON from files that come from outside, parsed with bounds on size and nesting depth.

`json.loads` of `[[[[...]]]]` 100,000 levels deep raises RecursionError (not a ValueError, so
no reader's `except ValueError` catches it), and a multi-megabyte metadata string costs memory
for nothing. Every reader of a checkpoint's or an ONNX file's metadata goes through `loads`,
which raises ValueError for all of it; the caller names the file.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

MAX_CHARS = 4 << 20  # one metadata value: the largest written here (a quantization report) is ~100 kB
MAX_DEPTH = 32  # the deepest written here is 4 (a parity record, the accuracy figures)


def depth(text: str) -> int:
    """The deepest nesting of [ and { in JSON text, brackets inside strings ignored (linear time:
    a regular expression for strings backtracks quadratically on an unclosed run of escaped quotes)."""
    b = np.frombuffer(text.encode("utf-8", "replace"), np.uint8)  # multi-byte UTF-8 never holds these bytes
    if not b.size:
        return 0
    pos = np.arange(b.size)
    backslash = b == ord("\\")
    last_other = np.maximum.accumulate(np.where(backslash, -1, pos))  # the last non-backslash at or before i
    quote = b == ord('"')
    run = np.zeros(b.size, np.int64)  # backslashes right before each position
    run[1:] = pos[:-1] - last_other[:-1]
    real_quote = quote & (run % 2 == 0)
    outside = np.cumsum(real_quote) % 2 == 0  # a string runs from one unescaped quote to the next
    step = ((b == ord("[")) | (b == ord("{"))).astype(np.int64) - ((b == ord("]")) | (b == ord("}")))
    return int(np.cumsum(np.where(outside, step, 0)).max(initial=0))


def loads(text: Any, what: str = "JSON", max_chars: int = MAX_CHARS, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads within bounds; ValueError saying what is wrong for every bad input."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} is not UTF-8 text") from None
    if not isinstance(text, str):
        raise ValueError(f"{what} is {type(text).__name__}, not JSON text")
    if len(text) > max_chars:
        raise ValueError(f"{what} is {len(text):,} characters long, over the {max_chars:,} limit")
    d = depth(text)
    if d > max_depth:
        raise ValueError(f"{what} nests {d} levels deep, over the limit of {max_depth}")
    try:
        return json.loads(text)
    except RecursionError:  # unreachable within max_depth; kept so that no bound can be missed
        raise ValueError(f"{what} nests too deeply") from None
    except ValueError as e:
        raise ValueError(f"{what} is not valid JSON ({e})") from None
