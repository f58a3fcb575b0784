// Checks of the host emulation itself (scripts/check_native.sh runs it): that it runs every thread
// of every block once with its own indices, that __syncthreads() separates what threads write
// from what the others then read, and that it reports what a device would not run. The kernels
// that matter, csrc/cuda/roundtrip.cu, are then compared with the CPU path by tests/test_cuda.py.
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "cuda_runtime.h"

namespace {

using nnjpeg::cuda::emulation::launch;

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

// Each thread counts itself at its global linear index, from every built-in variable.
__global__ void count_threads(int* hits) {
  const unsigned int bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned int tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  hits[bx * blockDim.x * blockDim.y * blockDim.z + tx] += 1;
}

// Reverses each block's slice of `data` through shared memory, `rounds` times; a thread's index is
// read again after every barrier. Without the barriers, threads that run first would read slots
// the others have not written yet.
__global__ void reverse_in_blocks(int* data, int rounds) {
  __shared__ int slots[256];
  const unsigned int base = blockIdx.x * blockDim.x;
  for (int r = 0; r < rounds; ++r) {
    slots[threadIdx.x] = data[base + threadIdx.x];
    __syncthreads();
    data[base + threadIdx.x] = slots[blockDim.x - 1 - threadIdx.x];
    __syncthreads();
  }
}

// Thread 0 leaves before the barrier the others wait at.
__global__ void divergent_barrier(int* data) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  data[threadIdx.x] = 1;
}

// Even and odd threads wait at two different barriers.
__global__ void split_barriers(int* data) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
    data[threadIdx.x] = 1;
  } else {
    __syncthreads();
    data[threadIdx.x] = 2;
  }
}

void check_indices() {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  std::vector<int> hits(3 * 2 * 2 * 4 * 3 * 2, 0);
  launch(count_threads, grid, block, nullptr, hits.data());
  expect(cudaGetLastError() == cudaSuccess, "a 3-D launch succeeds");
  bool once = true;
  for (int h : hits) once = once && h == 1;
  expect(once, "every thread of a 3-D grid of 3-D blocks runs once, at its own indices");
}

void check_barriers(int rounds) {
  const unsigned int blocks = 5, threads = 256;
  std::vector<int> data(blocks * threads);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<int>(i);
  launch(reverse_in_blocks, dim3(blocks), dim3(threads), nullptr, data.data(), rounds);
  expect(cudaGetLastError() == cudaSuccess, "a launch with barriers succeeds");
  bool reversed = true;
  for (unsigned int b = 0; b < blocks; ++b) {
    for (unsigned int t = 0; t < threads; ++t) {
      const unsigned int from = rounds % 2 ? threads - 1 - t : t;
      reversed = reversed && data[b * threads + t] == static_cast<int>(b * threads + from);
    }
  }
  expect(reversed, "__syncthreads() orders shared-memory writes before the reads after it");
}

void check_errors() {
  std::vector<int> data(64, 0);
  launch(divergent_barrier, dim3(2), dim3(64), nullptr, data.data());
  expect(cudaGetLastError() == cudaErrorEmulatedBarrierDivergence, "a thread leaving before a barrier is reported");
  expect(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears the error");
  launch(split_barriers, dim3(1), dim3(64), nullptr, data.data());
  expect(cudaGetLastError() == cudaErrorEmulatedBarrierDivergence, "threads at different barriers are reported");
  launch(count_threads, dim3(1), dim3(1025), nullptr, data.data());
  expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "a block of over 1024 threads is refused");
  launch(count_threads, dim3(0), dim3(1), nullptr, data.data());
  expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "an empty grid is refused");
}

}  // namespace

int main() {
  check_indices();
  check_barriers(1);
  check_barriers(4);
  check_errors();
  // Launching threads each run their own blocks, with their own shared memory.
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([] { check_barriers(3); });
  for (auto& t : threads) t.join();
  std::printf("%s\n", failures == 0 ? "emulation self-test passed" : "emulation self-test FAILED");
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
