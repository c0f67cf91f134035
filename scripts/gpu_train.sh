#!/usr/bin/env bash
# Trains the shipped EfficientNet-B0 weights on a lent GPU machine (bare image with torch,
# timm, onnxruntime; no network): one run on synthetic speech + the speaker-split training
# part of gsc12-dev, one on synthetic speech alone, side by side on the one GPU.
# Needs, in the working tree: .whl/ (espeakng-loader, soundfile, cffi, pycparser wheels for
# the device's Python) and .carry/gsc12-dev (the real clips, FLAC). Results go to $OUT.
# Everything is bounded in time so whatever finished comes back even if the lease runs out.
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
MINUTES=${KWS_GPU_MINUTES:-2.2}     # per training run; both runs share the GPU
PER_WORD=${KWS_PER_WORD:-400}       # synthetic clips per word (generated here, 16 cores)
EPOCHS=${KWS_EPOCHS:-30}            # 10 + 20: ends where the second warm-restart cycle bottoms out
BATCH=${KWS_BATCH:-512}             # EfficientNet-B0 steps are launch-bound below ~512 on an H200
LR=${KWS_LR:-2e-3}                  # AdamW 1e-3 at batch 64, scaled ~sqrt for batch 512
WORKERS=${KWS_WORKERS:-6}
REAL=${KWS_REAL:-folder:.carry/gsc12-dev}
export KWS_CACHE=${KWS_CACHE:-/tmp/kws_cache}
RUNS=${KWS_RUNS:-/tmp/kws_runs}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
(nvidia-smi -L; $PY -c "import torch, onnxruntime as o; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda', o.__version__, o.get_available_providers())") > "$OUT/device.txt" 2>&1
stamp "building data: synth:$PER_WORD and $REAL"
$PY -m kws.data build --source "synth:$PER_WORD" --source "$REAL" --workers 16 > "$OUT/data.log" 2>&1 || { stamp "data build failed"; tail -20 "$OUT/data.log"; }
stamp "data ready"

common=(--model efficientnet_b0 --batch-size "$BATCH" --lr "$LR" --epochs "$EPOCHS" --max-minutes "$MINUTES"
        --workers "$WORKERS" --no-progress)
$PY train.py "${common[@]}" --data "synth:$PER_WORD+$REAL" --out "$RUNS/efficientnet_b0-synth+real" > "$OUT/train_real.log" 2>&1 &
p1=$!
$PY train.py "${common[@]}" --data "synth:$PER_WORD" --out "$RUNS/efficientnet_b0-synth" > "$OUT/train_synth.log" 2>&1 &
p2=$!
# torch-cuda (and ort-cuda where the image's onnxruntime has it) against torch-cpu, meanwhile
$PY -m bench.selfcheck --arch efficientnet_b0 --json "$OUT/selfcheck.json" --runs 200 > "$OUT/selfcheck.log" 2>&1 &
wait $p1 $p2
stamp "training done"

# fp16 copies of the best weights (shipping format, < 16 MiB per file back from the device)
$PY - "$RUNS" "$OUT" <<'PYEOF'
import sys, pathlib
from zoo import load_checkpoint, save_checkpoint
runs, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for run in sorted(runs.iterdir()):
    ck = run / "best.safetensors"
    if ck.is_file():
        model, meta = load_checkpoint(ck)
        save_checkpoint(model, out / f"{run.name}.safetensors", meta, half=True)
        print("saved", run.name)
PYEOF
tar czf "$OUT/runs.tgz" --exclude='*.safetensors' -C "$RUNS" . 2>/dev/null
wait
stamp "done"
ls -la "$OUT"
