#!/usr/bin/env bash
# Native-code checks for CI, run from the repository root:
#   (a) the extension built with AddressSanitizer + UBSan, and the NumPy/SciPy codec tests run
#       against it (the instrumented module in a temporary copy of the package, the installed
#       package left alone);
#   (b) when nvcc is available, the extension built with -DNNJPEG_CUDA=ON, imported and its CUDA
#       tests run (they skip the device comparisons when there is no GPU).
# Usage: scripts/check_native.sh [PYTHON]   (default: .venv/bin/python)
set -euo pipefail

py_arg="${1:-.venv/bin/python}"
if [[ "$py_arg" == */* ]]; then
  # Absolute, but not symlink-resolved: a venv's python finds its site-packages by its own path.
  PY="$(cd "$(dirname "$py_arg")" && pwd)/$(basename "$py_arg")"
else
  PY="$(command -v "$py_arg")"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SANITIZED_TESTS=(tests/test_codec.py tests/test_kernels.py)
GENERATOR=()
if command -v ninja > /dev/null; then GENERATOR=(-G Ninja); fi

section() { printf '\n==== %s ====\n' "$*"; }
fail() { printf 'check_native.sh: FAILED: %s\n' "$*" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# A copy of the Python package with `so` as its extension module, at $WORK/$1/nnjpeg. Tests run
# with $WORK/$1 as the working directory, which Python puts first on sys.path.
stage_package() {
  local dir="$WORK/$1" so="$2"
  mkdir -p "$dir"
  cp -R nnjpeg "$dir/"
  rm -rf "$dir"/nnjpeg/_codec*.so "$dir"/nnjpeg/__pycache__
  cp "$so" "$dir/nnjpeg/"
}

configure_and_build() {
  local dir="$1"
  shift
  cmake -S . -B "$dir" "${GENERATOR[@]}" -DPython_EXECUTABLE="$PY" \
    -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" "$@"
  cmake --build "$dir"
}

section "Python: $PY"
"$PY" -c "import sys, numpy, pytest; print(sys.version.split()[0], 'numpy', numpy.__version__,
  'pytest', pytest.__version__)"

section "ASan + UBSan: build (build/asan)"
for t in "${SANITIZED_TESTS[@]}"; do
  [[ -f "$t" ]] || fail "$t is missing; the sanitizer run needs every file of: ${SANITIZED_TESTS[*]}"
done
start=$SECONDS
configure_and_build build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNNJPEG_SANITIZE=ON -DNNJPEG_CUDA=OFF
so="$(ls build/asan/_codec*.so)"
nm -D --undefined-only "$so" | grep __asan_init > /dev/null || fail "$so is not instrumented by AddressSanitizer"
stage_package asan "$so"
echo "built in $((SECONDS - start)) s: $so"

section "ASan + UBSan: ${SANITIZED_TESTS[*]}"
libasan="$(gcc -print-file-name=libasan.so)"
[[ -f "$libasan" ]] || fail "gcc's libasan.so was not found (gcc -print-file-name=libasan.so: $libasan)"
libstdcxx="$(gcc -print-file-name=libstdc++.so)"
[[ -f "$libstdcxx" ]] || fail "gcc's libstdc++.so was not found (gcc -print-file-name=libstdc++.so: $libstdcxx)"
ABS_TESTS=("${SANITIZED_TESTS[@]/#/$ROOT/}")
start=$SECONDS
set +e
(
  cd "$WORK/asan"
  # The ASan runtime must be loaded before anything else, and python itself is not instrumented,
  # hence LD_PRELOAD (libubsan comes in as the module's dependency). CPython keeps objects alive
  # until exit by design, so leak detection would only report the interpreter.
  # libstdc++ right after it: python does not link it, and ASan resolves the real __cxa_throw for
  # its interceptor when it starts, so a C++ exception (a ValueError raised from the module) would
  # otherwise abort in the interceptor.
  export LD_PRELOAD="$libasan $libstdcxx"
  export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  "$PY" -c "import nnjpeg, os, sys; f = nnjpeg._codec.__file__; print('module:', f)
sys.exit(not f.startswith(os.getcwd()))" || { echo "the instrumented module was not imported"; exit 3; }
  # --capture=sys: the sanitizers write to file descriptor 2, which pytest's default fd capture
  # would swallow when they halt the process.
  "$PY" -m pytest -p no:cacheprovider -c "$ROOT/pyproject.toml" --rootdir "$ROOT" --capture=sys \
    "${ABS_TESTS[@]}"
) 2>&1 | tee "$WORK/asan.log"
status=${PIPESTATUS[0]}
set -e
if grep -E "ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer" \
  "$WORK/asan.log" > /dev/null; then
  fail "the sanitizers reported an error (report above; pytest exited with status $status)"
fi
case $status in
  0) ;;
  5) fail "pytest collected no tests from ${SANITIZED_TESTS[*]}" ;;
  *) fail "the sanitized test run exited with status $status" ;;
esac
echo "sanitized tests passed in $((SECONDS - start)) s"

section "CUDA: build (build/cuda)"
NVCC="$(command -v nvcc || true)"
if [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [[ -z "$NVCC" ]]; then
  echo "skipped: nvcc is neither on PATH nor at /usr/local/cuda/bin/nvcc"
else
  "$NVCC" --version | tail -n 2
  start=$SECONDS
  configure_and_build build/cuda -DCMAKE_BUILD_TYPE=Release -DNNJPEG_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC"
  echo "built in $((SECONDS - start)) s"
  stage_package cuda "$(ls build/cuda/_codec*.so)"

  section "CUDA: import and tests/test_cuda.py"
  (
    cd "$WORK/cuda"
    "$PY" -c "import nnjpeg; info = nnjpeg.build_info(); print(info); assert info['cuda_compiled'] is True, info"
    "$PY" -m pytest -p no:cacheprovider -c "$ROOT/pyproject.toml" --rootdir "$ROOT" "$ROOT/tests/test_cuda.py"
  ) || fail "the CUDA build did not import with cuda_compiled: True, or its tests failed"
fi

section "check_native.sh: all checks passed"
