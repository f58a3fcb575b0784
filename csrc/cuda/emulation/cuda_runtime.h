// A host emulation of the part of CUDA that csrc/cuda/roundtrip.cu uses, found in place of the
// toolkit's cuda_runtime.h in a build with -DNNJPEG_CUDA_EMULATION=ON. Its kernels then run on
// the CPU: every thread block on the launching thread, a block at a time, each of its threads a
// fiber that runs until it reaches __syncthreads() or returns; device memory is host memory. The
// same source is checked without a GPU, against the CPU path and under AddressSanitizer, with
// host floating point in place of the device's (the same IEEE operations, as the kernels avoid
// fused multiply-adds). What it cannot show is how the device compiles and schedules the code:
// races between threads outside the barriers, the device's math library, its registers and shared
// memory per block.
#pragma once

#include <cmath>
#include <cstddef>
#include <functional>
#include <tuple>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// A block's threads all run on one host thread, so per-thread storage is per-block storage.
#define __shared__ static thread_local

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  // Not CUDA's: what the emulation reports when the threads of a block do not all reach the same
  // __syncthreads() (undefined behaviour on a device).
  cudaErrorEmulatedBarrierDivergence = 10000,
};
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
constexpr unsigned int cudaStreamNonBlocking = 1;
using cudaStream_t = struct EmulatedStream*;

cudaError_t cudaGetDeviceCount(int* count);
// One device, 0.
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
// Errors of the kernels launched before, as cudaStreamSynchronize.
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void** ptr, std::size_t bytes);
cudaError_t cudaFree(void* ptr);
// Synchronous: the emulated stream runs everything at the call.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);

namespace nnjpeg::cuda::emulation {
// The built-in variables of the running fiber. Functions, not extern thread_local objects: GCC 12
// with UBSan miscompiles the null check of such an object's TLS wrapper when the defining file has
// no initializer for it, and reports a null pointer.
const dim3& thread_index();
const dim3& block_index();
const dim3& block_dim();
const dim3& grid_dim();
}  // namespace nnjpeg::cuda::emulation
#define threadIdx (::nnjpeg::cuda::emulation::thread_index())
#define blockIdx (::nnjpeg::cuda::emulation::block_index())
#define blockDim (::nnjpeg::cuda::emulation::block_dim())
#define gridDim (::nnjpeg::cuda::emulation::grid_dim())
void __syncthreads();

// A block's threads take turns on one host thread, so an atomic is a plain read-modify-write.
inline unsigned int atomicOr(unsigned int* address, unsigned int value) {
  const unsigned int old = *address;
  *address = old | value;
  return old;
}

// The device's overloads of the standard maths functions and of min/max.
using std::copysign;
using std::fabs;
using std::trunc;
template <class T>
constexpr T min(T a, T b) {
  return b < a ? b : a;
}
template <class T>
constexpr T max(T a, T b) {
  return a < b ? b : a;
}

namespace nnjpeg::cuda::emulation {

// Runs `thread` once for every thread of every block of the grid; a bad configuration or a
// divergent barrier is reported by the next cudaGetLastError, as after a device launch.
void run_grid(dim3 grid, dim3 block, const std::function<void()>& thread);

// kernel<<<grid, block, 0, stream>>>(args...).
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t, Args... args) {
  // Converted once, as a launch copies the parameters for the device; every thread gets a copy.
  const std::tuple<Params...> params(args...);
  run_grid(grid, block, [&] { std::apply(kernel, params); });
}

}  // namespace nnjpeg::cuda::emulation
