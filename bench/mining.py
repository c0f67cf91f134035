"""`python -m bench.mining`: speech-embedding heads trained against hours of keyword-free speech, and
hard-negative mining rounds, cross-validated.

    python -m bench.mining cv recipes/speech_embedding_conv.yaml            # 5 folds + the final model, 1 round
    python -m bench.mining cv RECIPE --rounds 2 --folds 1,2                  # more rounds, some folds
    python -m bench.mining features --model REF --hours 2                    # only the streaming windows

A clip model has heard centred 1 s words and nothing else, so always on it takes every sentence
for its nearest word. Its head reads the frozen speech embedding, whose stream form costs about
1 ms per 80 ms step: hours of negative speech become hours of embeddings in a minute, and every
9-embedding window the live app's head would read of them is a training example of `_unknown_`
(kws.training's `feature_negatives`), at no augmentation cost.

- **Round 0**: the recipe (labels 35su: the 35 words, `_silence_`, `_unknown_`) plus the windows of
  a `train`-role negative stream (bench.negatives: sentences and near misses in voices, texts
  and noise clips no evaluation stream holds, Asterisk prompts in English and Spanish, synthetic
  other words and command halves), every second 80 ms step.
- **Round r + 1**: the windows where round r's model fires (threshold `--mine-threshold`, the
  engine's own trigger over the live path) on a fresh `train`-role stream (seed 200 + r) are added
  (each detection and its neighbours, `CONTEXT` steps around it), and every model is trained again
  from scratch. The round's false accepts per hour on that stream, counted before it was mined
  (audio the model never trained on), are the round's figure.

Fold k's models train on the other folds' speakers only (bench.realspeech folds); the mined windows
are that fold's model's own. Runs: runs/cv/<recipe>-r<round>/fold-<k>, then `all` (the final
model, trained on every speaker, mined on its own). Results: results/mining.json (FA/h per round
and fold) and results/cv/<recipe>-r<round>.json (clip accuracy, as bench.realspeech cv).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.negatives import NegativesConfig, NegativeStream, load_negatives
from kws import paths

TRAIN_STREAM = NegativesConfig(hours=2.0, role="train", seed=100)
MINE_HOURS = 1.0
MINE_SEED = 200  # round r mines the train-role stream of seed MINE_SEED + r
STRIDE = 2  # every second 80 ms step of the training stream: neighbours overlap by 8 of 9 embeddings
MINE_THRESHOLD = 0.5
CONTEXT = (-2, -1, 0, 1)  # steps around each false accept: the window that fired and its neighbours
WORD_INSIDE = 0.5  # a window holding this share of a whole synthetic Speech Commands word is left out


def feature_root() -> Path:
    from kws.data import cache_root

    return cache_root() / "feature-negatives"


def stream_embeddings(model: Any, neg: NegativeStream) -> np.ndarray:
    """The stream form's embeddings of a whole negative stream, cached beside its windows."""
    from kws.fsutil import atomic_path
    from training.features import backbone_key
    from zoo.streaming import speech_embedding_stream_embeddings

    path = feature_root() / f"{neg.folder.name}-{backbone_key(model)}" / "embeddings.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pass  # half written by a killed run (it is renamed in whole): made again
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    emb = speech_embedding_stream_embeddings(model, neg.wave)
    print(f"  embeddings of {neg.folder.name}: {len(emb):,} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, emb.astype(np.float32))
    return emb


def window_geometry(model: Any) -> tuple[int, int, int, float]:
    """(chunk samples, embedding index of row 0's first window, windows per head input, half span in s):
    after i chunks the head reads embeddings first + i .. first + i + n - 1 (zoo.streaming's reference)."""
    from zoo.streaming import SpeechEmbeddingStream

    step = SpeechEmbeddingStream(model.eval())
    lead = step.memory_samples // step.chunk
    first = lead - 1 + step.first_embedding - (step.n_windows - 1)
    c = step.cfg
    half = (c.window_step * (step.n_windows - 1) + c.window_frames) * c.hop_length / 2 / 16000
    return step.chunk, first, step.n_windows, half


def windows_at(emb: np.ndarray, rows: np.ndarray, first: int, n: int) -> np.ndarray:
    idx = rows[:, None] + first + np.arange(n)[None, :]
    idx = idx[(idx.min(1) >= 0) & (idx.max(1) < len(emb))]
    return emb[idx].astype(np.float16)


def whole_words(neg: NegativeStream) -> np.ndarray:
    """[K, 2] start/end (s) of the stream's whole synthetic Speech Commands words (not command halves)."""
    spans = [(e["start_s"], e["end_s"]) for e in neg.events if e["kind"] == "synth_word" and "(" not in e["word"]]
    return np.asarray(spans, np.float64).reshape(-1, 2)


def base_windows(model: Any, neg: NegativeStream, stride: int = STRIDE) -> tuple[np.ndarray, dict[str, Any]]:
    """Every `stride`-th window of the stream, without those that hold most of a whole word of the 35."""
    from bench.wakeword import stream_centre
    from zoo.streaming import SpeechEmbeddingStream

    emb = stream_embeddings(model, neg)
    chunk, first, n, half = window_geometry(model)
    rows = np.arange(0, len(neg.wave) // chunk + 1, stride)
    # the centre of what the head reads moves one chunk per row
    t_centre = (stream_centre(SpeechEmbeddingStream(model), 0) + rows * chunk) / 16000
    words = whole_words(neg)
    keep = np.ones(rows.size, bool)
    for a, b in words:
        inside = np.clip(np.minimum(b, t_centre + half) - np.maximum(a, t_centre - half), 0, None) / max(b - a, 1e-3)
        keep &= inside < WORD_INSIDE
    w = windows_at(emb, rows[keep], first, n)
    return w, {"stream": neg.folder.name, "hours": round(neg.hours, 3), "stride_steps": stride,
               "windows": int(len(w)), "left_out_holding_a_word": int((~keep).sum()),
               "utterances": neg.summary()["utterances"]}


def feature_negatives(model: Any, cfg: NegativesConfig = TRAIN_STREAM) -> Path:
    """The folder of a training stream's windows for this backbone (built once, then reused)."""
    from training.features import NEGATIVES_MANIFEST, backbone_key, write_feature_negatives

    neg = load_negatives(cfg)
    folder = feature_root() / f"{neg.folder.name}-{backbone_key(model)}" / f"stride{STRIDE}"
    if (folder / NEGATIVES_MANIFEST).is_file():
        return folder
    w, info = base_windows(model, neg)
    return write_feature_negatives(folder, w, model, {**info, "what": "streaming windows of keyword-free speech"})


def mine(ref: Path, neg: NegativeStream, emb: np.ndarray, out: Path, threshold: float = MINE_THRESHOLD
         ) -> dict[str, Any]:
    """Where `ref` fires on `neg` (its live path): those windows into `out`, and the false accepts per hour."""
    import zoo
    from bench.stats import fa_per_hour
    from bench.wakeword import WakewordConfig, fa_sources
    from backends.streaming import ReferenceStream, streaming_form
    from realtime.engine import run_offline
    from training.features import write_feature_negatives
    from zoo.streaming import speech_embedding_reference

    model, _ = zoo.load_model(ref)
    cfg = WakewordConfig()
    table = speech_embedding_reference(model, neg.wave, embeddings=emb)
    _, spec = streaming_form(model)
    trace = run_offline(None, tuple(model.labels), neg.wave, cfg.engine(0.05), trace=True,
                        stream=ReferenceStream(table, spec, tuple(model.labels)))[1]
    chunk, first, n, _ = window_geometry(model)
    fired = trace.detections(threshold)
    rows = np.unique(np.array([d.time_s * 16000 // chunk + k for d in fired for k in CONTEXT], np.int64))
    rows = rows[(rows >= 0) & (rows < len(table))]
    seconds = neg.wave.size / 16000
    counts = {str(t): len(trace.detections(t)) for t in (0.5, 0.7, 0.9)}
    row = {"ref": str(ref), "stream": neg.folder.name, "hours": round(neg.hours, 3),
           "false_accepts": counts, "fa_per_hour": {t: fa_per_hour(c, seconds) for t, c in counts.items()},
           "sources_at_0.5": [{"said": a, "fired": b, "false_accepts": k}
                              for a, b, k in fa_sources([(d.label, d.time_s) for d in fired], neg.events)]}
    if rows.size:
        write_feature_negatives(out, windows_at(emb, rows, first, n), model,
                                {"what": f"windows where {ref} fired at {threshold} (and {len(CONTEXT) - 1} "
                                         f"neighbours)", "stream": neg.folder.name, "detections": len(fired)})
        row["mined_windows"] = int(rows.size)
    else:
        row["mined_windows"] = 0
    return row


def mining_cv(recipe: Path, rounds: int, folds: Sequence[str], runs_dir: Path, threads: int,
              out: Path, command: str) -> Path:
    """Round 0 .. rounds of every fold (and `all`): train, mine, train again; results as the docstring says."""
    import zoo
    from bench.realspeech import FOLDS, fold_dir, load_recipe, score_run, summarize, train_fold
    from kws.runinfo import write_results
    from training.features import NEGATIVES_MANIFEST

    base_cfg = load_recipe(recipe)
    name = recipe.stem
    probe = zoo.create_model(base_cfg.model, labels=("a", "b"))  # the backbone (frozen) is all the features need
    base = feature_negatives(probe)
    rows: list[dict[str, Any]] = [{"kind": "training_stream", **json.loads((base / NEGATIVES_MANIFEST).read_text())}]
    mined: dict[str, list[str]] = {f: [] for f in folds}
    for r in range(rounds + 1):
        neg = load_negatives(NegativesConfig(hours=MINE_HOURS, role="train", seed=MINE_SEED + r))
        emb = stream_embeddings(probe, neg)
        clip_rows: list[dict[str, Any]] = []
        for fold in folds:
            fold_spec = "all" if fold == "all" else f"{fold}/{FOLDS}"
            cfg = dataclasses.replace(base_cfg, feature_negatives=",".join([str(base), *mined[fold]]))
            run = fold_dir(runs_dir, f"{name}-r{r}", fold_spec)
            print(f"== {name} round {r}: fold {fold_spec} -> {run}", flush=True)
            train_fold(cfg, fold_spec, run, threads)
            if fold != "all":
                clip_rows += score_run(cfg, run, fold_spec)
            # the last round is mined too: its FA/h on hours it never trained on is its figure
            m = mine(run, neg, emb, run / "mined")
            rows.append({"kind": "round", "round": r, "fold": fold_spec, **m})
            print(f"  round {r} fold {fold_spec}: {m['fa_per_hour']} FA/h on {m['hours']} h of fresh negatives; "
                  f"{m['mined_windows']} windows mined", flush=True)
            if m["mined_windows"] and r < rounds:
                mined[fold].append(str(run / "mined"))
        if clip_rows:
            summary = summarize(clip_rows)
            write_results(paths.RESULTS / "cv" / f"{name}-r{r}.json", summary + clip_rows, command=command,
                          recipe=str(recipe), recipe_config=dataclasses.replace(base_cfg, feature_negatives=str(base))
                          .to_dict(), folds=[f for f in folds if f != "all"], round=r,
                          protocol="bench.realspeech cv's, on the models of this mining round")
        write_results(out, rows, command=command, recipe=str(recipe), rounds=rounds,
                      protocol=__doc__.split("\n\n")[2] + "\n\n" + __doc__.split("\n\n")[3])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mining", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cv", help="rounds of train + mine for every fold and the final model")
    c.add_argument("recipe", type=Path)
    c.add_argument("--rounds", type=int, default=1, help="mining rounds after round 0 (default 1)")
    c.add_argument("--folds", default="1,2,3,4,5,all", help="comma-separated folds (default every one and all)")
    c.add_argument("--runs-dir", type=Path, default=paths.RUNS / "cv")
    c.add_argument("--threads", type=int, default=0)
    c.add_argument("--out", type=Path, default=paths.RESULTS / "mining.json")
    f = sub.add_parser("features", help="the training stream's windows for a model's backbone")
    f.add_argument("--model", default="speech_embedding_conv")
    f.add_argument("--hours", type=float, default=TRAIN_STREAM.hours)
    a = p.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.mining", *(argv if argv is not None else sys.argv[1:])])
    if a.cmd == "features":
        import zoo

        print(feature_negatives(zoo.create_model(a.model, labels=("a", "b")),
                                dataclasses.replace(TRAIN_STREAM, hours=a.hours)))
        return 0
    folds = [s.strip() for s in a.folds.split(",") if s.strip()]
    bad = [s for s in folds if s != "all" and not (s.isdigit() and 1 <= int(s) <= 5)]
    if bad or a.rounds < 0:
        p.error(f"folds are 1-5 or all (got {bad}); rounds >= 0")
    print(mining_cv(a.recipe, a.rounds, folds, a.runs_dir, a.threads, a.out, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
