#!/usr/bin/env bash
# Install sparsetime into ./.venv on a fresh machine (Python >= 3.10, pip, gcc).
# torch 2.13.0 first (the CPU build); then the package with its test extras; then, where apt-get
# exists and we are root, Debian's Fashion-MNIST so the default run needs no download.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test]"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: could not install Debian's dataset-fashion-mnist; the loader will try to download" >&2
fi
echo "sparsetime installed in .venv"
