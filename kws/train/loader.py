"""The data path: whole batches sliced from the int16 memmap, shipped as int16, floated on the device.

A batch is one fancy-index read of the memmap (B x 32 kB, sorted for locality) instead of
B `__getitem__` calls and a collate: the host does a memcpy per batch and nothing else,
and int16 halves the bytes pinned and copied to the GPU. Augmentation happens on the
device (kws.train.augment). Sharding uses torch's DistributedSampler, also with one
process, so the shuffle order is a function of (seed, epoch) alone: a resumed run sees
the same batches as an uninterrupted one.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

INT16_SCALE = 32768.0


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


def _as_batch(batch):
    return batch  # __getitems__ already returns the collated batch


def make_loader(ds: ClipBatches, batch_size: int, *, train: bool, seed: int, rank: int = 0, world: int = 1,
                workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Training: shuffled, sharded over `world` processes, whole batches only (BatchNorm needs
    > 1 sample, and equal batch counts per rank keep DDP's all-reduces in step).
    Evaluation: every clip exactly once, rank r taking clips r, r+world, ... (no padding
    duplicates, so all-reduced sums are exact)."""
    if train:
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
    else:
        sampler = range(rank, len(ds), world)
    batches = BatchSampler(sampler, batch_size, drop_last=train and len(ds) // world >= batch_size)
    # Persistent workers: no re-fork every epoch. The shuffle lives in the sampler, which runs in
    # the main process, so set_epoch still reaches it.
    return DataLoader(ds, batch_sampler=batches, collate_fn=_as_batch, num_workers=workers,
                      pin_memory=pin_memory, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


def to_device(batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """int16 [B, T] -> float32 in [-1, 1) on the device; the conversion runs there, not on the host."""
    x, y = batch
    x = x.to(device, non_blocking=True).float().div_(INT16_SCALE)
    return x, y.to(device, non_blocking=True)

