#!/usr/bin/env bash
# The main job, from a fresh clone: install, build the embedded synthetic data set, train the
# default model (EfficientNet-B0) in fast mode, export it to ONNX (+int8), run the quick
# benchmark, and write everything under results/ and runs/.   Usage: bash setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python
RUN=runs/quickstart-efficientnet_b0

bash scripts/install.sh

echo "== 1/5 data: the embedded synthetic speech set (+ real sets in ../shared/data when present)"
sources=(--source synth)
for d in gsc12-dev gsc-v1-sample fsdd-dev; do
  [ -d "../shared/data/$d" ] && sources+=(--source "$d")
done
$PY -m kws.data build --source synth
$PY -m kws.data summary "${sources[@]}"

echo "== 2/5 train: efficientnet_b0, fast mode (5,000 clips), 5-minute budget"
if [ -f "$RUN/report.json" ]; then
  echo "already trained: $RUN"
else
  rm -rf "$RUN"
  $PY train.py --model efficientnet_b0 --data synth --fast --max-minutes 5 --epochs 10 --out "$RUN"
fi

echo "== 3/5 export: ONNX (waveform in) with parity check, and int8"
$PY export.py "$RUN" --int8 --json "$RUN/export.json"

echo "== 4/5 predict: one clip through the shipped weights on ONNX Runtime"
clip=$(ls data_cache/synth/default-*/yes/*.wav 2>/dev/null | head -1 || true)
[ -n "$clip" ] && $PY -m kws predict "$clip" --model efficientnet_b0 --backend ort-cpu

echo "== 5/5 bench: quick accuracy x latency matrix, streaming and noise (shipped weights + this run)"
$PY -m bench --quick --run "$RUN"

echo "done: runs in $RUN, reports in results/ (results/bench_report.md)"
