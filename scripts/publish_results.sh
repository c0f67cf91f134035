#!/usr/bin/env bash
# Regenerates the committed figures in results/ on this (2-core) machine, in one sitting, one
# measurement at a time so they do not compete for the cores. Takes about an hour and a half.
# Each step records its own exact command inside the JSON it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

# real-speech accuracy: each recipe's speaker-disjoint cross-validation is run by hand
# (`python -m bench.realspeech cv RECIPE`: minutes for the speech-embedding heads, hours for an image
# backbone on 2 cores; README "Shipped weights"); here the report from those results
$PY -m bench.realspeech report
# int8 against fp32, every variant of every shipped model
$PY -m bench.int8
# batch-1 latency of every backend, every shipped model (waveform in, 1 thread)
$PY -m bench.latency --threads 1 --rounds 60
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
# the index of every result file (results/README.md), from the files' own metadata
$PY -m bench index
