#!/usr/bin/env bash
# Installs everything Face Studio and its tests need on a fresh Debian/Ubuntu machine:
# system libraries for Qt/VTK (and Xvfb for the GUI tests), a virtual environment in .venv with
# the package and its test extra, and Khronos' glTF-Validator (npm) for the GLB tests.
# Usage: bash scripts/setup.sh [--no-test]   (--no-test: only what the studio itself needs)
set -euo pipefail
cd "$(dirname "$0")/.."
with_tests=1
[ "${1:-}" = "--no-test" ] && with_tests=0

apt_packages="libgl1 libegl1 libgl1-mesa-dri libglu1-mesa libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-randr0
 libxcb-xfixes0 libxcb-xkb1 libdbus-1-3 libfontconfig1 libxrender1 libxi6"
[ $with_tests = 1 ] && apt_packages="$apt_packages xvfb xauth"
if command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" != 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $apt_packages >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ $with_tests = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
  if command -v npm >/dev/null; then
    npm install -s --no-audit --no-fund --prefix .tools gltf-validator@2.0.0-dev.3.10 >/dev/null
  else
    echo "setup: npm not found; the glTF-Validator tests will be skipped" >&2
  fi
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup: done (.venv ready)"
