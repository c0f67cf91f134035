"""Ship a trained checkpoint as zoo weights: fp16 safetensors (<= 20 MB) and its model card.

Usage:
  python scripts/ship_weights.py RUN --recipe recipes/X.yaml [--cv results/cv/X.json] [--name NAME]
                                     [--precision auto|fp16]

Writes zoo/weights/<name>.safetensors and zoo/weights/<name>.md (default name: the model's).
The card and the file's metadata hold the same facts (zoo.meta.CheckpointMeta): the training
data and recipe with its command, the cross-validated real-speech accuracy with its intervals
(from the `python -m bench.realspeech cv` result of the same recipe), the batch-1 latency
measured here on ort-cpu and torch-cpu, and the licence of any pretrained part. Weights still
as their package installed them (a frozen pretrained embedding) are not copied into the file.
`--name` other than the model's name ships a variant under zoo/weights/variants/.
A model whose fp16 file is over the limit ships its conv and linear weights quantized
(`--precision auto`, the default; zoo.wquant): int8 per output channel (ResNet18), and where
that is still over, its largest weights as 4-bit blocks (ResNet34); the card then gives the
top-1 agreement of the stored weights with the trained float model on every gsc12-dev clip.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script in the checkout: its packages beside it

from kws.paths import PROJECT_ROOT as REPO  # noqa: E402

MAX_BYTES = 20_000_000  # 20 MB read strictly (decimal), so within 20 MiB as well
METRICS = {"acc12": "12-class, every clip", "acc35": "35-class, word clips", "acc": "exact label, every clip"}


def protocol(cv_folds: list[str], shipped_fold: str) -> tuple[str, str]:
    """(how the figures were measured, how the shipped weights relate to them)."""
    if cv_folds == ["all"]:
        return ("one model trained on synthetic speech only, scored on every clip of the real sets (bench.realspeech "
                "cv); pooled accuracy with a 95 % speaker-bootstrap interval", "These weights are that model.")
    if len(cv_folds) == 1:
        k = cv_folds[0].split("/")[0]
        how = (f"fold {k} of the recipe's speaker-disjoint 5-fold split (bench.realspeech cv): the model trained on "
               f"the other folds, scored on fold {k}'s speakers; pooled accuracy with a 95 % speaker-bootstrap interval")
        if shipped_fold == cv_folds[0]:
            return how, f"These weights are that fold-{k} model (its training held fold {k}'s speakers out)."
        return how, "One fold only: a rough estimate for the shipped weights, which trained on other data."
    how = ("speaker-disjoint 5-fold cross-validation of the recipe (bench.realspeech cv); pooled accuracy with a 95 % "
           "speaker-bootstrap interval; fold mean with a 95 % t interval")
    return how, "These are the recipe's estimate: the shipped weights were trained once more on every fold."


def cv_accuracy(path: Path, shipped_fold: str = "all") -> dict:
    """The real-speech figures of a cross-validation result, in the CheckpointMeta.accuracy shape."""
    from kws.fsutil import read_json

    doc = read_json(path, "cross-validation result")
    rows = [r for r in doc["results"] if r.get("kind") == "summary"]
    how, shipped = protocol(list(doc["metadata"].get("folds", [])), shipped_fold)
    out: dict = {"protocol": how, "shipped": shipped,
                 "source": str(path), "commit": doc["metadata"]["git"].get("commit", "?")[:10], "figures": []}
    for r in rows:
        fig = {"set": r["part"], "metric": r["metric"], "figure": f"{r['part']} {METRICS[r['metric']]}",
               "value": r["pooled"], "ci95": r["pooled_ci95"], "fold_mean": r["fold_mean"],
               "fold_mean_ci95": r["fold_mean_ci95"], "clips": r["clips"], "speakers": r["speakers"]}
        out["figures"].append(fig)
        # the headline fields: gsc12-dev's 12-class and 35-class, the digits' exact label
        if r["part"] == "gsc12-dev" and r["metric"] in ("acc12", "acc35"):
            out[r["metric"]] = fig
        if r["part"] == "fsdd-dev" and r["metric"] == "acc":
            out["fsdd"] = fig
    if "acc12" not in out and rows:  # a synthetic-only recipe: scored on every real clip
        first = next((f for f in out["figures"] if f["metric"] == "acc12"), out["figures"][0])
        out["acc12"] = first
    return out


def measure_latency(weights: Path) -> dict:
    """Batch-1, 1-thread p50/p90 of the waveform-in model on ort-cpu and torch-cpu (this machine)."""
    from backends import BackendUnavailable, create_backend
    from kws.runinfo import machine_info

    x = np.zeros((1, 16000), np.float32)
    x[0] = 0.05 * np.random.default_rng(0).standard_normal(16000)
    out: dict = {"machine": machine_info()["description"], "batch": 1, "threads": 1, "input": "1 s waveform"}
    for name in ("ort-cpu", "torch-cpu"):
        try:
            be = create_backend(name, str(weights), threads=1, **({"log": None} if name.startswith("ort") else {}))
        except BackendUnavailable as e:
            out[name] = f"n/a: {e}"
            continue
        be.warmup()
        t = []
        deadline = time.perf_counter() + 10
        while len(t) < 300 and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            be.predict(x)
            t.append(time.perf_counter() - t0)
        out[name] = {"p50_ms": round(1e3 * float(np.percentile(t, 50)), 3),
                     "p90_ms": round(1e3 * float(np.percentile(t, 90)), 3), "runs": len(t)}
    return out


def storage_plan(model) -> tuple[dict[str, int], str]:
    """({weight: bits}, how the card says it) for a file within MAX_BYTES: ({}, "fp16") when fp16 fits."""
    from zoo import wquant

    installed = model.package_weights()
    state = {k: v for k, v in model.state_dict().items() if k not in installed}
    bits = wquant.plan_bits(state, MAX_BYTES)
    if not bits:
        return bits, "fp16"
    n4 = sum(state[k].numel() for k, b in bits.items() if b == 4)
    n8 = sum(state[k].numel() for k, b in bits.items() if b == 8)
    said = f"conv and linear weights int8 per output channel ({n8:,} values)"
    if n4:
        said += (f" and 4-bit in blocks of {wquant.Q4_BLOCK} ({n4:,} values in the {sum(b == 4 for b in bits.values())}"
                 " largest tensors)")
    return bits, said + "; the rest fp16"


def storage_line(storage: dict) -> str:
    agree = storage.get("top1_agreement")
    said = (f"; top-1 agreement with the trained float model {100 * agree:.1f} % on {storage['clips']} clips "
            f"({storage['set']})") if isinstance(agree, float) else f"; {agree}"
    return storage["weights"] + said


def storage_agreement(trained, shipped: Path, weights: str) -> dict:
    """How often the shipped (int8-stored) weights answer as the trained float model, on every gsc12-dev clip."""
    from bench.realspeech import predict
    from kws import paths
    from kws.data import open_source
    from kws.metrics import top1_agreement
    from zoo import load_model

    if not paths.GSC12_DEV.is_dir():
        return {"weights": weights, "top1_agreement": "not measured: no gsc12-dev here"}
    src = open_source(f"gsc:{paths.GSC12_DEV}", labels=trained.labels)
    waves = np.concatenate([src.split(s).waves for s in ("train", "validation", "test")])
    stored, _ = load_model(shipped)
    agree = top1_agreement(predict(trained, waves), predict(stored, waves))
    return {"weights": weights, "top1_agreement": round(agree, 4), "clips": int(len(waves)),
            "set": "gsc12-dev, every clip"}


def card_markdown(name: str, model, meta, size: int, command: str) -> str:
    import torch

    from kws.data.source import describe_labels

    a = meta.accuracy
    fe = model.cfg.frontend
    n_all = sum(p.numel() for p in model.parameters())
    installed = model.package_weights()
    tuned = any(not torch.equal(v, installed[k]) for k, v in model.state_dict().items() if k in installed)
    part = (f"; {sum(v.numel() for v in installed.values()):,} of them the pretrained embedding, "
            f"{'fine-tuned here' if tuned else 'frozen, read from its package'}") if installed else ""
    lines = [f"# Model card: `{name}`", "",
             f"- **model**: `{model.cfg.name}` ({n_all:,} parameters{part})",
             f"- **labels**: {describe_labels(model.labels)}: {', '.join(model.labels)}",
             f"- **input**: 1 s of 16 kHz mono audio, float in [-1, 1); frontend `{fe.kind}` "
             f"({json.dumps(fe.to_dict())})",
             f"- **training data**: `{meta.training_data}`",
             f"- **recipe**: {meta.recipe}",
             f"- **file**: `zoo/weights/{name}.safetensors`, {size / 2**20:.2f} MiB"
             + (f"; **stored as** {storage_line(meta.storage)}" if meta.storage else " (fp16)"), ""]
    lines += ["## Real-speech accuracy", ""]
    if a:
        lines += [a["protocol"] + ".", "",
                  "| real set | figure | clips (speakers) | pooled (95 % speaker bootstrap) | fold mean (95 % t) |",
                  "|---|---|---|---|---|"]
        for f in a["figures"]:
            lo, hi = f["ci95"]
            flo, fhi = f["fold_mean_ci95"]
            fm = f"{100 * f['fold_mean']:.1f} % ({100 * flo:.1f}-{100 * fhi:.1f})" if flo == flo else "–"
            lines.append(f"| {f['set']} | {METRICS[f['metric']]} | {f['clips']} ({f['speakers']}) | "
                         f"{100 * f['value']:.1f} % ({100 * lo:.1f}-{100 * hi:.1f}) | {fm} |")
        lines += ["", f"From `{a['source']}` (commit {a['commit']}). {a.get('shipped', '')}".rstrip()]
    else:
        lines.append("Not measured.")
    lat = meta.latency
    lines += ["", "## Latency", "",
              f"Batch 1, {lat.get('threads', 1)} thread, waveform in, probabilities out, on {lat.get('machine', '?')} "
              "(a shared machine: compare ratios within one run; the bench report has the full matrix).", ""]
    for be in ("ort-cpu", "torch-cpu"):
        v = lat.get(be)
        lines.append(f"- {be}: " + (f"p50 {v['p50_ms']} ms, p90 {v['p90_ms']} ms ({v['runs']} runs)"
                                    if isinstance(v, dict) else str(v)))
    lines += ["", "## Licence", "",
              "These weights: the project's licence."
              + (f" Pretrained part: {meta.pretrained}." if meta.pretrained else ""),
              "", "## Made by", "", f"`{command}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref", help="run folder or .safetensors checkpoint")
    ap.add_argument("--recipe", required=True, type=Path, help="the recipe YAML it was trained with")
    ap.add_argument("--cv", type=Path, help="the recipe's cross-validation result (results/cv/<recipe>.json)")
    ap.add_argument("--name", help="shipped name (default: the model's; another name ships a variant)")
    ap.add_argument("--note", default="", help="how it was trained (hardware, epochs, minutes)")
    ap.add_argument("--precision", choices=("auto", "fp16"), default="auto",
                    help="auto: fp16, or quantized conv/linear weights when the fp16 file is over the limit")
    args = ap.parse_args(argv)
    import dataclasses

    from kws.fsutil import atomic_write_text
    from zoo import load_model, save_checkpoint
    from zoo.meta import CheckpointMeta
    from zoo.model import model_dir

    model, raw = load_model(args.ref)
    name = args.name or model.cfg.name
    out = model_dir() / f"{name}.safetensors" if name == model.cfg.name else model_dir() / "variants" / f"{name}.safetensors"
    pretrained = ""
    if model.package_weights():
        from kws.pretrained import LICENSE

        pretrained = LICENSE
    meta = CheckpointMeta.from_dict(raw)
    found = re.search(r"cross-validation fold ([^)\s]+)", meta.training_data or "")
    fold = found.group(1) if found else "all"
    up = Path(*[".."] * (len(out.relative_to(REPO).parts) - 1))  # the card's way back to the repository root
    meta = dataclasses.replace(
        meta, source_checkpoint=str(args.ref), pretrained=pretrained,
        recipe=f"[{args.recipe.as_posix()}]({(up / args.recipe).as_posix()}), trained with "
               f"`python train.py --config {args.recipe.as_posix()} --fold {fold}`" + (f"; {args.note}" if args.note else ""),
        accuracy=cv_accuracy(args.cv, fold) if args.cv else {})
    bits, weights = storage_plan(model) if args.precision == "auto" else ({}, "fp16")
    if bits:
        print(f"{out}: over {MAX_BYTES / 1e6:.0f} MB in fp16: {weights}")
    save_checkpoint(model, out, meta, half=True, weight_bits=bits)
    size = out.stat().st_size
    if size > MAX_BYTES:
        out.unlink()
        raise SystemExit(f"{out}: {size / 2**20:.1f} MiB is over the 20 MB limit for shipped weights"
                         + (" (--precision auto quantizes the weights to fit)" if not bits else ""))
    if bits:
        meta = dataclasses.replace(meta, storage=storage_agreement(model, out, weights))
    meta = dataclasses.replace(meta, latency=measure_latency(out))
    save_checkpoint(model, out, meta, half=True, weight_bits=bits)  # again, now with what was measured on the file
    size = out.stat().st_size
    command = "python scripts/ship_weights.py " + " ".join(sys.argv[1:] if argv is None else argv)
    atomic_write_text(out.with_suffix(".md"), card_markdown(name, model, meta, size, command))
    print(f"shipped {out} ({size / 2**20:.2f} MiB): {meta.accuracy_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
