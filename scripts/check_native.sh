#!/usr/bin/env bash
# Native-code checks for CI, run from the repository root:
#   (a) the extension built with AddressSanitizer + UBSan, and the NumPy/SciPy codec tests run
#       against it (the instrumented module in a temporary copy of the package, the installed
#       package left alone);
#   (b) the same with ThreadSanitizer (the worker pool's hand-offs between threads), without the
#       tests that fork (ThreadSanitizer does not support a child that starts threads after forking
#       a multi-threaded parent);
#   (c) the CUDA kernels (csrc/cuda/roundtrip.cu) built for the CPU under the host emulation
#       (-DNNJPEG_CUDA_EMULATION=ON, csrc/cuda/emulation/) with AddressSanitizer + UBSan: the
#       emulation's self-test, then tests/test_cuda.py, whose device comparisons then run, and,
#       where TensorFlow imports, tests/test_tf_op.py, which then runs the op's GPU kernel;
#   (d) when nvcc is available, the extension and the TensorFlow op built with -DNNJPEG_CUDA=ON,
#       imported and their tests run (they skip the device comparisons when there is no GPU), and
#       the kernels' PTX checked for arithmetic that rounds differently from the CPU's.
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

# A copy of the Python package with the modules given (_codec, and _tf_op where given) at
# $WORK/$1/nnjpeg. Tests run with $WORK/$1 as the working directory, which Python puts first on
# sys.path.
stage_package() {
  local dir="$WORK/$1"
  shift
  mkdir -p "$dir"
  cp -R nnjpeg "$dir/"
  rm -rf "$dir"/nnjpeg/_codec*.so "$dir"/nnjpeg/_tf_op.so "$dir"/nnjpeg/__pycache__
  cp "$@" "$dir/nnjpeg/"
}

# Whether TensorFlow imports with $PY; says so when it does not.
have_tensorflow() {
  local err
  if err="$("$PY" -c "import tensorflow" 2>&1 > /dev/null)"; then return 0; fi
  echo "skipped: TensorFlow does not import with $PY ($(tail -n 1 <<< "$err"))"
  return 1
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

for t in "${SANITIZED_TESTS[@]}"; do
  [[ -f "$t" ]] || fail "$t is missing; the sanitizer runs need every file of: ${SANITIZED_TESTS[*]}"
done
ABS_TESTS=("${SANITIZED_TESTS[@]/#/$ROOT/}")
libstdcxx="$(gcc -print-file-name=libstdc++.so)"
[[ -f "$libstdcxx" ]] || fail "gcc's libstdc++.so was not found (gcc -print-file-name=libstdc++.so: $libstdcxx)"

# build_sanitized NAME RUNTIME CMAKE_OPTION...: the module built in build/NAME with the CMAKE_OPTIONs,
# checked to be instrumented (it imports the runtime's __RUNTIME_init) and staged at $WORK/NAME.
build_sanitized() {
  local name="$1" runtime="$2" start=$SECONDS so
  shift 2
  configure_and_build "build/$name" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNNJPEG_CUDA=OFF "$@"
  so="$(ls "build/$name"/_codec*.so)"
  nm -D --undefined-only "$so" | grep "__${runtime}_init" > /dev/null || fail "$so is not instrumented by $runtime"
  stage_package "$name" "$so" "build/$name/_tf_op.so"
  echo "built in $((SECONDS - start)) s: $so"
}

# run_sanitized NAME RUNTIME REPORT_PATTERN PYTEST_ARGS...: pytest (test files and options) against
# $WORK/NAME, with gcc's lib${RUNTIME}.so preloaded; fails on a sanitizer report or a failed (or
# empty) test run.
run_sanitized() {
  local name="$1" runtime="$2" pattern="$3" start=$SECONDS lib status
  shift 3
  lib="$(gcc -print-file-name="lib$runtime.so")"
  [[ -f "$lib" ]] || fail "gcc's lib$runtime.so was not found (gcc -print-file-name=lib$runtime.so: $lib)"
  set +e
  (
    cd "$WORK/$name"
    # The sanitizer runtime must be loaded before anything else, and python itself is not
    # instrumented, hence LD_PRELOAD (libubsan comes in as the module's dependency). libstdc++
    # right after it: python does not link it, and the runtime resolves the real __cxa_throw for
    # its interceptor when it starts, so a C++ exception (a ValueError raised from the module)
    # would otherwise abort in the interceptor.
    export LD_PRELOAD="$lib $libstdcxx"
    "$PY" -c "import nnjpeg, os, sys; f = nnjpeg._codec.__file__; print('module:', f)
sys.exit(not f.startswith(os.getcwd()))" || { echo "the instrumented module was not imported"; exit 3; }
    # --capture=sys: the sanitizers write to file descriptor 2, which pytest's default fd capture
    # would swallow when they halt the process.
    "$PY" -m pytest -p no:cacheprovider -c "$ROOT/pyproject.toml" --rootdir "$ROOT" --capture=sys "$@"
  ) 2>&1 | tee "$WORK/$name.log"
  status=${PIPESTATUS[0]}
  set -e
  if grep -E "$pattern" "$WORK/$name.log" > /dev/null; then
    fail "the $name run's sanitizer reported an error (report above; pytest exited with status $status)"
  fi
  case $status in
    0) ;;
    5) fail "pytest collected no tests ($name: $*)" ;;
    *) fail "the $name test run exited with status $status" ;;
  esac
  echo "sanitized tests ($name) passed in $((SECONDS - start)) s"
}

section "ASan + UBSan: build (build/asan)"
build_sanitized asan asan -DNNJPEG_SANITIZE=ON
section "ASan + UBSan: ${SANITIZED_TESTS[*]}"
# CPython keeps objects alive until exit by design, so leak detection would only report the
# interpreter.
ASAN_REPORT="ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
run_sanitized asan asan "$ASAN_REPORT" "${ABS_TESTS[@]}"

section "ThreadSanitizer: build (build/tsan)"
build_sanitized tsan tsan -DNNJPEG_TSAN=ON
section "ThreadSanitizer: ${SANITIZED_TESTS[*]}, but the fork tests"
TSAN_OPTIONS="halt_on_error=1" \
  run_sanitized tsan tsan "WARNING: ThreadSanitizer|SUMMARY: ThreadSanitizer" "${ABS_TESTS[@]}" -k "not forked"

section "CUDA kernels under the host emulation, ASan + UBSan: build (build/cuda-emulation)"
build_sanitized cuda-emulation asan -DNNJPEG_SANITIZE=ON -DNNJPEG_CUDA_EMULATION=ON
section "CUDA kernels under the host emulation: the emulation's self-test"
build/cuda-emulation/cuda_emulation_selftest 2>&1 | tee "$WORK/cuda-emulation-selftest.log" ||
  fail "the emulation's self-test failed"
if grep -E "$ASAN_REPORT" "$WORK/cuda-emulation-selftest.log" > /dev/null; then
  fail "the emulation's self-test had a sanitizer report"
fi
section "CUDA kernels under the host emulation: tests/test_cuda.py"
# Every device comparison must run: the module has to report itself as the emulation, with its device.
(cd "$WORK/cuda-emulation" && LD_PRELOAD="$(gcc -print-file-name=libasan.so) $libstdcxx" "$PY" -c "import nnjpeg
info = nnjpeg.build_info(); print(info)
assert info['cuda_emulated'] is True and info['cuda_devices'] == 1, info") ||
  fail "the emulated build does not report cuda_emulated: True with one device"
run_sanitized cuda-emulation asan "$ASAN_REPORT" "$ROOT/tests/test_cuda.py"
section "CUDA kernels under the host emulation: tests/test_tf_op.py (the op's GPU kernel)"
# The emulated GPU kernel is also a CPU kernel under a label, which the tests select; TensorFlow
# itself is not instrumented, and runs with the runtime preloaded.
if have_tensorflow; then
  run_sanitized cuda-emulation asan "$ASAN_REPORT" "$ROOT/tests/test_tf_op.py"
fi

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
  stage_package cuda "$(ls build/cuda/_codec*.so)" build/cuda/_tf_op.so
  # TensorFlow brings a CUDA runtime of its own: the modules' static one must stay out of their
  # exported symbols (CMakeLists.txt).
  for so in build/cuda/_codec*.so build/cuda/_tf_op.so; do
    if nm -D --defined-only "$so" | grep -E ' (cuda|__cuda)[A-Za-z]' ; then
      fail "$so exports the CUDA runtime's symbols above"
    fi
  done

  section "CUDA: import and tests/test_cuda.py"
  (
    cd "$WORK/cuda"
    "$PY" -c "import nnjpeg; info = nnjpeg.build_info(); print(info); assert info['cuda_compiled'] is True, info"
    "$PY" -m pytest -p no:cacheprovider -c "$ROOT/pyproject.toml" --rootdir "$ROOT" "$ROOT/tests/test_cuda.py"
  ) || fail "the CUDA build did not import with cuda_compiled: True, or its tests failed"

  section "CUDA: tests/test_tf_op.py (the op built with CUDA, loaded into TensorFlow)"
  if have_tensorflow; then
    (cd "$WORK/cuda" && "$PY" -m pytest -p no:cacheprovider -c "$ROOT/pyproject.toml" --rootdir "$ROOT" \
      "$ROOT/tests/test_tf_op.py") || fail "the TensorFlow op built with CUDA failed its tests"
  fi

  section "CUDA: how the device code rounds (PTX of csrc/cuda/roundtrip.cu)"
  # What the emulated run cannot see: the device's own arithmetic. Every float add, subtract and
  # multiply must carry .rn (rounded on its own, which ptxas never fuses into a multiply-add), and
  # none may be fused, approximate or flush denormals to zero, for the results to match the CPU
  # path's bit for bit.
  cmake --build build/cuda --target nnjpeg_cuda_ptx
  ptx="build/cuda/CMakeFiles/nnjpeg_cuda_ptx.dir/csrc/cuda/roundtrip.ptx"
  [[ -f "$ptx" ]] || fail "$ptx was not built"
  grep -q "block_roundtrip_kernel" "$ptx" || fail "$ptx holds no block_roundtrip_kernel"
  rounding='^\s+((fma|mad)(\.[a-z]+)*\.f(32|64)|(add|sub|mul)\.f(32|64)|[a-z]+(\.[a-z0-9]+)*\.(ftz|approx)\.|div\.full\.)'
  if grep -nE "$rounding" "$ptx"; then
    fail "the device code above rounds differently from the CPU path (fused, approximate, or flush-to-zero)"
  fi
  echo "$(grep -cE '^\s+(add|sub|mul|div)\.rn\.f(32|64)' "$ptx") float adds, subtracts, multiplies and divides, each rounded on its own (.rn)"
fi

section "check_native.sh: all checks passed"
