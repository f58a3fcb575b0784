#!/usr/bin/env bash
# Prepares a fresh machine: Debian's Fashion-MNIST package (when apt is usable), a virtual
# environment in .venv, and nnjpeg built from this tree with its test/benchmark/demo extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "== installing Debian package dataset-fashion-mnist"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "== dataset-fashion-mnist not installed and apt-get not usable as root here;" \
         "nnjpeg.datasets falls back to the Keras cache or a download"
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
echo "== installing nnjpeg and its extras into .venv"
# -qq: errors only; pip's warnings (an extra index it cannot read, say) would fill the terminal.
.venv/bin/python -m pip install -qq --upgrade pip
.venv/bin/python -m pip install -qq ".[test,bench,demo]"
# From another directory: in this one, the source tree's nnjpeg/ (no compiled module) would shadow it.
(cd / && "$OLDPWD/.venv/bin/python" -c "import nnjpeg, json; print('nnjpeg', nnjpeg.__version__, json.dumps(nnjpeg.build_info()))")
