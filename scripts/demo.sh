#!/usr/bin/env bash
# The main job on the embedded default: round-trips scikit-image's bundled photographs through the
# NN-favored codec and standard JPEG, writing out/compress/{comparison.png,psnr.md,psnr.json}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/nnjpeg compress --out out/compress "$@"
