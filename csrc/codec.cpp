// Round-trip pipelines: load (edge-replicate to the block/MCU size), optional JFIF colour
// transform with libjpeg-style chroma down/upsampling, the 8x8 block kernel, store (crop back).
#include "codec.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "process_local.h"

namespace nnjpeg {
namespace {

// Cache-line aligned: where a plane's padded width is a multiple of 16 floats, every row of a band
// starts on a 64-byte boundary, and the AVX-512 kernel's 16-float loads and stores never straddle
// two lines.
template <class T>
struct CacheAligned {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kAlign); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const CacheAligned<U>&) const noexcept { return false; }
};

using Plane = std::vector<float, CacheAligned<float>>;

inline std::int64_t round_up(std::int64_t v, std::int64_t m) { return (v + m - 1) / m * m; }

// Worker threads shared by every call in the process, started on first use and kept: a call hands
// its helpers a job instead of starting threads (tens of microseconds each, as much as the work
// of a small batch). Calls from several threads at once queue their jobs; a worker takes the
// oldest one that still wants helpers. Threads are detached and the pool is never destroyed, so
// process exit never waits for them; a forked child starts a fresh pool (the parent's threads do
// not exist in it).
class WorkerPool {
 public:
  struct Job {
    void (*run)(void*);
    void* arg;
    int wanted;  // helpers still wanted; guarded by the pool's mutex
    std::atomic<int> active;  // helpers running it; changed under the pool's mutex, polled without
    std::exception_ptr error;  // the first exception a run threw; guarded by the pool's mutex
  };

  // Runs job.run(job.arg) on up to job.wanted workers besides the caller's own call, and returns
  // once every worker that took the job has finished it, rethrowing the first exception any run
  // threw (std::bad_alloc, say). Where no thread can be started, the caller does all the work.
  void run(Job& job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      try {
        while (static_cast<int>(threads_) < job.wanted) {
          std::thread(&WorkerPool::serve, this).detach();
          ++threads_;
        }
      } catch (const std::system_error&) {
      }
      queue_.push_back(&job);
      queued_.store(queue_.size(), std::memory_order_relaxed);
    }
    work_.notify_all();
    std::exception_ptr error;
    try {
      job.run(job.arg);
    } catch (...) {
      error = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    const auto queued = std::find(queue_.begin(), queue_.end(), &job);
    if (queued != queue_.end()) {
      queue_.erase(queued);  // no worker will take it now
      queued_.store(queue_.size(), std::memory_order_relaxed);
    }
    lock.unlock();
    spin_until([&] { return job.active.load(std::memory_order_acquire) == 0; }, kSpinDone);
    lock.lock();
    done_.wait(lock, [&] { return job.active.load(std::memory_order_acquire) == 0; });
    if (!error) error = job.error;
    if (error) std::rethrow_exception(error);
  }

 private:
  void serve() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      if (queue_.empty()) {
        lock.unlock();
        spin_until([&] { return queued_.load(std::memory_order_relaxed) != 0; }, kSpinIdle);
        lock.lock();
      }
      work_.wait(lock, [&] { return !queue_.empty(); });
      Job* job = queue_.front();
      if (--job->wanted == 0) {
        queue_.pop_front();
        queued_.store(queue_.size(), std::memory_order_relaxed);
      }
      job->active.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      std::exception_ptr error;
      try {
        job->run(job->arg);
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      if (error && !job->error) job->error = error;
      if (job->active.fetch_sub(1, std::memory_order_release) == 1) done_.notify_all();
    }
  }

  // Sleeping on a condition variable and being woken cost about as much as the work a small call
  // splits: on a 2-vCPU VM, 256 32x32 images took 289 us on two threads against 385 us on one.
  // So before sleeping, a worker that finished a job polls for the next one for kSpinIdle (calls
  // in a loop over batches come sooner), and a caller that finished its chunks polls for its
  // helpers for up to kSpinDone (they have one chunk left at most; see parallel_for). Two
  // threads, 32x32 images: 64 images 104 -> 66 us per call, 256 images 289 -> 215 us, 1024
  // images 917 -> 830 us.
  static constexpr std::chrono::microseconds kSpinIdle{100}, kSpinDone{1000};

  // Polls ready() until it holds or `limit` has passed; returns without looking at the clock when
  // it holds at once.
  template <class Ready>
  static void spin_until(Ready ready, std::chrono::microseconds limit) {
    if (ready()) return;
    const auto until = std::chrono::steady_clock::now() + limit;
    do {
      for (int i = 0; i < 16; ++i) pause();
      if (ready()) return;
    } while (std::chrono::steady_clock::now() < until);
  }

  // A spin-wait hint: on x86 `pause` yields the core's pipeline to its hyperthread sibling.
  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  std::mutex mutex_;
  std::condition_variable work_, done_;
  std::deque<Job*> queue_;
  std::atomic<std::size_t> queued_{0};  // queue_.size(), read without the mutex by spinning workers
  std::size_t threads_ = 0;
};

// Runs fn(lo, hi) over [0, count) on up to `threads` workers (the caller's thread is one). Workers
// take chunks from a shared counter rather than a fixed share each: on a machine shared with other
// processes a fixed split waits for whichever worker was descheduled most, and a pool worker busy
// with another call's job simply takes none. Units are independent, so which worker runs a chunk
// never changes a result.
template <class F>
void parallel_for(std::int64_t count, int threads, F&& fn) {
  const std::int64_t workers = std::max<std::int64_t>(1, std::min<std::int64_t>(threads, count));
  if (workers == 1) {
    fn(std::int64_t{0}, count);
    return;
  }
  struct Shared {
    F& fn;
    std::int64_t count, chunk;
    std::atomic<std::int64_t> next{0};
  } shared{fn, count, std::max<std::int64_t>(1, count / (8 * workers))};
  auto work = [](void* arg) {
    auto& sh = *static_cast<Shared*>(arg);
    for (std::int64_t lo; (lo = sh.next.fetch_add(sh.chunk)) < sh.count;) sh.fn(lo, std::min(sh.count, lo + sh.chunk));
  };
  WorkerPool::Job job{work, &shared, static_cast<int>(workers - 1), {0}, nullptr};
  process_local<WorkerPool>().run(job);
}

// Handing a share to a pool worker (a wake-up, then cache misses on its first chunk) costs up to
// tens of microseconds on a busy machine, about what the pipeline spends on 2^16 samples: smaller
// shares are not worth a worker. Work units are independent, so the count never changes
// a result.
int useful_threads(int threads, std::int64_t samples) {
  constexpr std::int64_t kMinSamplesPerThread = std::int64_t{1} << 16;
  return static_cast<int>(std::clamp<std::int64_t>(samples / kMinSamplesPerThread, 1, threads));
}

// Pixels of a row adjacent, channels of a pixel adjacent: one RowIo call converts a whole row.
// (NumPy may give a length-1 axis any stride, so those strides are not looked at.)
bool rows_packed(const ImageView& in) {
  const std::int64_t size = in.is_float ? 4 : 1;
  return (in.c == 1 || in.sc == size) && (in.w == 1 || in.sw == size * in.c);
}

// Reads rows [y0, y0 + rows) of image `img`, every channel, into dst[ch] (row stride wp) scaled to
// [0, 255], replicating the last row and column into the padding as libjpeg does when it expands
// edges to whole blocks. T is float, or uint8_t for uint8 images (samples as they are). Returns
// false if a float32 sample lay outside [0, 1] (RowIo::load_f32).
template <class T>
bool load_rows(const ImageView& in, const RowIo& io, std::int64_t img, std::int64_t y0,
               std::int64_t rows, T* const* dst, std::int64_t wp) {
  bool ok = true;
  const bool packed = rows_packed(in);
  const int channels = static_cast<int>(in.c);
  for (std::int64_t r = 0; r < rows; ++r) {
    T* d[3] = {};
    for (int ch = 0; ch < channels; ++ch) d[ch] = dst[ch] + r * wp;
    const std::int64_t y = y0 + r;
    if (y >= in.h && r > 0) {
      for (int ch = 0; ch < channels; ++ch) std::copy(d[ch] - wp, d[ch], d[ch]);
      continue;
    }
    const std::uint8_t* row = in.data + img * in.sn + std::min(y, in.h - 1) * in.sh;
    if constexpr (std::is_same_v<T, std::uint8_t>) {
      if (packed) {
        io.split_u8(row, channels, in.w, d);
      } else {
        for (int ch = 0; ch < channels; ++ch) {
          for (std::int64_t x = 0; x < in.w; ++x) d[ch][x] = row[ch * in.sc + x * in.sw];
        }
      }
    } else if (packed && in.is_float) {
      ok &= io.load_f32(reinterpret_cast<const float*>(row), channels, in.w, d);
    } else if (packed) {
      io.load_u8(row, channels, in.w, d);
    } else {
      for (int ch = 0; ch < channels; ++ch) {
        const std::uint8_t* p = row + ch * in.sc;
        if (in.is_float) {
          for (std::int64_t x = 0; x < in.w; ++x) ok &= scale_sample(*reinterpret_cast<const float*>(p + x * in.sw), d[ch][x]);
        } else {
          for (std::int64_t x = 0; x < in.w; ++x) d[ch][x] = static_cast<float>(p[x * in.sw]);
        }
      }
    }
    for (int ch = 0; ch < channels; ++ch) std::fill(d[ch] + in.w, d[ch] + wp, d[ch][in.w - 1]);
  }
  return ok;
}

// Writes rows [y0, y0 + rows) (those inside the image) of whole-number samples in [0, 255] to the
// contiguous (N, H, W, C) output; float32 output is sample / 255, so it lies on the 1/255 grid.
template <class T>
void store_rows(const T* const* src, std::int64_t wp, const ImageView& in, const RowIo& io,
                std::int64_t img, std::int64_t y0, std::int64_t rows, void* out) {
  const int channels = static_cast<int>(in.c);
  const std::int64_t row_len = in.w * in.c;
  for (std::int64_t r = 0; r < rows && y0 + r < in.h; ++r) {
    const T* s[3] = {};
    for (int ch = 0; ch < channels; ++ch) s[ch] = src[ch] + r * wp;
    const std::int64_t offset = (img * in.h + y0 + r) * row_len;
    if constexpr (std::is_same_v<T, std::uint8_t>) {
      io.merge_u8(s, channels, in.w, static_cast<std::uint8_t*>(out) + offset);
    } else if (in.is_float) {
      io.store_f32(s, channels, in.w, static_cast<float*>(out) + offset);
    } else {
      io.store_u8(s, channels, in.w, static_cast<std::uint8_t*>(out) + offset);
    }
  }
}

struct PlaneJob {
  float* data;
  std::int64_t hp, wp;
  const QuantTable* qt;
};

// Runs the block kernel over every 8-row band of the given planes, spreading bands over threads.
void run_kernel(const std::vector<PlaneJob>& jobs, int threads, const Kernel& kernel) {
  std::vector<std::pair<std::size_t, std::int64_t>> bands;
  std::int64_t samples = 0;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    for (std::int64_t b = 0; b < jobs[j].hp / 8; ++b) bands.emplace_back(j, b);
    samples += jobs[j].hp * jobs[j].wp;
  }
  parallel_for(static_cast<std::int64_t>(bands.size()), useful_threads(threads, samples),
               [&](std::int64_t lo, std::int64_t hi) {
                 for (std::int64_t i = lo; i < hi; ++i) {
                   const PlaneJob& job = jobs[bands[i].first];
                   kernel.fn(job.data + bands[i].second * 8 * job.wp, job.wp,
                             static_cast<int>(job.wp / 8), *job.qt);
                 }
               });
}

// Channels coded independently (kRgb, and grey images): each 8-row band of each image is one
// work unit, loaded into a small per-thread buffer (all channels, cache-resident), transformed and
// stored, so images and bands spread over threads alike, however few images there are. uint8
// images stay bytes in the buffer (the kernel's BandKernelU8), float32 ones become floats.
template <class T>
bool roundtrip_planar(const ImageView& in, void* out, const std::vector<QuantTable>& qts,
                      int threads, const Kernel& kernel) {
  const std::int64_t hp = round_up(in.h, 8), wp = round_up(in.w, 8);
  const std::int64_t bands = hp / 8;
  const int channels = static_cast<int>(in.c);
  std::atomic<bool> in_range{true};
  // Whole bands of packed 3-channel uint8 rows, a whole number of blocks wide, go through the
  // kernel's interleaved variant where it has one (Kernel::fn_rgb8): no split into planes, no merge.
  const bool interleaved = std::is_same_v<T, std::uint8_t> && kernel.fn_rgb8 != nullptr && channels == 3 &&
                           in.w % 8 == 0 && rows_packed(in);
  parallel_for(in.n * bands, useful_threads(threads, in.n * hp * wp * in.c),
               [&](std::int64_t lo, std::int64_t hi) {
                 std::vector<T, CacheAligned<T>> buf(static_cast<std::size_t>(channels * 8 * wp));
                 T* band[3] = {};
                 for (int ch = 0; ch < channels; ++ch) band[ch] = buf.data() + ch * 8 * wp;
                 for (std::int64_t u = lo; u < hi; ++u) {
                   const std::int64_t img = u / bands, y0 = u % bands * 8;
                   if (interleaved && y0 + 8 <= in.h) {
                     kernel.fn_rgb8(in.data + img * in.sn + y0 * in.sh, in.sh,
                                    static_cast<std::uint8_t*>(out) + (img * in.h + y0) * in.w * 3, in.w * 3,
                                    static_cast<int>(wp / 8), qts.data());
                     continue;
                   }
                   if (!load_rows(in, *kernel.io, img, y0, 8, band, wp)) in_range.store(false, std::memory_order_relaxed);
                   for (int ch = 0; ch < channels; ++ch) {
                     if constexpr (std::is_same_v<T, std::uint8_t>) {
                       kernel.fn_u8(band[ch], wp, static_cast<int>(wp / 8), qts[ch]);
                     } else {
                       kernel.fn(band[ch], wp, static_cast<int>(wp / 8), qts[ch]);
                     }
                   }
                   store_rows<T>(band, wp, in, *kernel.io, img, y0, 8, out);
                 }
               });
  return in_range.load();
}

// JFIF full-range BT.601 (ITU-T T.871), rounded to whole samples as libjpeg's rgb_ycc_convert.
// The weights are written as integers over 10^3 / 10^6 and evaluated in double: for whole-number
// samples the numerators are exact and the division correctly rounded, so a sum that is exactly
// k + 1/2 stays a tie and rounds away from zero every time. Used for float32 images, whose
// samples (v * 255) need not be whole; uint8 images take rgb_to_ycc_whole.
void rgb_to_ycc(Plane& r_y, Plane& g_cb, Plane& b_cr) {
  // round_half_away for these sums, which lie in [0, 256): truncation through int32 (a packed
  // conversion even in baseline x86-64, where std::trunc is not) and a compare, so the loop
  // vectorizes; the divisions stay IEEE divisions.
  auto round_clamp = [](double x) {
    const double t = static_cast<double>(static_cast<std::int32_t>(x));
    return static_cast<float>(std::min(t + static_cast<double>(x - t >= 0.5), 255.0));
  };
  for (std::size_t i = 0; i < r_y.size(); ++i) {
    const double r = r_y[i], g = g_cb[i], b = b_cr[i];
    r_y[i] = round_clamp((299.0 * r + 587.0 * g + 114.0 * b) / 1e3);
    g_cb[i] = round_clamp((-168736.0 * r - 331264.0 * g + 500000.0 * b) / 1e6 + 128.0);
    b_cr[i] = round_clamp((500000.0 * r - 418688.0 * g - 81312.0 * b) / 1e6 + 128.0);
  }
}

// round(n / d) for whole n >= 0 and d > 0, ties up; unsigned, which vectorizes.
inline std::uint32_t div_round(std::uint32_t n, std::uint32_t d) { return (n + d / 2) / d; }

// rgb_to_ycc for whole-number samples (uint8 images), in 32-bit integers: the numerators are the
// same integers, and rounding them over 10^3 / 10^6 exactly equals the double evaluation, whose
// division is exact at every tie (a half-integer) and elsewhere errs far less than the 10^-6 that
// separates a value from a tie. The sums are never negative (Cb and Cr carry their +128), so ties
// up are ties away from zero.
void rgb_to_ycc_whole(Plane& r_y, Plane& g_cb, Plane& b_cr) {
  for (std::size_t i = 0; i < r_y.size(); ++i) {
    const auto r = static_cast<std::int32_t>(r_y[i]), g = static_cast<std::int32_t>(g_cb[i]),
               b = static_cast<std::int32_t>(b_cr[i]);
    const auto y = div_round(static_cast<std::uint32_t>(299 * r + 587 * g + 114 * b), 1000);
    const auto cb = div_round(static_cast<std::uint32_t>(-168736 * r - 331264 * g + 500000 * b + 128000000), 1000000);
    const auto cr = div_round(static_cast<std::uint32_t>(500000 * r - 418688 * g - 81312 * b + 128000000), 1000000);
    r_y[i] = static_cast<float>(y);
    g_cb[i] = static_cast<float>(std::min(cb, 255u));
    b_cr[i] = static_cast<float>(std::min(cr, 255u));
  }
}

// Box-filter downsampling with libjpeg's alternating rounding bias (jcsample.c h2v1/h2v2), by 2
// horizontally and by vs = 1 or 2 vertically. The samples are whole numbers (rgb_to_ycc rounds),
// so the sums are exact and the division by 2 or 4, rounded down, is a shift.
Plane downsample(const Plane& src, std::int64_t hp, std::int64_t wp, int vs) {
  const std::int64_t ch = hp / vs, cw = wp / 2;
  Plane dst(static_cast<std::size_t>(ch * cw));
  for (std::int64_t y = 0; y < ch; ++y) {
    const float* r0 = src.data() + y * vs * wp;
    float* d = dst.data() + y * cw;
    if (vs == 1) {
      for (std::int64_t x = 0; x < cw; ++x) {
        const float sum = r0[2 * x] + r0[2 * x + 1];
        d[x] = static_cast<float>(static_cast<std::int32_t>(sum + static_cast<float>(x & 1)) >> 1);
      }
    } else {
      const float* r1 = r0 + wp;
      for (std::int64_t x = 0; x < cw; ++x) {
        const float sum = r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1];
        d[x] = static_cast<float>(static_cast<std::int32_t>(sum + static_cast<float>(1 + (x & 1))) >> 2);
      }
    }
  }
  return dst;
}

// libjpeg's default "fancy" upsampling (jdsample.c) by 2 horizontally and vs vertically: a
// triangle filter, 3/4 of the nearer and 1/4 of the farther input sample in each upsampled
// direction, with its integer rounding. Neighbours past the valid (cvh, cvw) region repeat the
// edge, which reproduces libjpeg's edge special cases. Each output row is built from one row of
// column sums (3 x nearer row + farther row when vs = 2) padded with its edge values, so the loop
// over output pairs has no bounds checks.
void upsample(const Plane& src, std::int64_t cw, std::int64_t cvh, std::int64_t cvw, int vs, Plane& dst,
              std::int64_t h, std::int64_t w, std::int64_t wp) {
  std::vector<std::int32_t> sums(static_cast<std::size_t>(cvw + 2));
  std::int32_t* s = sums.data() + 1;  // s[-1] and s[cvw] repeat the edges
  const std::int64_t pairs = w / 2;
  // (3 near + far + 1 or 2) >> 2 with one row; with two, (3 near + far + 8 or 7) >> 4.
  const int shift = vs == 1 ? 2 : 4;
  const std::int32_t even = vs == 1 ? 1 : 8, odd = vs == 1 ? 2 : 7;
  for (std::int64_t y = 0; y < h; ++y) {
    const std::int64_t iy = y / vs;
    const float* nearer = src.data() + iy * cw;
    if (vs == 1) {
      for (std::int64_t x = 0; x < cvw; ++x) s[x] = static_cast<std::int32_t>(nearer[x]);
    } else {
      const std::int64_t ny = std::clamp<std::int64_t>(y % 2 == 0 ? iy - 1 : iy + 1, 0, cvh - 1);
      const float* farther = src.data() + ny * cw;
      for (std::int64_t x = 0; x < cvw; ++x) {
        s[x] = 3 * static_cast<std::int32_t>(nearer[x]) + static_cast<std::int32_t>(farther[x]);
      }
    }
    s[-1] = s[0];
    s[cvw] = s[cvw - 1];
    float* d = dst.data() + y * wp;
    for (std::int64_t i = 0; i < pairs; ++i) {
      d[2 * i] = static_cast<float>((3 * s[i] + s[i - 1] + even) >> shift);
      d[2 * i + 1] = static_cast<float>((3 * s[i] + s[i + 1] + odd) >> shift);
    }
    if (w % 2 != 0) d[w - 1] = static_cast<float>((3 * s[pairs] + s[pairs - 1] + even) >> shift);
  }
}

// YCbCr back to RGB (T.871), as the other paths evaluate it in double (y + 1402 cr / 10^3, ...,
// rounded half away from zero, clamped), in 32-bit integers: the planes hold whole numbers here
// (the block round trip's output, upsampled by integer filters), so rgb_to_ycc_whole's argument
// holds. A numerator offset by a multiple of its divisor is never negative; rounding it ties up
// differs from ties away from zero only below zero, which the clamp makes 0 either way.
void ycc_to_rgb(Plane& y_r, Plane& cb_g, Plane& cr_b) {
  // Multiples of the divisors that keep the numerators >= 0 (at least -179456, -134400544, -226816).
  constexpr std::int32_t kR = 180, kG = 135, kB = 227;
  auto clamped = [](std::uint32_t v, std::int32_t offset) {
    return static_cast<float>(std::clamp(static_cast<std::int32_t>(v) - offset, 0, 255));
  };
  for (std::size_t i = 0; i < y_r.size(); ++i) {
    const auto y = static_cast<std::int32_t>(y_r[i]), cb = static_cast<std::int32_t>(cb_g[i]) - 128,
               cr = static_cast<std::int32_t>(cr_b[i]) - 128;
    const std::uint32_t r = div_round(static_cast<std::uint32_t>(1000 * y + 1402 * cr + kR * 1000), 1000);
    const std::uint32_t g =
        div_round(static_cast<std::uint32_t>(1000000 * y - 344136 * cb - 714136 * cr + kG * 1000000), 1000000);
    const std::uint32_t b = div_round(static_cast<std::uint32_t>(1000 * y + 1772 * cb + kB * 1000), 1000);
    y_r[i] = clamped(r, kR);
    cb_g[i] = clamped(g, kG);
    cr_b[i] = clamped(b, kB);
  }
}

// Returns false if a float32 sample lay outside [0, 1] (RowIo::load_f32).
bool roundtrip_ycc_image(const ImageView& in, std::int64_t img, void* out,
                         const std::vector<QuantTable>& qts, Mode mode, int threads,
                         const Kernel& kernel, std::vector<Plane>& planes) {
  const int hs = mode == Mode::kYcc444 ? 1 : 2;
  const int vs = mode == Mode::kYcc420 ? 2 : 1;
  const std::int64_t hp = round_up(in.h, 8 * vs), wp = round_up(in.w, 8 * hs);
  const std::int64_t ch = hp / vs, cw = wp / hs;
  planes.resize(3);
  float* rgb[3];
  for (std::int64_t c = 0; c < 3; ++c) {
    planes[c].resize(static_cast<std::size_t>(hp * wp));
    rgb[c] = planes[c].data();
  }
  const bool in_range = load_rows(in, *kernel.io, img, 0, hp, rgb, wp);
  if (in.is_float) {
    rgb_to_ycc(planes[0], planes[1], planes[2]);
  } else {
    rgb_to_ycc_whole(planes[0], planes[1], planes[2]);
  }
  if (hs == 1 && vs == 1) {
    run_kernel({{planes[0].data(), hp, wp, &qts[0]},
                {planes[1].data(), hp, wp, &qts[1]},
                {planes[2].data(), hp, wp, &qts[2]}},
               threads, kernel);
  } else {
    Plane cb = downsample(planes[1], hp, wp, vs);
    Plane cr = downsample(planes[2], hp, wp, vs);
    run_kernel({{planes[0].data(), hp, wp, &qts[0]},
                {cb.data(), ch, cw, &qts[1]},
                {cr.data(), ch, cw, &qts[2]}},
               threads, kernel);
    const std::int64_t cvh = (in.h + vs - 1) / vs, cvw = (in.w + hs - 1) / hs;
    upsample(cb, cw, cvh, cvw, vs, planes[1], in.h, in.w, wp);
    upsample(cr, cw, cvh, cvw, vs, planes[2], in.h, in.w, wp);
  }
  ycc_to_rgb(planes[0], planes[1], planes[2]);
  store_rows(rgb, wp, in, *kernel.io, img, 0, in.h, out);
  return in_range;
}

}  // namespace

std::int64_t count_out_of_range(const ImageView& in) {
  if (!in.is_float) return 0;
  // Both comparisons on every sample (no short circuit: the compiler vectorizes it); each is false
  // for NaN.
  auto count = [](const float* p, std::int64_t n) {
    std::int64_t total = 0;
    for (std::int64_t lo = 0; lo < n; lo += std::int64_t{1} << 30) {
      std::int32_t bad = 0;  // a 32-bit count vectorizes better; chunks keep it from overflowing
      const std::int64_t hi = std::min(n, lo + (std::int64_t{1} << 30));
      for (std::int64_t i = lo; i < hi; ++i) bad += 1 - ((p[i] >= 0.0f) & (p[i] <= 1.0f));
      total += bad;
    }
    return total;
  };
  const bool packed = rows_packed(in);
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < in.n; ++i) {
    for (std::int64_t y = 0; y < in.h; ++y) {
      const std::uint8_t* row = in.data + i * in.sn + y * in.sh;
      if (packed) {
        bad += count(reinterpret_cast<const float*>(row), in.w * in.c);
        continue;
      }
      for (std::int64_t x = 0; x < in.w; ++x) {
        for (std::int64_t c = 0; c < in.c; ++c) {
          bad += count(reinterpret_cast<const float*>(row + x * in.sw + c * in.sc), 1);
        }
      }
    }
  }
  return bad;
}

bool roundtrip(const ImageView& in, void* out, const float* tables, Mode mode, int threads,
               const Kernel& kernel) {
  if (in.n == 0) return true;
  std::vector<QuantTable> qts;
  for (std::int64_t t = 0; t < in.c; ++t) qts.push_back(make_quant_table(tables + 64 * t));
  if (mode == Mode::kRgb || in.c == 1) {
    return in.is_float ? roundtrip_planar<float>(in, out, qts, threads, kernel)
                       : roundtrip_planar<std::uint8_t>(in, out, qts, threads, kernel);
  }
  std::atomic<bool> in_range{true};
  const int useful = useful_threads(threads, in.n * in.h * in.w * in.c);
  if (in.n >= useful) {
    // Whole images per worker: no synchronisation inside an image, planes reused across images.
    parallel_for(in.n, useful, [&](std::int64_t lo, std::int64_t hi) {
      std::vector<Plane> planes;
      for (std::int64_t i = lo; i < hi; ++i) {
        if (!roundtrip_ycc_image(in, i, out, qts, mode, 1, kernel, planes)) in_range.store(false, std::memory_order_relaxed);
      }
    });
  } else {
    std::vector<Plane> planes;
    for (std::int64_t i = 0; i < in.n; ++i) {
      if (!roundtrip_ycc_image(in, i, out, qts, mode, useful, kernel, planes)) in_range.store(false);
    }
  }
  return in_range.load();
}

}  // namespace nnjpeg
