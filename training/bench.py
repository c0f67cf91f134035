"""Training throughput: samples/s per model, and whether the data path keeps up.

    python -m training.bench                        # every model on this CPU, batch 32
    python -m training.bench --models efficientnet_b0 --device cuda    # GPU, AMP, batch 256

Three numbers, measured with the trainer's own code (training.trainer.Engine):
- train step: augmentation + frontend + forward + backward + AdamW on a batch already on the
  device, per model: what the model can consume;
- data path: the DataLoader over an int16 memmap (host), and the same plus the copy to the
  device, the device-side augmentation and the frontend: what it can supply;
- end to end: the real loop (loader + step) for one model; it equals the train-step figure
  when the data path keeps the device busy.

Writes results/train_throughput.json (results/train_throughput_cuda.json on a GPU) and .md.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import zoo
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE
from kws.fsutil import atomic_write_text
from kws.labels import GSC_V2_WORDS, SILENCE
from kws.runinfo import write_results
from training import dist
from training.config import TrainConfig
from training.loader import ClipBatches, make_loader, to_device
from training.trainer import build_engine, configure_torch
from zoo.registry import DEFAULT_BACKBONE

LABELS = GSC_V2_WORDS + (SILENCE,)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_memmap(folder: Path, clips: int, seed: int = 0) -> tuple[np.memmap, np.ndarray]:
    """A clip store like kws.data's cache (int16 [N, 16000] .npy, memory-mapped), filled with noise:
    the loader's speed does not depend on what the clips say."""
    path = folder / "bench_clips.npy"
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=(clips, CLIP_SAMPLES))
    for i in range(0, clips, 1024):
        n = min(1024, clips - i)
        arr[i:i + n] = rng.integers(-3000, 3000, size=(n, CLIP_SAMPLES), dtype=np.int16)
    arr.flush()
    del arr
    return np.load(path, mmap_mode="r"), rng.integers(0, len(LABELS), size=clips)


def time_steps(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of fn() after `warmup` untimed calls (allocator, oneDNN/cudnn autotuning).

    CPU: the median of per-call times, robust to the other jobs of a shared machine.
    CUDA: the mean over the block, so that the host queues step n+1 while step n runs, as in training.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        sync(device)
        return (time.perf_counter() - t0) / steps
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_model(cfg: TrainConfig, env: dist.Env, x16: torch.Tensor, y: torch.Tensor, noise: np.ndarray,
                steps: int, warmup: int) -> dict:
    eng = build_engine(cfg, env, LABELS, noise, load_pretrained=False)
    eng.model.train()
    x, yy = to_device((x16, y), env.device)

    def step():
        eng.micro_step(x, yy, sync=True)
        eng.optimizer_step()

    sec = time_steps(step, steps, warmup, env.device)
    aug_sec = time_steps(lambda: eng.inputs(x, yy), steps, max(1, warmup // 2), env.device)
    return {"kind": "train_step", "model": cfg.model, "batch": len(y), "samples_per_s": round(len(y) / sec, 1),
            "ms_per_step": round(sec * 1e3, 2), "augment_frontend_ms": round(aug_sec * 1e3, 2),
            "params": zoo.count_params(eng.model),
            # counted on a CPU copy: zoo.count_macs feeds CPU zeros
            "macs_per_clip": zoo.count_macs(zoo.create_model(cfg.model, labels=LABELS)),
            "amp": str(eng.amp).replace("torch.", ""), "channels_last": eng.memory_format == torch.channels_last}


def bench_data_path(cfg: TrainConfig, env: dist.Env, ds: ClipBatches, noise: np.ndarray, batches: int,
                    workers: int, pin: bool) -> list[dict]:
    """Host loader alone, then loader + copy + device augmentation + frontend."""
    eng = build_engine(dataclasses.replace(cfg, model="dscnn"), env, LABELS, noise, load_pretrained=False)
    out = []
    for stage in ("host_loader", "loader_to_features"):
        loader = make_loader(ds, cfg.batch_size, train=True, seed=0, workers=workers, pin_memory=pin)
        it = iter(loader)  # worker start-up is once per epoch: outside the timing
        first = next(it)
        if stage == "loader_to_features":
            eng.inputs(*to_device(first, env.device))
        sync(env.device)
        n, t0 = 0, time.perf_counter()
        for i, batch in enumerate(it):
            if i >= batches:
                break
            if stage == "loader_to_features":
                eng.inputs(*to_device(batch, env.device))
            n += batch[1].shape[0]
        sync(env.device)
        sec = time.perf_counter() - t0
        out.append({"kind": "data_path", "stage": stage, "batch": cfg.batch_size, "workers": workers,
                    "pin_memory": pin, "samples_per_s": round(n / sec, 1)})
        del it, loader
    return out


def epochs_of_batches(loader):
    """The loader's batches, epoch after epoch (reshuffled), for as long as asked: a real run's stream."""
    epoch = 0
    while True:
        loader.batch_sampler.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def bench_end_to_end(cfg: TrainConfig, env: dist.Env, ds: ClipBatches, noise: np.ndarray, batches: int,
                     warmup: int, workers: int, pin: bool) -> dict:
    eng = build_engine(cfg, env, LABELS, noise, load_pretrained=False)
    eng.model.train()
    loader = make_loader(ds, cfg.batch_size, train=True, seed=0, workers=workers, pin_memory=pin)
    stream = epochs_of_batches(loader)
    n, t0 = 0, time.perf_counter()
    for i in range(warmup + batches):
        if i == warmup:
            sync(env.device)
            n, t0 = 0, time.perf_counter()
        x, y = to_device(next(stream), env.device)
        eng.micro_step(x, y, sync=True)
        eng.optimizer_step()
        n += y.shape[0]
    sync(env.device)
    sec = time.perf_counter() - t0
    return {"kind": "end_to_end", "model": cfg.model, "batch": cfg.batch_size, "workers": workers,
            "pin_memory": pin, "batches": batches, "samples_per_s": round(n / sec, 1)}


def markdown(rows: list[dict], device: str, note: str) -> str:
    lines = [f"# Training throughput ({device})", "", note, "",
             "| model | params | MMACs/clip | batch | AMP | train samples/s | ms/step | augment+frontend ms |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        if r["kind"] == "train_step":
            lines.append(f"| {r['model']} | {r['params']:,} | {r['macs_per_clip'] / 1e6:.1f} | {r['batch']} | "
                         f"{r['amp']} | {r['samples_per_s']:.0f} | {r['ms_per_step']:.1f} | "
                         f"{r['augment_frontend_ms']:.1f} |")
    lines += ["", "| data path stage | workers | pinned | samples/s |", "| --- | ---: | --- | ---: |"]
    for r in rows:
        if r["kind"] == "data_path":
            lines.append(f"| {r['stage']} | {r['workers']} | {r['pin_memory']} | {r['samples_per_s']:.0f} |")
    for r in rows:
        if r["kind"] == "end_to_end":
            step = next((s for s in rows if s["kind"] == "train_step" and s["model"] == r["model"]), None)
            busy = f", {r['samples_per_s'] / step['samples_per_s']:.0%} of the fixed-batch step rate" if step else ""
            lines += ["", f"End to end (loader + step), {r['model']}, batch {r['batch']}, {r['workers']} workers: "
                          f"**{r['samples_per_s']:.0f} samples/s**{busy} (about 100 % or more: the data path keeps "
                          f"the device busy; the two runs differ by a few % from run to run)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all", help="comma-separated zoo names, or 'all' (default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=None, help="default 32 on CPU, 256 on CUDA")
    p.add_argument("--steps", type=int, default=None, help="timed steps per model (default 5 on CPU, 50 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 on CPU, 10 on CUDA)")
    p.add_argument("--clips", type=int, default=None, help="clips in the benchmark memmap (default 32 batches)")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: the trainer's)")
    p.add_argument("--e2e-model", default=DEFAULT_BACKBONE, help="model of the end-to-end run ('' to skip)")
    p.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=None, help="JSON path (default results/train_throughput[_cuda].json)")
    a = p.parse_args(argv)

    env = dist.setup(a.device)
    cuda = env.device.type == "cuda"
    batch = a.batch or (256 if cuda else 32)
    steps = a.steps or (50 if cuda else 5)
    warmup = a.warmup if a.warmup is not None else (10 if cuda else 2)
    workers = a.workers if a.workers is not None else (4 if cuda else 0)
    pin = cuda
    models = zoo.list_models() if a.models == "all" else [m.strip() for m in a.models.split(",") if m.strip()]
    out = Path(a.out or f"results/train_throughput{'_cuda' if cuda else ''}.json")
    cfg = TrainConfig(model=models[0], batch_size=batch, amp=a.amp, threads=a.threads, progress=False)
    configure_torch(cfg, env.device)
    noise = np.random.default_rng(1).standard_normal(30 * SAMPLE_RATE).astype(np.float32) * 0.1

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        waves, y = bench_memmap(Path(tmp), max(a.clips or 32 * batch, 4 * batch))
        ds = ClipBatches(waves, y)
        x16, yb = ds.__getitems__(list(range(batch)))
        for name in models:
            r = bench_model(dataclasses.replace(cfg, model=name), env, x16, yb, noise, steps, warmup)
            rows.append(r)
            print(f"{name:24s} {r['samples_per_s']:8.1f} samples/s  ({r['ms_per_step']:.1f} ms/step, "
                  f"augment+frontend {r['augment_frontend_ms']:.1f} ms)", flush=True)
        n_batches = min(len(ds) // batch - 1, 200 if cuda else 50)
        for r in bench_data_path(cfg, env, ds, noise, n_batches, workers, pin):
            rows.append(r)
            print(f"data path {r['stage']:20s} {r['samples_per_s']:8.1f} samples/s", flush=True)
        if a.e2e_model:
            r = bench_end_to_end(dataclasses.replace(cfg, model=a.e2e_model), env, ds, noise, 2 * steps,
                                 warmup, workers, pin)
            rows.append(r)
            print(f"end to end {a.e2e_model}: {r['samples_per_s']:.1f} samples/s", flush=True)

    threads = torch.get_num_threads()
    settings = {"device": str(env.device), "batch": batch, "steps": steps, "warmup": warmup, "torch_threads": threads,
                "augment": "all of TrainConfig's defaults (mixup on half the batches)"}
    write_results(out, rows, command=["python", "-m", "training.bench", *(argv if argv is not None else sys.argv[1:])],
                  probe_gpu=cuda, settings=settings)
    device = torch.cuda.get_device_name(env.device) if cuda else f"CPU, {threads} torch threads"
    timing = "median step time" if not cuda else "mean over the block"
    note = (f"Batch {batch}, {steps} timed steps after {warmup} warm-up ({timing}); a train step includes the device-side "
            f"augmentation and the log-mel frontend. Data path: int16 memmap of {len(ds)} clips in the page cache.")
    atomic_write_text(out.with_suffix(".md"), markdown(rows, device, note))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
