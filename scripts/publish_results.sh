#!/usr/bin/env bash
# Regenerates the committed figures in results/ on this (2-core) machine, in one sitting, one
# measurement at a time so they do not compete for the cores. Takes about an hour.
# Each step records its own exact command inside the JSON it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

# real-speech accuracy of the shipped weights (+ the synthetic-only variant)
$PY -m bench.realspeech --weights efficientnet_b0 --weights dscnn \
    --weights zoo/weights/variants/efficientnet_b0-synth-only.safetensors
# batch-1 latency of every backend, int8 vs fp32 (waveform in, 1 thread)
$PY -m bench.latency --models efficientnet_b0 dscnn resnet18 mobilenetv3_large_100
# live detector: mic-to-decision latency, decisions/s, CPU
$PY -m realtime.measure --configs efficientnet_b0:ort-cpu,dscnn:ort-cpu,dscnn:ort-int8,efficientnet_b0:ort-int8
# the window, under Xvfb
Xvfb :99 -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
sleep 2
DISPLAY=:99 $PY -m realtime.screenshot --model dscnn || true
kill $xvfb
# micro-benchmarks (pytest-benchmark), stored per commit for --benchmark-compare
C=$(git rev-parse --short HEAD)
$PY -m pytest bench/micro -q --benchmark-storage=results/micro --benchmark-save="$C" \
    --benchmark-json="results/micro/$C.json"
# the full suite: every model x every backend, streaming (10-minute keyword-free stream), noise
$PY -m bench
