#!/usr/bin/env bash
# The main job on the embedded default: every shipped defense on 1000 Fashion-MNIST test images under
# gray-box, black-box and adaptive white-box attacks (`nnjpeg demo`), writing the report to out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/nnjpeg demo --out out/demo "$@"
