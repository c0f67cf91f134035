"""Process-group plumbing: the same code runs as one process or under `torchrun --nproc-per-node N`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them this is a world of one and no
process group is created. NCCL on GPUs, gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Env:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' asked for, but torch sees no CUDA GPU (use --device cpu)")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)  # one GPU per process under torchrun
        torch.cuda.set_device(dev)
    return dev


def setup(device: str) -> Env:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None)
    return Env(rank, world, local_rank, dev)


def teardown(env: Env) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: Env) -> None:
    if env.distributed:
        dist.barrier()


def all_sum(env: Env, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Sum tensors over processes (in place, one collective each); exact for integer counts."""
    if env.distributed:
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return list(tensors)


def any_true(env: Env, flag: bool) -> bool:
    """True if any process says so: every rank must agree on when to stop."""
    if not env.distributed:
        return flag
    t = torch.tensor([int(flag)], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_str(env: Env, s: str) -> str:
    """Rank 0's string on every rank (a uint8 tensor, not broadcast_object_list: no pickle)."""
    if not env.distributed:
        return s
    data = torch.tensor(list(s.encode()) if env.main else [], dtype=torch.uint8)
    n = torch.tensor([data.numel()], device=env.device)
    dist.broadcast(n, 0)
    buf = data.to(env.device) if env.main else torch.empty(int(n.item()), dtype=torch.uint8, device=env.device)
    dist.broadcast(buf, 0)
    return bytes(buf.cpu().tolist()).decode()
