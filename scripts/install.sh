#!/usr/bin/env bash
# Installs everything the project needs on Debian/Ubuntu: system libraries, then a
# virtualenv (.venv) with the pinned Python packages. Safe to run again (idempotent).
# Windows and macOS: see README.md, "Other platforms".
set -euo pipefail
cd "$(dirname "$0")/.."

# PortAudio for the microphone, libsndfile for audio files, espeak-ng/sox for making and
# checking audio by hand, Xvfb + the X/EGL libraries PyQt6's wheels expect for the GUI.
SYSTEM_PACKAGES=(libportaudio2 libsndfile1 espeak-ng sox xvfb libegl1 libgl1 libglib2.0-0
  libfontconfig1 libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
  libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0)

# More voices for the synthetic speech set (kws.data.synth, engines flite and festival):
# flite, festival and its free voices in Debian main. Best effort: a distribution that lacks
# some of them still installs the rest, and the generator builds without any of them (it
# names what is missing). Keep in step with kws.data.synth.FESTIVAL_PACKAGES (a test checks).
TTS_PACKAGES=(flite festival festival-ca festival-czech festvox-ca-ona-hts festvox-czech-dita
  festvox-czech-krb festvox-czech-ph festvox-italp16k festvox-itapc16k festvox-kallpc16k
  festvox-kdlpc16k festvox-ru festvox-suopuhe-common festvox-suopuhe-lj festvox-suopuhe-mv
  festvox-us-slt-hts)

# Real continuous speech for the keyword-free negative streams (bench.negatives; CC-BY-SA-3.0, 8 kHz):
# best effort, like the TTS voices (the streams are built without them, and say so by their contents).
SPEECH_PACKAGES=(asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
  asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav)

if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  missing_tts=()
  for p in "${TTS_PACKAGES[@]}" "${SPEECH_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing_tts+=("$p")
  done
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if [ ${#missing[@]} -gt 0 ] || [ ${#missing_tts[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if [ ${#missing_tts[@]} -gt 0 ]; then
    available=()
    for p in "${missing_tts[@]}"; do
      if apt-cache show "$p" >/dev/null 2>&1; then available+=("$p"); else echo "note: $p is not in this distribution (the synthetic set is built without it)"; fi
    done
    if [ ${#available[@]} -gt 0 ]; then
      echo "installing TTS voices: ${available[*]}"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${available[@]}" \
        || echo "note: some TTS voices failed to install (the synthetic set is built without them)" >&2
    fi
  fi
else
  echo "apt-get not found: install PortAudio and libsndfile yourself (see README.md)" >&2
fi

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3.12 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true

# torch and its CUDA libraries are several GB from PyPI, and a connection cut in the middle of
# one of them must not fail a fresh install: pip resumes a cut download (--resume-retries, pip
# 25.1 and newer) and the whole install is tried again, finished wheels coming from pip's cache.
RESUME=()
.venv/bin/python -m pip install --help 2>/dev/null | grep -q -- --resume-retries && RESUME=(--resume-retries 30)
PIP_ATTEMPTS=4
for attempt in $(seq 1 "$PIP_ATTEMPTS"); do
  if .venv/bin/python -m pip install -q "${RESUME[@]}" -r requirements.txt; then
    break
  fi
  if [ "$attempt" -eq "$PIP_ATTEMPTS" ]; then
    echo "pip install -r requirements.txt failed $PIP_ATTEMPTS times; giving up" >&2
    exit 1
  fi
  echo "pip install failed (attempt $attempt of $PIP_ATTEMPTS); trying again in $((attempt * 20)) s" >&2
  sleep $((attempt * 20))
done
echo "environment ready: $(.venv/bin/python --version), .venv"
