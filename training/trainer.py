"""The training loop: any zoo model on any kws.data source, one process or DDP, resumable.

    run_dir = train(TrainConfig(model="dscnn", data="synth:tiny"))

Per epoch: train (device-side augmentation, AMP, grad accumulation, clipping, warm-restart
cosine schedule stepped every optimiser step), validate, write metrics.csv, curves.png,
best/last checkpoints and train_state.safetensors (everything a resume needs). At the end
the best checkpoint is scored on the test split: report.json / report.md / confusion.png.
skipped.json lists every clip that could not be decoded, and why (the report counts them).
One process at a time trains into a run folder: it holds the folder's lock (`.lock`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import zoo
from kws.audio import CLIP_SAMPLES
from kws.data.source import describe_labels
from kws.fsutil import LockedError, atomic_write_json, file_lock, sweep_temps, temp_files
from kws.labels import save_labels
from kws.pretrained import PretrainedFileError
from training import dist
from training.augment import Augmenter, mixup_target_accuracy
from training.config import CONFIG_FILE, RESUME_OVERRIDES, ConfigError, TrainConfig, load_run_config, save_yaml
from training.loader import ClipBatches, ViewBatches, make_loader, to_device
from training.report import (
    METRICS_FILE, build_report, plot_confusion, plot_curves, read_metrics, write_metrics, write_report,
)
from training.state import STATE_FILE, RunFileError, apply_state, load_state, save_state
from training.teacher import Teacher, distill_kl
from zoo.meta import CheckpointMeta


class FeaturesIn(nn.Module):
    """features -> logits. DDP wraps this: the frontend has no parameters and runs before it, under no_grad."""

    def __init__(self, model: zoo.KWSModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(feats)


class HeadIn(nn.Module):
    """Cached backbone outputs -> logits: what trains when the backbone is frozen."""

    def __init__(self, model: zoo.KWSModel) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None  # CPU autocast is rarely faster for convnets, and fp32 keeps CPU runs bit-reproducible
    if cfg.amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]


@dataclasses.dataclass
class Engine:
    """Everything one optimisation step needs; shared by the trainer and the throughput bench."""

    cfg: TrainConfig
    env: dist.Env
    model: zoo.KWSModel
    net: nn.Module  # FeaturesIn(model), DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts
    scaler: torch.amp.GradScaler
    augmenter: Augmenter
    amp: torch.dtype | None
    memory_format: torch.memory_format
    teacher: Teacher | None = None
    cached: bool = False  # the loaders yield cached backbone outputs (freeze_backbone); the net is the head
    noise: np.ndarray | None = None  # the training noise the augmenter mixes in (and the feature caches use)

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.amp)

    @torch.no_grad()
    def inputs(self, x: torch.Tensor, y: torch.Tensor, train: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Tensor | None]:
        """Waveforms (or cached features) on the device -> (features, labels, mixup partner labels,
        lambda, the teacher's probabilities of the same mix or None)."""
        aug = self.cfg.augment and train
        if self.cached:
            feats = x
        else:
            if aug:
                x = self.augmenter.wave(x)
            feats = self.model.frontend(x)
            if aug:
                feats = self.augmenter.spec(feats)
        soft = None
        if self.teacher is not None and train:
            with self.autocast():
                soft = self.teacher.probs(x)  # the augmented waveform: the view both frontends share
        y2, lam = y, 1.0
        if aug:
            perm, lam = self.augmenter.mixup_draw(y.shape[0])
            if perm is not None:
                feats, y2 = lam * feats + (1.0 - lam) * feats[perm], y[perm]
                if soft is not None:
                    soft = lam * soft + (1.0 - lam) * soft[perm]
        return feats.contiguous(memory_format=self.memory_format), y, y2, lam, soft

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Evaluation forward, unwrapped (ranks may hold different batch counts)."""
        return self.model.head(feats) if self.cached else self.model.forward_features(feats)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, y2: torch.Tensor, lam: float,
             soft: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(training loss, KL to the teacher or None)."""
        ls = self.cfg.label_smoothing
        loss = F.cross_entropy(logits.float(), y, label_smoothing=ls)
        if lam < 1.0:
            loss = lam * loss + (1.0 - lam) * F.cross_entropy(logits.float(), y2, label_smoothing=ls)
        if soft is None:
            return loss, None
        kl = distill_kl(logits, soft, self.cfg.distill_temperature)
        w = self.cfg.distill_weight
        return (1.0 - w) * loss + w * kl, kl

    def micro_step(self, x: torch.Tensor, y: torch.Tensor, sync: bool
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Forward + backward of one micro-batch; gradients all-reduce only when `sync`.
        Returns (loss, correct count, KL to the teacher or None)."""
        feats, y, y2, lam, soft = self.inputs(x, y)
        no_sync = self.net.no_sync if (self.env.distributed and not sync) else contextlib.nullcontext
        with no_sync():
            with self.autocast():
                logits = self.net(feats)
            loss, kl = self.loss(logits, y, y2, lam, soft)
            self.scaler.scale(loss / self.cfg.accum_steps).backward()
        return (loss.detach(), mixup_target_accuracy(logits.detach(), y, y2, lam),
                None if kl is None else kl.detach())

    def optimizer_step(self) -> None:
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)


def build_engine(cfg: TrainConfig, env: dist.Env, labels: tuple[str, ...], noise: np.ndarray | None,
                 load_pretrained: bool = True) -> Engine:
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    kw: dict[str, Any] = {}
    if load_pretrained:
        kw = {"pretrained": cfg.pretrained, "pretrained_file": cfg.pretrained_file}
    try:
        model = zoo.create_model(cfg.model, labels=labels, **{k: v for k, v in kw.items() if v})
    except ValueError as e:  # unknown model name, a pretrained file of another architecture
        raise ConfigError(str(e)) from None
    if cfg.init_from and load_pretrained:
        note = init_from(model, cfg.init_from)
        if env.main:
            print(note, flush=True)
    cuda = env.device.type == "cuda"
    cached = cfg.freeze_backbone
    channels_last = (cuda if cfg.channels_last is None else cfg.channels_last) and not cached
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(env.device, memory_format=memory_format)
    if cached:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    net: nn.Module = HeadIn(model) if cached else FeaturesIn(model)
    if env.distributed:
        # The frontend's constant buffers (a 4 MB DFT kernel) would otherwise be re-broadcast
        # every step; BatchNorm statistics still are.
        constants = [f"model.frontend.{n}" for n, _ in model.frontend.named_buffers()] if not cached else []
        DDP = nn.parallel.DistributedDataParallel
        DDP._set_params_and_buffers_to_ignore_for_model(net, constants)
        net = DDP(net, device_ids=[env.device.index] if cuda else None)
    # fused AdamW: one kernel for all parameters on CUDA; the foreach default elsewhere
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=True if cuda else None)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=cfg.t0, T_mult=cfg.t_mult,
                                                                     eta_min=cfg.eta_min)
    amp = amp_dtype(cfg, env.device)
    scaler = torch.amp.GradScaler(env.device.type, enabled=amp is torch.float16)
    # Dropout and drop-path draw from the global generator: differ across ranks, fixed per seed.
    torch.manual_seed(cfg.seed + 7919 * env.rank)
    augmenter = Augmenter(cfg, model.frontend, noise, env.device, seed=cfg.seed * 1_000_003 + env.rank)
    teacher = Teacher(cfg.teacher, labels, env.device, cfg.distill_temperature) if cfg.teacher else None
    return Engine(cfg, env, model, net, optimizer, scheduler, scaler, augmenter, amp, memory_format,
                  teacher=teacher, cached=cached, noise=noise)


def param_groups(model: zoo.KWSModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The trainable parameters; the backbone's at lr * backbone_lr_scale when that is not 1."""
    train = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.backbone_lr_scale == 1.0:
        return [{"params": [p for _, p in train]}]
    back = [p for n, p in train if n.startswith("backbone.")]
    rest = [p for n, p in train if not n.startswith("backbone.")]
    return [g for g in ({"params": rest}, {"params": back, "lr": cfg.lr * cfg.backbone_lr_scale}) if g["params"]]


def init_from(model: zoo.KWSModel, ref: str) -> str:
    """Load trained weights into a new run's model; a changed label set gets a fresh head. Returns the log line."""
    try:
        src, _ = zoo.load_model(ref)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--init-from {ref}: {e}") from None
    if src.cfg.name != model.cfg.name:
        raise ConfigError(f"--init-from {ref}: holds a {src.cfg.name} checkpoint, another model than {model.cfg.name}; "
                          f"pass --model {src.cfg.name}, or weights of {model.cfg.name}")
    if src.cfg.frontend != model.cfg.frontend:
        raise ConfigError(f"--init-from {ref}: its frontend settings differ from {model.cfg.name}'s "
                          f"({src.cfg.frontend} vs {model.cfg.frontend})")
    sd = src.state_dict()
    fresh = tuple(src.labels) != tuple(model.labels)
    if fresh:
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    wrong = [k for k in missing if not (fresh and k.startswith("head."))] + list(unexpected)
    if wrong:
        raise ConfigError(f"--init-from {ref}: weights do not fit {model.cfg.name} ({wrong[:4]})")
    if fresh:
        return (f"init from {ref}: backbone loaded; the label set differs ({len(src.labels)} labels there, "
                f"{len(model.labels)} here), so the head starts fresh")
    return f"init from {ref}: every weight loaded (same labels)"


def configure_torch(cfg: TrainConfig, device: torch.device) -> None:
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
        # CPU: every op used here is deterministic. CUDA: a few backward kernels (adaptive
        # average pooling) have no deterministic version; warn about them instead of refusing.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.deterministic = True
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark and not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = not cfg.deterministic  # TF32: ~free speed for fp32 parts
        torch.backends.cudnn.allow_tf32 = not cfg.deterministic


# --------------------------------------------------------------------------- epochs

def train_epoch(eng: Engine, loader, epoch: int, bar: tqdm, deadline: float | None
                ) -> tuple[dict[str, float], bool]:
    """One pass over the (sharded) training set. Returns (all-reduced metrics, out of time)."""
    env, cfg = eng.env, eng.cfg
    eng.model.train()
    n_batches = len(loader)
    n_opt = math.ceil(n_batches / cfg.accum_steps)
    loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    kl_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    correct = torch.zeros((), dtype=torch.int64, device=env.device)
    count = torch.zeros((), dtype=torch.int64, device=env.device)
    timed_out = False
    for i, batch in enumerate(loader):
        x, y = to_device(batch, env.device)
        last_micro = (i + 1) % cfg.accum_steps == 0 or i + 1 == n_batches
        loss, ok, kl = eng.micro_step(x, y, sync=last_micro)
        if kl is not None:
            kl_sum += kl.double() * y.shape[0]
        if last_micro:
            eng.optimizer_step()
            # fractional epochs: the cosine decays smoothly within an epoch, as the PyTorch docs advise
            eng.scheduler.step(epoch + math.ceil((i + 1) / cfg.accum_steps) / n_opt)
        loss_sum += loss.double() * y.shape[0]
        correct += ok
        count += y.shape[0]
        if not bar.disable:
            bar.update(y.shape[0] * env.world)
            if i % 10 == 0 or i + 1 == n_batches:  # .item() syncs the GPU: not every step
                bar.set_postfix(loss=f"{loss_sum.item() / count.item():.3f}",
                                acc=f"{correct.item() / count.item():.3f}", refresh=False)
        # every rank checks at the same step, so all stop together
        if deadline is not None and i % 10 == 9 and dist.any_true(env, time.monotonic() > deadline):
            timed_out = True
            break
    dist.all_sum(env, loss_sum, kl_sum, correct, count)
    n = max(int(count.item()), 1)
    out = {"train_loss": loss_sum.item() / n, "train_acc": correct.item() / n, "train_samples": int(count.item())}
    if eng.teacher is not None:
        out["train_kl"] = kl_sum.item() / n
    return out, timed_out


@torch.no_grad()
def evaluate(eng: Engine, loader, n_classes: int) -> tuple[float, np.ndarray]:
    """(mean cross-entropy, confusion matrix [true, predicted]) over the whole split, all ranks summed.

    Plain cross-entropy, no label smoothing: the validation loss that early stopping watches
    is the model's actual NLL, not the training objective.
    """
    env = eng.env
    eng.model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    counts = np.zeros(n_classes * n_classes, dtype=np.int64)
    for batch in loader:
        x, y = to_device(batch, env.device)
        feats, *_ = eng.inputs(x, y, train=False)
        with eng.autocast():
            logits = eng.logits(feats)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        # counted on the host: CUDA's bincount is non-deterministic (and refused in deterministic mode)
        pairs = (y * n_classes + logits.argmax(1)).cpu().numpy()
        counts += np.bincount(pairs, minlength=n_classes * n_classes)
    cm = torch.from_numpy(counts).to(env.device)
    dist.all_sum(env, loss_sum, cm)
    cm_np = cm.view(n_classes, n_classes).cpu().numpy()
    return loss_sum.item() / max(int(cm_np.sum()), 1), cm_np


# --------------------------------------------------------------------------- the run

RUN_LOCK = ".lock"  # held (flock) by the one process that trains into the folder
SKIPPED_FILE = "skipped.json"


def lock_run_dir(run_dir: Path, held: contextlib.ExitStack) -> int:
    """Take the run folder's exclusive lock until `held` closes, then sweep what a killed run left
    (temporaries of its atomic writes: nobody else can be writing them now). Returns bytes freed.

    Two runs into one --out would otherwise interleave their files (one's best checkpoint, the
    other's metrics); the second one is refused instead, naming the first one's pid.
    """
    try:
        held.enter_context(file_lock(run_dir / RUN_LOCK, blocking=False, what="this run folder"))
    except LockedError as e:
        raise ConfigError(f"{e}: another train.py is training into it; wait for it to end or pick another --out") \
            from None
    return sweep_temps(temp_files(run_dir))


def write_skipped(run_dir: Path, src, splits) -> dict[str, int]:
    """skipped.json: every file the run could not use (bad clips per split, broken noise
    recordings) with its reason. Returns the clip counts per split, for the report."""
    from kws.data import SPLITS

    rows = [{"split": "noise", **b.to_dict()} for b in src.index.bad]
    counts = {}
    for split in (s for s in SPLITS if s in splits):
        bad = src.split(split).bad
        counts[split] = len(bad)
        rows += [{"split": split, **b.to_dict()} for b in bad]
    atomic_write_json(run_dir / SKIPPED_FILE, {"count": len(rows), "per_split": counts, "files": rows})
    return counts


def new_run_dir(cfg: TrainConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(cfg.runs_dir) / f"{cfg.model}-{stamp}"
    k = 1
    while path.exists():
        path, k = Path(cfg.runs_dir) / f"{cfg.model}-{stamp}-{k}", k + 1
    return path


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The run's saved config, with only the overrides that keep it the same run."""
    saved = load_run_config(run_dir)
    changed = {k: v for k, v in overrides.items() if getattr(saved, k) != v}
    bad = sorted(set(changed) - RESUME_OVERRIDES)
    if bad:
        raise ConfigError(f"{run_dir}: cannot change {', '.join(bad)} when resuming (that would be another run); "
                          f"allowed: {', '.join(sorted(RESUME_OVERRIDES))}")
    return dataclasses.replace(saved, **changed)


def open_data(cfg: TrainConfig, env: dist.Env):
    """(source, train clips, validation clips, training noise). The custom-word options
    (synth_words, negatives, hard_negatives) add their parts to cfg.data (kws.data.custom)."""
    from kws.data import DataError, cache_root, open_source
    from kws.data.custom import default_noise
    from kws.data.plan import plan_custom

    def load(say: bool):
        plan = plan_custom(cfg.data, cfg.labels, synth_words=cfg.synth_words, synth_per_word=cfg.synth_per_word,
                           negatives=cfg.negatives, hard_negatives=cfg.hard_negatives, seed=cfg.seed,
                           cache_dir=cfg.cache_dir)
        src = open_source(plan.spec, labels=plan.labels, fast=cfg.fast, seed=cfg.seed, cache_dir=cfg.cache_dir,
                          fold=cfg.fold or None)
        noise = src.noise
        if noise.size < CLIP_SAMPLES:  # no _background_noise_ in the data: the project's own noise
            noise, what = default_noise(cache_root(cfg.cache_dir))
            plan = dataclasses.replace(plan, notes=plan.notes + (what,))
        for note in plan.notes if say else ():
            print(note, flush=True)
        return src, src.split("train"), src.split("validation"), noise

    # Rank 0 decodes (and generates) into the cache first; the others then only memory-map it.
    if env.main:
        out = load(True)
    dist.barrier(env)
    if not env.main:
        out = load(False)
    src, tr, va, noise = out
    if len(tr) == 0:
        raise DataError(f"{cfg.data}: the training split is empty")
    if len(va) == 0:
        raise DataError(f"{cfg.data}: the validation split is empty; early stopping and the best "
                        f"checkpoint need validation clips")
    return src, tr, va, noise


def train(cfg: TrainConfig, resume: str | Path | None = None, stop_after_epochs: int = 0) -> Path:
    """Train (or resume) a run; returns its folder.

    stop_after_epochs: test hook that ends this invocation after that many epochs exactly as a
    kill after the epoch's checkpoint would (no final report), for the resume tests.
    """
    env = dist.setup(cfg.device)
    try:
        # `held`: the run folder's lock, taken inside _train once the folder is known, kept to the end
        with torch_settings_restored(), contextlib.ExitStack() as held:
            return _train(cfg, env, Path(resume) if resume else None, stop_after_epochs, held)
    finally:
        dist.teardown(env)


@contextlib.contextmanager
def torch_settings_restored():
    """Undo configure_torch's process-wide switches when train() is called in-process (tests, notebooks)."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3], saved[4]


def _train(cfg: TrainConfig, env: dist.Env, resume: Path | None, stop_after_epochs: int,
           held: contextlib.ExitStack) -> Path:
    configure_torch(cfg, env.device)
    t_start = time.monotonic()
    deadline = t_start + cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
    try:  # before any data is decoded: a missing pretrained file should cost seconds, not minutes
        zoo.check_requirements(cfg.model)
    except ValueError as e:
        if isinstance(e, PretrainedFileError):
            raise
        raise ConfigError(str(e)) from None
    src, train_cs, val_cs, noise = open_data(cfg, env)
    labels = tuple(src.labels)
    eng = build_engine(cfg, env, labels, noise, load_pretrained=resume is None)

    run_dir = Path(dist.broadcast_str(env, str(resume if resume else new_run_dir(cfg))))
    state_path = run_dir / STATE_FILE
    progress: dict[str, Any] = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "bad_epochs": 0,
                                "stop_reason": None}
    rows: list[dict[str, Any]] = []
    if env.main:
        lock_run_dir(run_dir, held)
    if resume:
        tensors, meta = load_state(state_path)
        try:
            progress = apply_state(tensors, meta, model=eng.model, optimizer=eng.optimizer, scheduler=eng.scheduler,
                                   scaler=eng.scaler, augmenter=eng.augmenter)
        except RunFileError as e:
            raise RunFileError(f"{state_path}: {e}") from None
        # A kill between the CSV and the state file leaves extra rows: the state file is the truth.
        rows = [r for r in read_metrics(run_dir / METRICS_FILE) if r["epoch"] <= progress["epoch"]]
    elif env.main:
        if (run_dir / STATE_FILE).exists():
            raise ConfigError(f"{run_dir}: already holds a run; continue it with --resume {run_dir} or pick another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
    if env.main:
        save_yaml(cfg, run_dir / CONFIG_FILE)
        save_labels(labels, run_dir)
        skipped = write_skipped(run_dir, src, ("train", "validation"))
        if any(skipped.values()):
            print(f"skipped {sum(skipped.values())} unreadable clips "
                  f"({', '.join(f'{k} {v}' for k, v in skipped.items())}): see {run_dir / SKIPPED_FILE}", flush=True)
        print(f"run {run_dir}: {cfg.model} ({zoo.count_params(eng.model):,} params) on {cfg.data} "
              f"[{len(labels)} labels, {len(train_cs)} train / {len(val_cs)} val clips], device {env.device}"
              f" x{env.world}, amp {eng.amp}, effective batch {cfg.batch_size * cfg.accum_steps * env.world}"
              + (f", resuming after epoch {progress['epoch']}" if resume else ""), flush=True)

    if eng.teacher is not None:
        if resume and progress.get("teacher_sha256") not in (None, eng.teacher.sha256):
            raise ConfigError(f"{run_dir}: the teacher {eng.teacher.path} changed since this run started "
                              f"(sha256 differs); resuming would distil from another model")
        progress["teacher_sha256"] = eng.teacher.sha256
        if env.main:
            print(f"distilling from {eng.teacher.name} ({eng.teacher.path}): weight {cfg.distill_weight}, "
                  f"temperature {cfg.distill_temperature}, teacher runs in {eng.teacher.runtime}", flush=True)

    workers = cfg.workers if cfg.workers is not None else (4 if env.device.type == "cuda" else 0)
    pin = cfg.pin_memory if cfg.pin_memory is not None else env.device.type == "cuda"
    train_ds, val_ds = (clip_inputs(eng, src, "train", train_cs, True), clip_inputs(eng, src, "validation", val_cs, False))
    weights, draws = src.weights("train"), None
    if cfg.feature_negatives:
        train_ds, weights = with_feature_negatives(eng, train_ds, weights, labels)
        # an epoch stays one pass over the clips (plus its share of windows), however many windows there are
        draws = math.ceil(train_ds.n / (1 - cfg.feature_negative_share))
    train_loader = make_loader(train_ds, cfg.batch_size, train=True, seed=cfg.seed, rank=env.rank, world=env.world,
                               workers=workers, pin_memory=pin, weights=weights, draws=draws)
    val_loader = make_loader(val_ds, cfg.batch_size * 2, train=False, seed=cfg.seed,
                             rank=env.rank, world=env.world, workers=min(workers, 2), pin_memory=pin)

    epochs_here = 0
    while progress["epoch"] < cfg.epochs and progress["bad_epochs"] < cfg.patience:
        epoch = progress["epoch"]
        train_loader.batch_sampler.sampler.set_epoch(epoch)
        bar = tqdm(total=len(train_loader) * cfg.batch_size * env.world, unit="clip", unit_scale=True,
                   desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True,
                   disable=not (env.main and cfg.progress))
        t0 = time.monotonic()
        tr, timed_out = train_epoch(eng, train_loader, epoch, bar, deadline)
        bar.close()
        train_s = time.monotonic() - t0
        val_loss, cm = evaluate(eng, val_loader, len(labels))
        val_acc = float(np.trace(cm) / max(cm.sum(), 1))
        improved = val_loss < progress["best_val_loss"]
        progress["epoch"] = epoch + 1
        if improved:
            progress.update(best_val_loss=val_loss, best_epoch=epoch + 1, bad_epochs=0)
        else:
            progress["bad_epochs"] += 1
        out_of_time = timed_out or (deadline is not None and dist.any_true(env, time.monotonic() > deadline))
        if progress["bad_epochs"] >= cfg.patience:
            progress["stop_reason"] = f"early stopping: no val-loss improvement for {cfg.patience} epochs"
        elif progress["epoch"] >= cfg.epochs:
            progress["stop_reason"] = "epochs done"
        elif out_of_time:
            progress["stop_reason"] = (f"time budget of {cfg.max_minutes} min"
                                       + (f" (epoch {epoch + 1} cut short)" if timed_out else ""))
        row = {"epoch": epoch + 1, "lr": eng.optimizer.param_groups[0]["lr"], **tr, "val_loss": val_loss,
               "val_acc": val_acc, "epoch_s": train_s, "samples_per_s": tr["train_samples"] / max(train_s, 1e-9),
               "best": int(improved)}
        rows.append(row)
        if env.main:
            write_metrics(run_dir / METRICS_FILE, rows)
            plot_curves(rows, run_dir / "curves.png")
            meta = CheckpointMeta(training_data=describe_data(cfg),
                                  label_set=describe_labels(labels), run=run_dir.name, epoch=epoch + 1, val_loss=val_loss,
                                  val_acc=val_acc)
            if improved:
                zoo.save_checkpoint(eng.model, run_dir / zoo.checkpoint.BEST, meta)
            zoo.save_checkpoint(eng.model, run_dir / zoo.checkpoint.LAST, meta)
            # Last: the state file is the commit mark of the epoch.
            save_state(state_path, model=eng.model, optimizer=eng.optimizer, scheduler=eng.scheduler,
                       scaler=eng.scaler, augment_state=eng.augmenter.state(), progress=progress)
            print(f"epoch {epoch + 1:3d}  lr {row['lr']:.2e}  train {tr['train_loss']:.4f}/{tr['train_acc']:.3f}  "
                  f"val {val_loss:.4f}/{val_acc:.3f}{'  *' if improved else ''}  "
                  f"{row['samples_per_s']:.0f} clips/s", flush=True)
        epochs_here += 1
        if out_of_time or (stop_after_epochs and epochs_here >= stop_after_epochs):
            break
    if stop_after_epochs and epochs_here >= stop_after_epochs and progress["stop_reason"] is None:
        return run_dir  # the test hook: leave the run as a kill would

    dist.barrier(env)  # best.safetensors is on disk for every rank
    final_report(eng, src, run_dir, cfg, progress, time.monotonic() - t_start)
    return run_dir


def describe_data(cfg: TrainConfig) -> str:
    """The training data in words, for the checkpoint's metadata (model cards)."""
    extra = [f"synthetic speech of {'its words' if cfg.synth_words == 'auto' else cfg.synth_words} "
             f"({cfg.synth_per_word} clips each)"] if cfg.synth_words else []
    if cfg.negatives == "synth" or (cfg.negatives == "auto" and cfg.synth_words):
        extra.append("synthetic negatives")
    if cfg.hard_negatives:
        extra.append(f"hard negatives ({Path(cfg.hard_negatives).name})")
    if cfg.feature_negatives:
        extra.append(f"streaming windows of keyword-free speech ({', '.join(Path(p.strip()).name for p in cfg.feature_negatives.split(','))}) "
                     f"as _unknown_, {100 * cfg.feature_negative_share:.0f} % of draws")
    return (cfg.data + "".join(f" + {e}" for e in extra)
            + (f" (cross-validation fold {cfg.fold})" if cfg.fold else ""))


def clip_inputs(eng: Engine, src, split: str, cs, train: bool) -> ClipBatches | ViewBatches:
    """What the loop reads for a split: the clips, or with a frozen backbone its cached outputs."""
    if not eng.cached:
        return ClipBatches(cs.waves, cs.y)
    from kws.data import cache_root
    from training.features import cached_views

    env, cfg = eng.env, eng.cfg

    parts = src.part_of(split)

    def build() -> list[np.ndarray]:
        return cached_views(eng.model, cs, cfg, eng.noise, env.device, cache_root(cfg.cache_dir),
                            train=train, desc=f"{src.name[:60]}/{split}", parts=parts)

    views = build() if env.main else None  # rank 0 computes, the others then read the cache
    dist.barrier(env)
    return ViewBatches(views if views is not None else build(), cs.y)


def with_feature_negatives(eng: Engine, ds: ViewBatches, weights: np.ndarray | None, labels: tuple[str, ...]
                           ) -> tuple[ViewBatches, np.ndarray]:
    """The training set with cfg.feature_negatives' windows appended as `_unknown_`, drawn as
    cfg.feature_negative_share of each epoch (the clips keep their relative weights)."""
    from kws.labels import UNKNOWN
    from training.features import load_feature_negatives

    cfg = eng.cfg
    if UNKNOWN not in labels:
        raise ConfigError(f"feature_negatives are trained as {UNKNOWN}, which labels {cfg.labels!r} lack "
                          f"(use 35su: the 35 words, _silence_ and _unknown_)")
    extra = load_feature_negatives(cfg.feature_negatives, eng.model, tuple(ds.views[0].shape[1:]))
    w = np.ones(ds.n) if weights is None else np.asarray(weights, dtype=np.float64)
    share = cfg.feature_negative_share
    w_extra = np.full(len(extra), share / (1 - share) * w.sum() / len(extra))
    if eng.env.main:
        print(f"feature negatives: {len(extra):,} windows from {cfg.feature_negatives}, as {UNKNOWN}, "
              f"{100 * share:.0f} % of each epoch's draws", flush=True)
    out = ViewBatches(ds.views, ds.y[:ds.n], extra, np.full(len(extra), labels.index(UNKNOWN), np.int64))
    return out, np.concatenate([w, w_extra])


def data_keys(src) -> dict[str, str]:
    """The decoded-clip cache file of each split: names that change whenever the clips do (files,
    labels, the synthetic generator's version), so a finished run can tell which data it saw."""
    return {s: src.split(s).path.name for s in ("train", "validation", "test") if src.split(s).path is not None}


def final_report(eng: Engine, src, run_dir: Path, cfg: TrainConfig, progress: dict, seconds: float) -> None:
    """Score the best checkpoint on the test split (validation if the source has no test clips)."""
    env = eng.env
    best, _ = zoo.load_checkpoint(run_dir / zoo.checkpoint.BEST)
    eng.model.load_state_dict(best.state_dict())
    split = "test" if len(src.split("test")) else "validation"
    cs = src.split(split)
    loader = make_loader(clip_inputs(eng, src, split, cs, False), cfg.batch_size * 2, train=False, seed=cfg.seed,
                         rank=env.rank, world=env.world)
    loss, cm = evaluate(eng, loader, len(src.labels))
    if not env.main:
        return
    skipped = write_skipped(run_dir, src, ("train", "validation", split))
    info = {"model": cfg.model, "data": cfg.data, "split": split, "checkpoint": f"best (epoch {progress['best_epoch']})",
            "epochs_trained": progress["epoch"], "stop_reason": progress["stop_reason"],
            "params": zoo.count_params(eng.model), "test_loss": loss, "train_minutes": round(seconds / 60, 2),
            "skipped_files": skipped, "data_keys": data_keys(src)}
    rep = build_report(cm, src.labels, info)
    write_report(run_dir, rep)
    plot_confusion(cm, src.labels, run_dir / "confusion.png",
                   f"{cfg.model} on {split} ({cfg.data}): accuracy {rep['accuracy']:.3f}")
    extra = f", 12-class {rep['gsc12']['accuracy']:.4f}" if "gsc12" in rep else ""
    print(f"{split}: accuracy {rep['accuracy']:.4f}, macro F1 {rep['macro_f1']:.4f}{extra} -> {run_dir}", flush=True)
