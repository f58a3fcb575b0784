#!/usr/bin/env bash
# The CUDA kernel on a machine with an NVIDIA GPU, in one run of a few minutes, from the
# repository root:
#   (a) the extension built with -DNNJPEG_CUDA=ON for this machine's GPU only (build/gpu);
#   (b) tests/test_cuda.py against it: every device comparison with the CPU path, including the
#       bit-for-bit one with the scalar CPU kernel;
#   (c) scripts/cuda_workload.py under compute-sanitizer: memcheck (out-of-bounds and misaligned
#       device accesses), racecheck (shared-memory hazards between barriers, which the host
#       emulation of scripts/check_native.sh cannot see) and synccheck (barrier misuse);
#   (d) benchmarks/bench_cuda.py: the device's throughput beside the CPU path's;
#   (e) where TensorFlow imports and sees the GPU, the op's GPU kernel (nnjpeg/_tf_op.so of the same
#       build): tests/test_tf_op.py on the GPU, then benchmarks/bench_tf_gpu.py, the op inside a
#       model on the GPU beside the pure-TF backend and the op's CPU kernel, its output checked bit
#       for bit against the scalar CPU kernel. Skipped, and said so, elsewhere.
# Needs python3 with NumPy, SciPy, Pillow, scikit-image, pytest and pybind11, CMake and the CUDA
# toolkit (nvcc, compute-sanitizer); TensorFlow and Keras only for (e). Logs and the benchmarks'
# files go to OUT_DIR.
# Usage: scripts/check_gpu.sh [OUT_DIR]   (default: build/gpu/report; PYTHON overrides python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$(command -v "${PYTHON:-python3}")"
OUT="${1:-build/gpu/report}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

section() { printf '\n==== %s ====\n' "$*"; }
fail() { printf 'check_gpu.sh: FAILED: %s\n' "$*" >&2; exit 1; }
# run LOG COMMAND...: the command's output shown and kept in $OUT/LOG; its status is the command's.
run() {
  local log="$1"
  shift
  set +e
  "$@" 2>&1 | tee "$OUT/$log"
  local status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

section "GPU"
command -v nvidia-smi > /dev/null || fail "nvidia-smi was not found: this machine has no NVIDIA driver"
nvidia-smi -L | tee "$OUT/gpu.txt"
arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')"
[[ "$arch" =~ ^[0-9]+$ ]] || fail "could not read the GPU's compute capability (nvidia-smi said: $arch)"
NVCC="$(command -v nvcc || true)"
if [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]]; then NVCC=/usr/local/cuda/bin/nvcc; fi
[[ -n "$NVCC" ]] || fail "nvcc is neither on PATH nor at /usr/local/cuda/bin/nvcc"
SANITIZER="$(command -v compute-sanitizer || true)"
if [[ -z "$SANITIZER" ]]; then SANITIZER="$(dirname "$NVCC")/compute-sanitizer"; fi
[[ -x "$SANITIZER" ]] || fail "compute-sanitizer is neither on PATH nor beside nvcc ($SANITIZER)"

section "build (build/gpu, sm_$arch)"
start=$SECONDS
GENERATOR=()
if command -v ninja > /dev/null; then GENERATOR=(-G Ninja); fi
cmake -S . -B build/gpu "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release -DNNJPEG_CUDA=ON \
  -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="$arch" -DPython_EXECUTABLE="$PY" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)"
cmake --build build/gpu
echo "built in $((SECONDS - start)) s"
# The package with the new module, outside the source tree (whose nnjpeg/ has no module).
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -R nnjpeg "$WORK/"
rm -rf "$WORK"/nnjpeg/_codec*.so "$WORK"/nnjpeg/_tf_op.so "$WORK"/nnjpeg/__pycache__
cp build/gpu/_codec*.so build/gpu/_tf_op.so "$WORK/nnjpeg/"
# Python runs from $WORK (first on sys.path for `python -c` and `python -m`), or finds it on
# PYTHONPATH when it runs a script from elsewhere.
export PYTHONPATH="$WORK"
cd "$WORK"
"$PY" -c "import nnjpeg; info = nnjpeg.build_info(); print(info)
assert info['cuda_devices'] >= 1 and not info['cuda_emulated'], 'no CUDA device visible to the build'" |
  tee "$OUT/build_info.txt" || fail "the module sees no CUDA device"

section "tests/test_cuda.py"
run test_cuda.log "$PY" -m pytest -p no:cacheprovider -c "$ROOT/pyproject.toml" --rootdir "$ROOT" \
  "$ROOT/tests/test_cuda.py" || fail "tests/test_cuda.py failed"

for tool in memcheck racecheck synccheck; do
  section "compute-sanitizer --tool $tool: scripts/cuda_workload.py"
  run "sanitizer-$tool.log" "$SANITIZER" --tool "$tool" --error-exitcode 3 "$PY" "$ROOT/scripts/cuda_workload.py" ||
    fail "compute-sanitizer --tool $tool reported errors, or the workload failed"
done

section "benchmarks/bench_cuda.py"
# From benchmarks/, which holds no nnjpeg/ to shadow the one in $WORK.
(cd "$ROOT/benchmarks" && run bench_cuda.log "$PY" bench_cuda.py --json "$OUT/cuda.json") ||
  fail "benchmarks/bench_cuda.py failed"

section "TensorFlow: the op's GPU kernel (tests/test_tf_op.py, benchmarks/bench_tf_gpu.py)"
# One line on stdout: TensorFlow's version and the GPUs it sees; its own logs go to the file.
if ! tf_info="$("$PY" -c "import tensorflow as tf; print(tf.__version__, len(tf.config.list_physical_devices('GPU')))" \
  2> "$OUT/tf_import.log")"; then
  echo "skipped: TensorFlow does not import with $PY ($(tail -n 1 "$OUT/tf_import.log"))" | tee "$OUT/tf_gpu.txt"
elif [[ "${tf_info##* }" == 0 ]]; then
  echo "skipped: TensorFlow ${tf_info%% *} imports but sees no GPU (a CPU-only build, or its CUDA libraries or the driver unusable: $OUT/tf_import.log)" |
    tee "$OUT/tf_gpu.txt"
else
  echo "TensorFlow ${tf_info%% *}, ${tf_info##* } GPU(s)" | tee "$OUT/tf_gpu.txt"
  run test_tf_op.log "$PY" -m pytest -p no:cacheprovider -c "$ROOT/pyproject.toml" --rootdir "$ROOT" \
    "$ROOT/tests/test_tf_op.py" || fail "tests/test_tf_op.py failed with the op's GPU kernel"
  (cd "$ROOT/benchmarks" && run bench_tf_gpu.log "$PY" bench_tf_gpu.py --json "$OUT/tf_gpu.json") ||
    fail "benchmarks/bench_tf_gpu.py failed (its output says which check)"
fi

section "check_gpu.sh: all checks passed; logs in $OUT"
