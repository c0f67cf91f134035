"""The workers: each clip of a plan rendered and written as a WAV, in this process or in spawned
(not forked: safe beside torch threads) worker processes, with a tqdm bar of clips/s. Each worker
loads the noise beds and its own Renderer once; tqdm is imported only when a build renders.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kws.data.synth.dsp import wav_bytes
from kws.data.synth.noise import NOISE_FILES
from kws.data.synth.plan import ClipSpec, Plan, Speaker
from kws.data.synth.render import Renderer
from kws.data.synth.settings import SynthError


_WORKER: dict[str, Any] = {}


def _worker_init(noise_dir: str, espeak_data: str, speakers: dict[str, Speaker], out_dir: str) -> None:
    import soundfile as sf

    beds = {k: sf.read(str(Path(noise_dir) / f"{NOISE_FILES[k]}.wav"), dtype="float32")[0] for k in NOISE_FILES}
    _WORKER.update(renderer=Renderer(beds, Path(espeak_data)), speakers=speakers, out=Path(out_dir))


def _worker_render(spec: ClipSpec) -> tuple[int, dict[str, Any]]:
    renderer: Renderer = _WORKER["renderer"]
    try:
        clip, info = renderer.render(spec, _WORKER["speakers"][spec.speaker])
    except SynthError:
        raise
    except Exception as e:  # name the clip: a bare numpy traceback from a worker says nothing
        raise SynthError(f"{spec.relpath}: rendering failed: {type(e).__name__}: {e}") from None
    path = _WORKER["out"] / spec.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(clip))
    return spec.index, info


def _render_all(plan: Plan, tmp: Path, noise_dir: Path, espeak_data: Path, workers: int,
                progress: bool) -> dict[int, dict[str, Any]]:
    from tqdm import tqdm

    infos: dict[int, dict[str, Any]] = {}
    bar = tqdm(total=len(plan.clips), unit="clip", desc="synth speech", dynamic_ncols=True, smoothing=0.1,
               disable=not progress)
    initargs = (str(noise_dir), str(espeak_data), plan.speakers, str(tmp))
    try:
        if workers <= 1:  # in-process: no start-up cost (tiny builds, tests)
            _worker_init(*initargs)
            try:
                for spec in plan.clips:
                    i, info = _worker_render(spec)
                    infos[i] = info
                    bar.update()
            finally:
                _WORKER.clear()
        else:
            import multiprocessing as mp

            # spawn, not fork: the caller may hold torch/OpenMP threads, which fork can deadlock.
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_worker_init, initargs=initargs) as pool:
                for i, info in pool.imap_unordered(_worker_render, plan.clips, chunksize=8):
                    infos[i] = info
                    bar.update()
    finally:
        bar.close()
    return infos
