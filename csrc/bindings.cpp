// nnjpeg._codec: thin bindings. All argument checking happens in nnjpeg/codec.py; here we only
// read buffer pointers and strides, allocate the output and run the pipeline without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "codec.h"
#include "kernels.h"
#include "process_local.h"

#ifdef NNJPEG_HAVE_CUDA
#include "cuda/roundtrip.h"
#endif

namespace py = pybind11;

namespace {

const nnjpeg::Kernel& kernel_by_name(const std::string& name) {
  if (name.empty()) return nnjpeg::active_kernel();
  static const std::vector<nnjpeg::Kernel> runnable = nnjpeg::runnable_kernels();
  for (const auto& k : runnable) {
    if (name == k.name) return k;
  }
  throw std::invalid_argument("kernel '" + name + "' is not runnable on this build/CPU");
}

nnjpeg::ImageView view_of(const py::array& images) {
  nnjpeg::ImageView v{};
  v.data = static_cast<const std::uint8_t*>(images.data());
  v.is_float = images.dtype().kind() == 'f';
  v.n = images.shape(0);
  v.h = images.shape(1);
  v.w = images.shape(2);
  v.c = images.shape(3);
  v.sn = images.strides(0);
  v.sh = images.strides(1);
  v.sw = images.strides(2);
  v.sc = images.strides(3);
  return v;
}

// Outputs of kMinBytes and more come from buffers kept for reuse. glibc hands allocations that
// large straight to the system (they are above its largest mmap threshold) and gives them back when
// they are freed, so every call got fresh pages, which the system zeroes as the codec first writes
// them: 64 float32 224x224x3 images (38.5 MB of output), two threads, took 9.8 ms against 4.5 ms
// into a reused `out`. A buffer goes back here when the last array viewing it is freed; at most
// kKeep of them, kKeepBytes in all, are kept (the oldest is released first), and a call takes one
// of exactly its size. Their memory is the last output's, never read: the codec writes every sample.
// One per process (process_local): a forked child starts with none kept.
class OutputBuffers {
 public:
  static constexpr std::size_t kMinBytes = std::size_t{32} << 20;
  static constexpr std::size_t kKeep = 2;
  static constexpr std::size_t kKeepBytes = std::size_t{1} << 30;

  // Buffers come in whole huge pages, aligned to them, so that the system can back them with huge
  // pages.
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;

  // A buffer of `bytes`, a multiple of kHugePage.
  void* take(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = kept_.begin(); it != kept_.end(); ++it) {
        if (it->bytes == bytes) {
          void* p = it->data;
          kept_bytes_ -= bytes;
          kept_.erase(it);
          return p;
        }
      }
    }
    void* p = std::aligned_alloc(kHugePage, bytes);
    if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);  // advice only: without huge pages the buffer works the same
#endif
    return p;
  }

  void give(void* data, std::size_t bytes) {
    std::vector<void*> released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      kept_.push_back({data, bytes});
      kept_bytes_ += bytes;
      while (kept_.size() > kKeep || kept_bytes_ > kKeepBytes) {
        released.push_back(kept_.front().data);
        kept_bytes_ -= kept_.front().bytes;
        kept_.pop_front();
      }
    }
    for (void* p : released) std::free(p);
  }

  // (buffers kept, their bytes in all)
  std::pair<std::size_t, std::size_t> kept() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {kept_.size(), kept_bytes_};
  }

 private:
  struct Buffer {
    void* data;
    std::size_t bytes;
  };
  std::mutex mutex_;
  std::deque<Buffer> kept_;
  std::size_t kept_bytes_ = 0;
};

// A C-contiguous (N, H, W, C) array of `dtype` whose data starts on a 64-byte boundary.
// TensorFlow takes a returned array without copying only when it is aligned to its Eigen alignment
// (64 bytes in builds with AVX-512), and NumPy's own allocations are 16-byte aligned; through
// tf.numpy_function that copy cost more than the codec on small batches. Below
// OutputBuffers::kMinBytes the array is a view into a NumPy byte buffer 63 bytes longer, so that
// NumPy's allocator (its cache, its huge-page advice) serves it.
py::array aligned_empty(const py::dtype& dtype, const nnjpeg::ImageView& v) {
  constexpr std::size_t kAlign = 64;
  const std::size_t nbytes = static_cast<std::size_t>(v.n * v.h * v.w * v.c) * dtype.itemsize();
  if (nbytes >= OutputBuffers::kMinBytes) {
    // The array's base: hands the buffer back when the last array viewing it goes, or when
    // building the array fails.
    struct Kept {
      void* data = nullptr;
      std::size_t bytes = 0;
      ~Kept() {
        if (data != nullptr) nnjpeg::process_local<OutputBuffers>().give(data, bytes);
      }
    };
    constexpr std::size_t kPage = OutputBuffers::kHugePage;
    auto kept = std::make_unique<Kept>();
    kept->bytes = (nbytes + kPage - 1) / kPage * kPage;
    kept->data = nnjpeg::process_local<OutputBuffers>().take(kept->bytes);
    void* data = kept->data;
    py::capsule base(kept.get(), [](void* p) { delete static_cast<Kept*>(p); });
    kept.release();  // the capsule owns it now
    return py::array(dtype, {v.n, v.h, v.w, v.c}, {}, data, base);
  }
  py::array_t<std::uint8_t> raw(static_cast<py::ssize_t>(nbytes + kAlign - 1));
  const auto addr = reinterpret_cast<std::uintptr_t>(raw.mutable_data());
  void* data = reinterpret_cast<void*>((addr + kAlign - 1) / kAlign * kAlign);
  return py::array(dtype, {v.n, v.h, v.w, v.c}, {}, data, raw);
}

// The round trip's output (`out` when given: a C-contiguous, writeable array of the images' dtype
// and shape, possibly the images themselves), or None if float32 samples lie outside [0, 1] or are
// NaN/Inf (checked as they load; the caller words the error).
py::object roundtrip(const py::array& images, const py::array_t<float, py::array::c_style>& tables,
                     int mode, int threads, const std::string& kernel, const std::string& device,
                     const py::object& given) {
  const nnjpeg::ImageView view = view_of(images);
  py::array out = given.is_none() ? aligned_empty(images.dtype(), view) : given.cast<py::array>();
  void* dst = out.mutable_data();
  const float* qt = tables.data();
  if (device == "cuda") {
#ifdef NNJPEG_HAVE_CUDA
    std::string err;
    {
      py::gil_scoped_release release;
      if (nnjpeg::count_out_of_range(view)) return py::none();
      err = nnjpeg::cuda::roundtrip(view, dst, qt, static_cast<nnjpeg::Mode>(mode));
    }
    if (!err.empty()) throw std::runtime_error(err);
    return out;
#else
    throw std::runtime_error("nnjpeg was built without CUDA support (-DNNJPEG_CUDA=ON)");
#endif
  }
  const nnjpeg::Kernel& k = kernel_by_name(kernel);
  bool in_range;
  {
    py::gil_scoped_release release;
    in_range = nnjpeg::roundtrip(view, dst, qt, static_cast<nnjpeg::Mode>(mode), threads, k);
  }
  if (!in_range) return py::none();
  return out;
}

#ifdef NNJPEG_HAVE_CUDA
// For tests: nnjpeg::cuda::roundtrip_device, the entry point of TensorFlow's GPU op, on device
// copies of C-contiguous (N, H, W, C) images, `chunk` images at a time (0: its default); None if
// float32 samples lie outside [0, 1].
py::object cuda_roundtrip_device(const py::array& images, const py::array_t<float, py::array::c_style>& tables,
                                 int mode, std::int64_t chunk) {
  const nnjpeg::ImageView view = view_of(images);
  py::array out = aligned_empty(images.dtype(), view);
  void* dst = out.mutable_data();
  std::string err;
  bool in_range = true;
  {
    py::gil_scoped_release release;
    err = nnjpeg::cuda::roundtrip_device_from_host(view, dst, tables.data(), static_cast<nnjpeg::Mode>(mode), chunk,
                                                   &in_range);
  }
  if (!err.empty()) throw std::runtime_error(err);
  if (!in_range) return py::none();
  return out;
}
#endif

py::dict build_info() {
  py::dict d;
  d["kernels_compiled"] = nnjpeg::compiled_kernels();
  std::vector<std::string> runnable;
  for (const auto& k : nnjpeg::runnable_kernels()) runnable.emplace_back(k.name);
  d["kernels_runnable"] = runnable;
  d["kernel"] = std::string(nnjpeg::active_kernel().name);
  d["rows"] = std::string(nnjpeg::active_kernel().io->name);
#ifdef NNJPEG_HAVE_CUDA
  d["cuda_compiled"] = true;
  d["cuda_devices"] = nnjpeg::cuda::device_count();
#else
  d["cuda_compiled"] = false;
  d["cuda_devices"] = 0;
#endif
#ifdef NNJPEG_CUDA_EMULATION
  d["cuda_emulated"] = true;
#else
  d["cuda_emulated"] = false;
#endif
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = std::string("unknown");
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_codec, m) {
  m.doc() = "nnjpeg native codec core (private; use the nnjpeg package)";
  m.def("roundtrip", &roundtrip, py::arg("images"), py::arg("tables"), py::arg("mode"),
        py::arg("threads"), py::arg("kernel") = "", py::arg("device") = "cpu", py::arg("out") = py::none());
  m.def("build_info", &build_info);
#ifdef NNJPEG_HAVE_CUDA
  m.def("_cuda_roundtrip_device", &cuda_roundtrip_device, py::arg("images"), py::arg("tables"), py::arg("mode"),
        py::arg("chunk") = 0);
#endif
  m.def("kept_output_buffers", [] { return nnjpeg::process_local<OutputBuffers>().kept(); });
}
