#!/usr/bin/env bash
# The main job, from a fresh clone: install, build the embedded synthetic data set, train the
# speech-embedding model (Google's pretrained embedding, frozen, + an MLP head) and measure it
# on real speakers it never heard, export it to ONNX (+int8), predict, run the quick benchmark,
# and print a summary.   Usage: bash setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python
OUT=runs/quickstart
SHARED=../shared/data

bash scripts/install.sh

echo "== 1/6 data: the embedded synthetic speech set (+ real sets in $SHARED when present)"
sources=(--source synth)
real=0
for d in gsc12-dev gsc-v1-sample fsdd-dev; do
  [ -d "$SHARED/$d" ] && sources+=(--source "$d") && real=1
done
$PY -m kws.data build --source synth
$PY -m kws.data summary "${sources[@]}"

if [ "$real" = 1 ]; then
  echo "== 2/6 train: speech_embedding_mlp on synthetic + real speech, scored on held-out speakers"
  # Cross-validation fold 1 of 5: trains on the other folds' speakers, scores the held-out ones.
  $PY -m bench.realspeech cv recipes/quickstart.yaml --folds 1 --runs-dir "$OUT" --out "$OUT/real_speech.json"
  RUN="$OUT/quickstart/fold-1"
else
  echo "== 2/6 train: speech_embedding_mlp on synthetic speech ($SHARED not found: no real speech to score)"
  RUN="$OUT/quickstart-synth"
  [ -f "$RUN/report.json" ] || { rm -rf "$RUN"; $PY train.py --config recipes/quickstart-synth.yaml --out "$RUN"; }
fi

echo "== 3/6 export: ONNX (waveform in) with parity check, and int8"
$PY export.py "$RUN" --int8 --json "$RUN/export.json"

echo "== 4/6 predict: one clip through the model just trained, on ONNX Runtime"
clip=$(ls "$SHARED"/gsc12-dev/yes/*.wav 2>/dev/null | head -1 || true)
[ -n "$clip" ] || clip=$(ls data_cache/synth/default-*/yes/*.wav 2>/dev/null | head -1 || true)
[ -n "$clip" ] && $PY predict.py "$clip" --model "$RUN" --backend ort-cpu

echo "== 5/6 bench: quick accuracy x latency matrix, streaming and noise (shipped weights + this run)"
# into the run's own folder: results/ holds the project's published measurements
$PY -m bench --quick --run "$RUN" --out "$OUT/results"

echo "== 6/6 summary"
$PY scripts/quickstart_summary.py "$RUN" --real-speech "$OUT/real_speech.json" --bench "$OUT/results"
