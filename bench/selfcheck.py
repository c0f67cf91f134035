"""Run every available backend on the same clips: agreement with torch-cpu and batch-1 latency.

    python -m bench.selfcheck [--model REF] [--json OUT] [--clips 32] [--runs 100] [--threads 1]

Made for a GPU machine (torch-cuda, and ort-cuda where onnxruntime-gpu is installed), and
useful anywhere: unavailable backends are listed with the reason. REF defaults to the
shipped efficientnet_b0 weights, else a random-initialised EfficientNet-B0 with a widened
head (so that probabilities are spread and top-1 is meaningful), saved in a temp folder.
Clips: ../shared/data/gsc12-dev when present, else synthetic speech-like clips.
Exit status 1 when an available backend disagrees with torch-cpu on top-1 (int8: < 99 %).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from backends import backend_names, backend_spec, create_backend, list_backends
from backends.registry import REFERENCE_BACKEND
from backends.clips import get_clips
from kws.metrics import top1_agreement
from kws.timing import interleaved_latency, summary_ms
from zoo.registry import DEFAULT_BACKBONE


def random_checkpoint(name: str, folder: str | Path, logit_std: float = 3.0, seed: int = 0) -> Path:
    """A random-init zoo model saved as a run folder, its last layer rescaled so that the logits
    spread with std `logit_std` on speech-like clips: a fresh model outputs almost uniform
    probabilities, where top-1 is a near-tie that tells nothing about parity."""
    import torch

    import zoo
    from backends.clips import speechlike_clips

    torch.manual_seed(seed)
    model = zoo.create_model(name).eval()
    # BatchNorm statistics re-estimated on speech-like clips: with the init's mean 0 / var 1
    # a deep random net (EfficientNet) is chaotic, and 1e-5 float differences flip its top-1
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
        bn.train()
    with torch.no_grad():
        model(torch.from_numpy(speechlike_clips(64, seed=seed + 1)))
    model.eval()
    last = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    pen: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda m, i, o: pen.append(i[0]))
    with torch.no_grad():
        model(torch.from_numpy(speechlike_clips(32, seed=seed)))
        hook.remove()
        p = pen[0]
        # centre the logits over the clips (else one class wins everywhere), then spread them
        gain = logit_std / float(((p - p.mean(0)) @ last.weight.T).std().clamp(min=1e-12))
        last.weight.mul_(gain)
        last.bias.copy_(-(p.mean(0) @ last.weight.T))
    path = Path(folder) / name / "best.safetensors"
    zoo.save_checkpoint(model, path, meta={"training_data": "none (random init, selfcheck/benchmark only)"})
    return path.parent


def default_ref(name: str, tmp: str | Path) -> tuple[str, str]:
    """(ref, description): shipped weights when present, else a random-init checkpoint, widened head."""
    from zoo.checkpoint import shipped_or_untrained

    return shipped_or_untrained(name, tmp, make=random_checkpoint)


def check(ref: str, n_clips: int = 32, runs: int = 100, threads: int = 1,
          names: tuple[str, ...] | None = None) -> list[dict]:
    clips = get_clips(n_clips)
    status = {s.name: s for s in list_backends()}
    rows: list[dict] = []
    loaded = {}
    for name in names or backend_names():
        row = {"backend": name, "available": status[name].available, "reason": status[name].reason}
        rows.append(row)
        if not status[name].available:
            continue
        t0 = time.perf_counter()
        try:
            be = create_backend(name, ref, threads=threads)
            be.warmup()
        except Exception as e:  # BackendUnavailable, ParityError, ...: report it, check the rest
            row.update(available=False, reason=f"n/a: {type(e).__name__}: {str(e)[:300]}")
            continue
        row.update(load_s=round(time.perf_counter() - t0, 2), device=be.device, providers=list(be.providers),
                   model=be.model_name)
        row["probs"] = be.predict(clips.waves)
        loaded[name] = be
    ref_probs = rows[0].get("probs") if rows and rows[0]["backend"] == REFERENCE_BACKEND else None
    one = clips.waves[:1]
    lat = interleaved_latency({k: (lambda b=b: b.predict(one)) for k, b in loaded.items()},
                              rounds=max(1, runs // 10), per_round=10)
    for row in rows:
        probs = row.pop("probs", None)
        if probs is None:
            continue
        row.update({f"batch1_{k}": round(v, 3) for k, v in summary_ms(lat[row["backend"]]).items() if k != "n"})
        if ref_probs is not None:
            row["top1_agreement_vs_torch_cpu"] = top1_agreement(probs.argmax(1), ref_probs.argmax(1))
            row["max_abs_diff_vs_torch_cpu"] = float(np.abs(probs - ref_probs).max())
    for row in rows:
        row["clips"] = clips.source
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.selfcheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="zoo name | run folder | .safetensors (default: see above)")
    p.add_argument("--arch", default=DEFAULT_BACKBONE, help="zoo model for the default reference")
    p.add_argument("--json", type=Path, help="write {metadata, results} here")
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ref, weights = (args.model, args.model) if args.model else default_ref(args.arch, tmp)
        rows = check(ref, args.clips, args.runs, args.threads)
    bad = []
    print(f"model: {weights}; clips: {rows[0]['clips'] if rows else '-'}")
    for r in rows:
        if not r["available"]:
            print(f"{r['backend']:13s} n/a: {r['reason']}")
            continue
        agree = r.get("top1_agreement_vs_torch_cpu")
        need = backend_spec(r["backend"]).min_agreement
        if agree is not None and agree < need:
            bad.append(r["backend"])
        print(f"{r['backend']:13s} {r['device']:7s} p50 {r['batch1_p50_ms']:7.3f} ms  p99 {r['batch1_p99_ms']:7.3f} ms  "
              f"top-1 {agree if agree is None else f'{agree:.2%}'}  max|d| {r.get('max_abs_diff_vs_torch_cpu', float('nan')):.2e}")
    if args.json:
        from kws.runinfo import write_results

        write_results(args.json, rows, command=["python", "-m", "bench.selfcheck",
                                                *(argv if argv is not None else sys.argv[1:])], weights=weights)
    if bad:
        print(f"DISAGREEMENT with torch-cpu: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
