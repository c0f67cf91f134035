"""The data path: whole batches sliced from the int16 memmap, shipped as int16, floated on the device.

A batch is one fancy-index read of the memmap (B x 32 kB, sorted for locality) instead of
B `__getitem__` calls and a collate: the host does a memcpy per batch and nothing else,
and int16 halves the bytes pinned and copied to the GPU. Augmentation happens on the
device (training.augment). Sharding uses torch's DistributedSampler, also with one
process, so the shuffle order is a function of (seed, epoch) alone: a resumed run sees
the same batches as an uninterrupted one.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from kws.audio import INT16_SCALE


class ClipBatches(Dataset):
    """A (sub)set of a ClipSet, readable a whole batch at a time through `__getitems__`."""

    def __init__(self, waves: np.ndarray, y: np.ndarray, index: np.ndarray | None = None) -> None:
        self.waves = waves
        self.y = np.asarray(y, dtype=np.int64)
        self.index = np.arange(len(self.y)) if index is None else np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = self.index[i]
        return torch.from_numpy(np.asarray(self.waves[j])), int(self.y[j])

    def __getitems__(self, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.sort(self.index[np.asarray(items)])  # sorted: sequential reads of the memmap
        return torch.from_numpy(np.ascontiguousarray(self.waves[rows])), torch.from_numpy(self.y[rows])

    # A memmap pickles as a full in-memory copy; spawned workers (macOS, Windows) re-open the file instead.
    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        w = self.waves
        if isinstance(w, np.memmap) and w.filename is not None:
            d["waves"] = ("memmap", w.filename, w.dtype.str, w.shape, w.offset)
        return d

    def __setstate__(self, d: dict) -> None:
        w = d["waves"]
        if isinstance(w, tuple) and w and w[0] == "memmap":
            _, name, dtype, shape, offset = w
            d["waves"] = np.memmap(name, dtype=np.dtype(dtype), mode="r", shape=shape, offset=offset)
        self.__dict__.update(d)


class ViewBatches(Dataset):
    """Precomputed inputs in several views ([N, ...] arrays, one per view), indexed `view * len + i`.

    How cached backbone outputs reach the loop: epoch e reads view e mod V. The view is part
    of the index (see ViewSampler), not dataset state, so DataLoader workers see it too.
    `extra` ([M, ...], labels `extra_y`) are rows N..N+M-1 of every view: inputs with no
    augmented views of their own (the windows of hours of negative speech, bench.mining).
    """

    def __init__(self, views: list[np.ndarray], y: np.ndarray, extra: np.ndarray | None = None,
                 extra_y: np.ndarray | None = None) -> None:
        if not views or any(len(v) != len(y) for v in views):
            raise ValueError(f"every view must hold {len(y)} rows")
        if (extra is None) != (extra_y is None) or (extra is not None and (
                len(extra) != len(extra_y) or extra.shape[1:] != views[0].shape[1:])):
            raise ValueError("extra rows need one label each and the views' row shape")
        self.views = views
        self.n = len(y)
        self.extra = extra
        self.y = np.asarray(y if extra_y is None else np.concatenate([y, extra_y]), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.y)

    def __getitems__(self, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        g = np.sort(np.asarray(items, dtype=np.int64))
        view, rows = divmod(g, len(self.y))
        parts, order = [], []
        for v in np.unique(view):
            r = rows[view == v]
            own = r[r < self.n]
            parts.append(self.views[v][own])
            order.append(own)
            if self.extra is not None and own.size < r.size:
                more = r[r >= self.n]
                parts.append(self.extra[more - self.n])
                order.append(more)
        x = np.concatenate(parts)
        y = self.y[np.concatenate(order)]
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


class WeightedShardSampler(Sampler[int]):
    """N draws per epoch with replacement, P(clip i) proportional to weights[i], sharded over ranks.

    Like DistributedSampler, a function of (seed, epoch) alone, so a resumed run draws what an
    uninterrupted one would.
    """

    def __init__(self, weights: np.ndarray, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 draws: int | None = None) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or not len(w) or not np.all(w >= 0) or w.sum() <= 0:
            raise ValueError("sampling weights must be a non-empty vector of non-negative numbers, not all 0")
        if draws is not None and draws < 1:
            raise ValueError(f"an epoch needs at least one draw, not {draws}")
        self.weights = torch.from_numpy(w)
        self.world, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.per_rank = math.ceil((len(w) if draws is None else draws) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        draws = torch.multinomial(self.weights, self.per_rank * self.world, replacement=True, generator=g)
        return iter(draws[self.rank::self.world].tolist())

    def __len__(self) -> int:
        return self.per_rank


class ViewSampler(Sampler[int]):
    """Wraps a per-clip sampler: epoch e yields `(e mod views) * n + i` for each clip index i."""

    def __init__(self, inner: Sampler[int], n: int, views: int) -> None:
        self.inner, self.n, self.views, self.epoch = inner, n, views, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self):
        offset = (self.epoch % self.views) * self.n
        return (offset + i for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def _as_batch(batch):
    return batch  # __getitems__ already returns the collated batch


def make_loader(ds: ClipBatches | ViewBatches, batch_size: int, *, train: bool, seed: int, rank: int = 0,
                world: int = 1, workers: int = 0, pin_memory: bool = False,
                weights: np.ndarray | None = None, draws: int | None = None) -> DataLoader:
    """Training: shuffled (or drawn by `weights`), sharded over `world` processes, whole batches
    only (BatchNorm needs > 1 sample, and equal batch counts per rank keep DDP's all-reduces
    in step). A ViewBatches dataset is read one view per epoch.
    `draws`: an epoch's length when drawn by weights (default: one draw per row).
    Evaluation: every clip exactly once, rank r taking clips r, r+world, ... (no padding
    duplicates, so all-reduced sums are exact); view 0 of a ViewBatches."""
    if train:
        if weights is not None:
            sampler = WeightedShardSampler(weights, num_replicas=world, rank=rank, seed=seed, draws=draws)
        else:
            sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
        if isinstance(ds, ViewBatches):
            sampler = ViewSampler(sampler, len(ds), len(ds.views))
    else:
        sampler = range(rank, len(ds), world)
    batches = BatchSampler(sampler, batch_size, drop_last=train and len(ds) // world >= batch_size)
    # Persistent workers: no re-fork every epoch. The shuffle lives in the sampler, which runs in
    # the main process, so set_epoch still reaches it.
    return DataLoader(ds, batch_sampler=batches, collate_fn=_as_batch, num_workers=workers,
                      pin_memory=pin_memory, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


def to_device(batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """int16 clips [B, T] -> float32 in [-1, 1), float16 cached features -> float32, on the
    device; the conversion runs there, not on the host."""
    x, y = batch
    pcm = x.dtype == torch.int16
    x = x.to(device, non_blocking=True).float()
    if pcm:
        x.div_(INT16_SCALE)
    return x, y.to(device, non_blocking=True)

