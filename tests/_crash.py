"""kill -9 at seeded random points: a job is forked, SIGKILLed, rerun (resumed), and compared.

    python tests/_crash.py train|cache|export WORKDIR --kills 10 --seed 0   # prints one JSON line

One process imports everything once and forks a child per attempt (a fresh interpreter per
attempt would spend most of each attempt importing torch). The reference run goes first
(uninterrupted, its duration sets the kill window); then attempts SIGKILLed at seeded random
times, each followed by an invariant check of what it left and each resuming what the last
one committed, until an attempt runs to the end (after 5 kills, one is let run); its outputs
are compared with the reference's. Such cycles repeat until `kills` kills have happened. The parent never runs
a torch op, so no thread pool exists when it forks.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

TRAIN = ["--model", "dscnn", "--data", "synth:tiny", "--epochs", "2", "--batch-size", "16", "--lr", "3e-3",
         "--no-progress", "--deterministic", "--seed", "3"]
TIMING = {"epoch_s", "samples_per_s"}
PER_CYCLE = 5  # kills before a cycle's attempt runs uninterrupted


def fork(job: Callable[[], None], kill_after: float | None) -> str:
    """Run `job` in a child; SIGKILL it after `kill_after` s. Returns "killed", "finished" or "failed"."""
    pid = os.fork()
    if pid == 0:  # the child: never return into the parent's code
        code = 1
        try:
            sys.stdout = sys.stderr = open(os.devnull, "w")
            job()
            code = 0
        except BaseException:  # noqa: BLE001
            traceback.print_exc(file=sys.__stderr__)
        finally:
            os._exit(code)
    if kill_after is not None:
        deadline = time.monotonic() + kill_after
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return "finished" if os.waitstatus_to_exitcode(status) == 0 else "failed"
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return "killed" if code == -signal.SIGKILL else "finished" if code == 0 else "failed"


def temps(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.tmp"))


# ----------------------------------------------------------------------------- jobs

class TrainJob:
    def __init__(self, work: Path) -> None:
        self.work = work

    def run(self, out: Path) -> Callable[[], None]:
        def job() -> None:
            from cli import train

            from training.state import STATE_FILE

            args = ["--resume", str(out), "--no-progress"] if (out / STATE_FILE).exists() else [*TRAIN, "--out", str(out)]
            assert train.main(args) == 0

        return job

    def check(self, out: Path) -> list[str]:
        """What a kill may leave: temporaries only; every file that exists is whole."""
        from training.report import read_metrics
        from training.state import STATE_FILE, load_state

        problems = []
        try:
            if (out / STATE_FILE).exists():
                load_state(out / STATE_FILE)
            read_metrics(out / "metrics.csv")
            for name in ("best.safetensors", "last.safetensors"):
                if (out / name).exists():
                    import zoo

                    zoo.load_checkpoint(out / name)
            for name in ("report.json", "skipped.json"):
                if (out / name).exists():
                    json.loads((out / name).read_text())
        except Exception as e:  # noqa: BLE001
            problems.append(f"{type(e).__name__}: {e}")
        return problems

    def result(self, out: Path) -> dict:
        from safetensors.torch import load_file

        from training.report import read_metrics

        rep = json.loads((out / "report.json").read_text())
        last = load_file(str(out / "last.safetensors"))
        return {"metrics": [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(out / "metrics.csv")],
                "report": {k: rep[k] for k in ("accuracy", "macro_f1", "test_loss", "confusion", "checkpoint",
                                               "epochs_trained", "n")},
                "last_sha": {k: __import__("hashlib").sha1(v.numpy().tobytes()).hexdigest() for k, v in last.items()}}


class CacheJob:
    def __init__(self, work: Path) -> None:
        import numpy as np
        import soundfile as sf

        self.words = work / "words"
        if not self.words.exists():
            rng = np.random.default_rng(0)
            for w in ("up", "down", "left", "right"):
                (self.words / w).mkdir(parents=True)
                for s in range(40):
                    for take in range(3):
                        x = (0.2 * rng.standard_normal(16000)).astype(np.float32)
                        sf.write(self.words / w / f"spk{s}_{take}.wav", x, 16000, subtype="PCM_16")

    def run(self, out: Path) -> Callable[[], None]:
        def job() -> None:
            from kws.data import open_source

            open_source(f"folder:{self.words}", labels="auto", cache_dir=out, workers=1).build()

        return job

    def check(self, out: Path) -> list[str]:
        """A manifest is the commit mark: where one exists its array must be whole and match it."""
        import numpy as np

        problems = []
        for m in out.rglob("*-*.json"):
            if m.name.startswith("."):
                continue
            manifest = json.loads(m.read_text())
            waves = np.load(m.with_suffix(".npy"), mmap_mode="r")
            if waves.shape[0] != manifest["clips"]:
                problems.append(f"{m}: {manifest['clips']} clips, array holds {waves.shape[0]}")
        return problems

    def result(self, out: Path) -> dict:
        import hashlib

        import numpy as np

        res = {}
        for m in sorted(out.rglob("*-*.json")):
            if m.name.startswith("."):
                continue
            manifest = json.loads(m.read_text())
            res[m.name] = {"clips": manifest["clips"], "files": manifest["files"], "bad": manifest["bad"],
                           "sha": hashlib.sha1(np.load(m.with_suffix(".npy")).tobytes()).hexdigest()}
        return res


class ExportJob:
    def __init__(self, work: Path) -> None:
        self.ckpt = work / "dscnn.safetensors"
        if not self.ckpt.exists():
            import torch

            import zoo

            torch.manual_seed(0)
            zoo.save_checkpoint(zoo.create_model("dscnn").eval(), self.ckpt)

    def run(self, out: Path) -> Callable[[], None]:
        def job() -> None:
            os.environ["KWS_EXPORTS"] = str(out)
            from backends.export import resolve_onnx

            resolve_onnx(self.ckpt, log=None)

        return job

    def check(self, out: Path) -> list[str]:
        """Whatever model.onnx a kill leaves is a checked one."""
        from backends.export import parity_passed
        from backends.meta import read_onnx_info

        problems = []
        for p in out.rglob("model.onnx"):
            if not parity_passed(read_onnx_info(p).props):
                problems.append(f"{p}: in the cache without a passed parity record")
        return problems

    def result(self, out: Path) -> dict:
        import numpy as np
        import onnxruntime as ort

        from backends.clips import speechlike_clips
        from backends.meta import read_onnx_info

        (p,) = list(out.rglob("model.onnx"))
        info = read_onnx_info(p)
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        probs = sess.run(None, {"waveform": speechlike_clips(8, seed=5)})[0]
        return {"parity": json.loads(info.props["parity"]), "labels": list(info.labels),
                "probs": np.round(probs.astype(np.float64), 7).tolist()}


JOBS = {"train": TrainJob, "cache": CacheJob, "export": ExportJob}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("job", choices=list(JOBS))
    ap.add_argument("work")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    job = JOBS[args.job](work)
    ref = work / "reference"

    t0 = time.monotonic()
    assert fork(job.run(ref), None) == "finished", "the uninterrupted reference run failed"
    span = time.monotonic() - t0
    expected = job.result(ref)
    rng = random.Random(args.seed)
    points, problems, cycles, identical = [], [], 0, []
    # Cycles: a fresh output folder, attempts SIGKILLed at seeded random times (each resuming what the
    # last one committed) until one runs to the end -- after PER_CYCLE kills, one that is not killed, as
    # a job that cannot finish in the kill window never would -- then the comparison; until `kills` kills.
    while len(points) < args.kills:
        out = work / f"killed-{cycles}"
        cycles += 1
        outcome = "killed"
        for _ in range(PER_CYCLE):
            at = rng.uniform(0.02, 0.9) * span  # scaled to this machine's speed of the job
            outcome = fork(job.run(out), at)
            assert outcome != "failed", f"an attempt failed (not killed) in {out}"
            if outcome == "finished":
                break
            points.append(round(at, 3))
            problems += [f"after a kill at {at:.2f} s: {p}" for p in job.check(out)]
        if outcome != "finished":
            assert fork(job.run(out), None) == "finished", f"the last attempt failed in {out}"
        identical.append(job.result(out) == expected)
        problems += [f"left behind: {t}" for t in temps(out)]
    print(json.dumps({"job": args.job, "reference_s": round(span, 2), "kill_points_s": points, "cycles": cycles,
                      "identical": identical, "problems": problems}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
