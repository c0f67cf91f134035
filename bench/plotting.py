"""Matplotlib helpers that keep the report's plots readable at any size (7 models x 6 backends).

- `place_labels`: direct labels beside points, each at the first offset where it overlaps no
  other label, no marker and stays inside the axes (greedy: cheap, deterministic);
- `legend_outside`: one legend for a whole figure, right of the axes, never over the data;
- `log_axis_with_zero`: a log axis that draws 0 at its own tick, left of a break, instead of
  piling zero values onto the axis line (symlog's way);
- `text_overlaps`: which texts of a drawn figure overlap: the tests' check that a plot reads.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Offsets (points) tried in order for a direct label: beside, then above/below, then further out.
_OFFSETS: tuple[tuple[float, float, str, str], ...] = tuple(
    (dx * k, dy * k, ha, va) for k in (1.0, 2.2, 3.6)
    for dx, dy, ha, va in ((6, 4, "left", "bottom"), (6, -4, "left", "top"), (-6, 4, "right", "bottom"),
                           (-6, -4, "right", "top"), (0, 9, "center", "bottom"), (0, -9, "center", "top"),
                           (9, 0, "left", "center"), (-9, 0, "right", "center")))


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(ax, labelled: Sequence[tuple[float, float, str]], obstacles: Sequence[tuple[float, float]] = (),
                 fontsize: float = 7.0, marker_px: float = 7.0) -> list:
    """Annotate each (x, y, text) in data coordinates without overlapping the others.

    obstacles: every plotted point (x, y), so labels keep off the markers too. Call after the
    axes' scales, limits and the figure layout are final: placement is in display space.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken = [Bbox.from_extents(px - marker_px, py - marker_px, px + marker_px, py + marker_px)
             for px, py in ax.transData.transform(np.asarray(list(obstacles) or [(np.nan, np.nan)], float))
             if np.isfinite(px) and np.isfinite(py)]
    inner = ax.get_window_extent(renderer)
    placed = []
    for x, y, text in labelled:
        best, best_cost = None, math.inf
        for dx, dy, ha, va in _OFFSETS:
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                            fontsize=fontsize, color="0.15")
            box = t.get_window_extent(renderer).padded(1.5)
            outside = (max(0.0, inner.x0 - box.x0) + max(0.0, box.x1 - inner.x1)
                       + max(0.0, inner.y0 - box.y0) + max(0.0, box.y1 - inner.y1))
            cost = sum(_overlap(box, o) for o in taken) + 1e4 * outside + 0.01 * math.hypot(dx, dy)
            if cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (t, box), cost
            else:
                t.remove()
            if cost < 1.0:  # free spot (the distance term only orders the free ones)
                break
        taken.append(best[1])
        placed.append(best[0])
    return placed


def legend_outside(fig, axes: Sequence, title: str | None = None, fontsize: float = 8.0) -> None:
    """Move the axes' legends into one figure legend right of the plots (deduplicated by label)."""
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=fontsize,
                   title=title, frameon=False, borderaxespad=0.0)


def log_axis_with_zero(ax, values: Sequence[float], axis: str = "x", zero_label: str = "0",
                       floor: float | None = None) -> float:
    """A log axis where 0 gets its own tick, a factor of 4 below the smallest positive value.

    Returns the coordinate that stands for 0: plot zeros there. `floor` is a value that should
    stay right of the break (e.g. a target line at 1 FA/h). A dotted line marks the break.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    v = np.asarray(values, dtype=float)
    pos = v[np.isfinite(v) & (v > 0)]
    smallest = min([*pos.tolist(), *([floor] if floor else [])] or [1.0])
    zero_at = smallest / 4.0
    hi = max(pos.max() if pos.size else smallest, smallest) * 1.6
    decades = 10.0 ** np.arange(math.floor(math.log10(smallest)), math.ceil(math.log10(hi)) + 1)
    majors = [zero_at] + [d for d in decades if smallest / 1.5 <= d <= hi]
    fmt = FuncFormatter(lambda val, _: zero_label if math.isclose(val, zero_at) else f"{val:g}")
    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    a.set_major_locator(FixedLocator(majors))
    a.set_major_formatter(fmt)
    a.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    a.set_minor_formatter(NullFormatter())
    (ax.set_xlim if axis == "x" else ax.set_ylim)(zero_at / 1.8, hi)
    brk = math.sqrt(zero_at * smallest)
    (ax.axvline if axis == "x" else ax.axhline)(brk, color="0.6", ls=(0, (1, 2)), lw=1.0)
    return zero_at


def text_overlaps(fig, ignore: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes overlap, by their strings.

    "Drawn" is what a draw actually renders: matplotlib keeps Text objects for ticks outside the
    view limits, so the texts are collected by watching Text.draw during one draw of the figure.
    """
    from matplotlib.text import Text

    drawn: list = []
    original = Text.draw

    def watch(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer)

    Text.draw = watch
    try:
        fig.canvas.draw()
    finally:
        Text.draw = original
    renderer = fig.canvas.get_renderer()
    boxes = []
    for t in dict.fromkeys(drawn):
        s = t.get_text().strip()
        box = t.get_window_extent(renderer)
        if s in ignore or box.width <= 0 or box.height <= 0:
            continue
        boxes.append((s, box))
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if _overlap(ba, bb) > 1.0]
