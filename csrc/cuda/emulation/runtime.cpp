// The emulated CUDA runtime and execution model of cuda_runtime.h beside it: device memory from
// the host heap, streams that run at the call, and thread blocks whose threads are fibers,
// switched in x86-64 assembly and scheduled a barrier phase at a time. A fiber's round trip took
// about 40 ns here, a small kernel's body included; one of ucontext's swapcontext, which also
// makes a system call per switch, took 408 ns on its own.
#include "cuda_runtime.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define NNJPEG_FIBER_ASAN 1
#endif

// void nnjpeg_fiber_switch(void** save_sp, void* load_sp): saves the callee-saved registers, the
// x87 control word and MXCSR on the current stack, stores its pointer in *save_sp, and resumes
// the context whose stack pointer is load_sp (System V x86-64 ABI).
asm(R"(
  .text
  .p2align 4
  .globl nnjpeg_fiber_switch
  .hidden nnjpeg_fiber_switch
  .type nnjpeg_fiber_switch, @function
nnjpeg_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  fnstcw (%rsp)
  stmxcsr 8(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  fldcw (%rsp)
  ldmxcsr 8(%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size nnjpeg_fiber_switch, .-nnjpeg_fiber_switch
)");
extern "C" void nnjpeg_fiber_switch(void** save_sp, void* load_sp);

namespace {

// CUDA's limit on the threads of a block.
constexpr unsigned long kMaxBlockThreads = 1024;
// A fiber runs one kernel thread: a few device-function frames, larger with ASan's redzones.
constexpr std::size_t kStackBytes = std::size_t{64} << 10;

enum class State { kRunnable, kAtBarrier, kDone };

struct Fiber {
  std::unique_ptr<std::uint8_t[]> stack;
  void* sp = nullptr;
  State state = State::kRunnable;
  const void* barrier = nullptr;  // the __syncthreads() call it waits at: its return address
  dim3 index;
};

// One launching thread's blocks: its fibers (reused from block to block) and the scheduler's
// context they switch back to.
struct Scheduler {
  std::vector<Fiber> fibers;
  void* sp = nullptr;
  Fiber* current = nullptr;
  const std::function<void()>* thread = nullptr;
#ifdef NNJPEG_FIBER_ASAN
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
#endif
};

thread_local Scheduler scheduler;
thread_local cudaError_t last_error = cudaSuccess;
thread_local dim3 thread_idx, block_idx, block_dims, grid_dims;

// Back to the scheduler from the running fiber; `done`: the fiber is never resumed.
void yield_to_scheduler(bool done) {
  Fiber& f = *scheduler.current;
#ifdef NNJPEG_FIBER_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(done ? nullptr : &fake_stack, scheduler.stack_bottom, scheduler.stack_size);
#endif
  nnjpeg_fiber_switch(&f.sp, scheduler.sp);
#ifdef NNJPEG_FIBER_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, &scheduler.stack_bottom, &scheduler.stack_size);
#else
  (void)done;
#endif
}

[[noreturn]] void fiber_main() {
#ifdef NNJPEG_FIBER_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &scheduler.stack_bottom, &scheduler.stack_size);
#endif
  (*scheduler.thread)();
  scheduler.current->state = State::kDone;
  yield_to_scheduler(true);
  std::abort();  // a finished fiber is never resumed
}

// A fresh context on f's stack that enters fiber_main, with this thread's x87 and SSE control
// state: the frame nnjpeg_fiber_switch pops, below fiber_main's address as its return address
// and a zero return address for fiber_main itself. fiber_main starts with the stack pointer at
// 8 mod 16, as after a call.
void reset(Fiber& f) {
  auto top = reinterpret_cast<std::uintptr_t>(f.stack.get() + kStackBytes) & ~std::uintptr_t{15};
  auto* frame = reinterpret_cast<std::uint64_t*>(top) - 10;
  std::memset(frame, 0, 10 * sizeof(std::uint64_t));
  std::uint16_t fpu_control;
  std::uint32_t mxcsr;
  asm volatile("fnstcw %0" : "=m"(fpu_control));
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  std::memcpy(&frame[0], &fpu_control, sizeof fpu_control);
  std::memcpy(&frame[1], &mxcsr, sizeof mxcsr);
  // frame[2..7]: r15, r14, r13, r12, rbx, rbp
  frame[8] = reinterpret_cast<std::uint64_t>(&fiber_main);
  frame[9] = 0;
  f.sp = frame;
  f.state = State::kRunnable;
}

void resume(Fiber& f) {
  scheduler.current = &f;
  thread_idx = f.index;
#ifdef NNJPEG_FIBER_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, f.stack.get(), kStackBytes);
#endif
  nnjpeg_fiber_switch(&scheduler.sp, f.sp);
#ifdef NNJPEG_FIBER_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

// Runs one block: every fiber up to its next barrier, phase after phase, until all have returned.
// A phase in which some threads return while others wait, or threads wait at different
// __syncthreads() calls, is a divergent barrier.
cudaError_t run_block() {
  for (;;) {
    std::size_t done = 0, waiting = 0;
    const void* barrier = nullptr;
    bool same_barrier = true;
    for (Fiber& f : scheduler.fibers) {
      if (f.state == State::kDone) continue;
      f.state = State::kRunnable;
      resume(f);
      if (f.state == State::kDone) {
        ++done;
        continue;
      }
      same_barrier = same_barrier && (waiting == 0 || f.barrier == barrier);
      barrier = f.barrier;
      ++waiting;
    }
    if (waiting == 0) return cudaSuccess;
    if (done != 0 || !same_barrier) return cudaErrorEmulatedBarrierDivergence;
  }
}

}  // namespace

// Not inlined into the kernels (another file), so the return address tells the call sites apart.
void __syncthreads() {
  scheduler.current->state = State::kAtBarrier;
  scheduler.current->barrier = __builtin_return_address(0);
  yield_to_scheduler(false);
}

namespace nnjpeg::cuda::emulation {

const dim3& thread_index() { return thread_idx; }
const dim3& block_index() { return block_idx; }
const dim3& block_dim() { return block_dims; }
const dim3& grid_dim() { return grid_dims; }

void run_grid(dim3 grid, dim3 block, const std::function<void()>& thread) {
  const unsigned long threads = static_cast<unsigned long>(block.x) * block.y * block.z;
  if (scheduler.thread != nullptr || threads == 0 || threads > kMaxBlockThreads || grid.x == 0 ||
      grid.y == 0 || grid.z == 0) {
    last_error = cudaErrorInvalidConfiguration;  // also a launch from inside a kernel
    return;
  }
  std::vector<Fiber>& fibers = scheduler.fibers;
  fibers.resize(threads);
  std::size_t i = 0;
  for (unsigned int z = 0; z < block.z; ++z) {
    for (unsigned int y = 0; y < block.y; ++y) {
      for (unsigned int x = 0; x < block.x; ++x, ++i) {
        if (!fibers[i].stack) fibers[i].stack.reset(new std::uint8_t[kStackBytes]);
        fibers[i].index = dim3(x, y, z);
      }
    }
  }
  grid_dims = grid;
  block_dims = block;
  scheduler.thread = &thread;
  cudaError_t status = cudaSuccess;
  for (unsigned int z = 0; z < grid.z && status == cudaSuccess; ++z) {
    for (unsigned int y = 0; y < grid.y && status == cudaSuccess; ++y) {
      for (unsigned int x = 0; x < grid.x && status == cudaSuccess; ++x) {
        block_idx = dim3(x, y, z);
        for (Fiber& f : fibers) reset(f);
        status = run_block();
      }
    }
  }
  scheduler.thread = nullptr;
  scheduler.current = nullptr;
  if (status != cudaSuccess) last_error = status;
}

}  // namespace nnjpeg::cuda::emulation

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

cudaError_t cudaDeviceSynchronize() { return cudaGetLastError(); }

cudaError_t cudaGetLastError() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorEmulatedBarrierDivergence: return "cudaErrorEmulatedBarrierDivergence";
  }
  return "unknown cudaError_t";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorEmulatedBarrierDivergence:
      return "the threads of a block did not all reach the same __syncthreads() (emulation)";
  }
  return "unknown error";
}

cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  *ptr = std::malloc(bytes == 0 ? 1 : bytes);
  return *ptr == nullptr ? cudaErrorMemoryAllocation : cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost) return cudaErrorInvalidValue;
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t) {
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

// The default stream (null) stands for every stream.
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = nullptr;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

// Errors of the kernels launched before, as a device reports them at the next synchronization.
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaGetLastError(); }
