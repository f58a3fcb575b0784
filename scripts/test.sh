#!/usr/bin/env bash
# The test command: setup, the pytest suite against the installed package, the wheels as users get
# them (scripts/build_wheels.sh), then the native checks (codec tests under AddressSanitizer + UBSan
# and under ThreadSanitizer, the CUDA kernels under a host emulation, and a compile of them when
# nvcc exists).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== pytest"
set +e
# bin/pytest (not `python -m pytest`) keeps the source tree's nnjpeg/, which has no compiled
# module, off sys.path: the tests run against the installed package. Two worker processes
# (pytest-xdist; NNJPEG_TEST_WORKERS overrides, 0 for none): most tests are small models whose
# time goes to Python and TensorFlow's dispatch, one core each.
.venv/bin/pytest tests -n "${NNJPEG_TEST_WORKERS:-2}" "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: the suite is missing or mis-selected" >&2
  exit 1
fi
[ "$rc" = 0 ] || exit "$rc"

bash scripts/build_wheels.sh
bash scripts/check_native.sh .venv/bin/python
