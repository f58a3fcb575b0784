// One object per process for state shared by every call: the codec's worker pool, the kept output
// buffers.
#pragma once

#include <pthread.h>

#include <atomic>

namespace nnjpeg {

// The process's T, made on first use and never destroyed (arrays and threads may still use it
// during static teardown). A forked child makes its own on first use: the parent's may hold what
// belongs to threads the child does not have (a locked mutex, a pool's workers).
template <class T>
T& process_local() {
  static std::atomic<T*> current{nullptr};
  T* object = current.load(std::memory_order_acquire);
  if (object != nullptr) return *object;
  auto* fresh = new T();
  if (!current.compare_exchange_strong(object, fresh, std::memory_order_acq_rel)) {
    delete fresh;  // another thread installed one first
    return *object;
  }
  static const int registered = pthread_atfork(nullptr, nullptr, [] { current.store(nullptr); });
  (void)registered;
  return *fresh;
}

}  // namespace nnjpeg
