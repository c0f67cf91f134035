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

if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
else
  echo "apt-get not found: install PortAudio and libsndfile yourself (see README.md)" >&2
fi

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3.12 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -r requirements.txt
echo "environment ready: $(.venv/bin/python --version), .venv"
