// nnjpeg._codec: thin bindings. All argument checking happens in nnjpeg/codec.py; here we only
// read buffer pointers and strides, allocate the output and run the pipeline without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "kernels.h"

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

// A C-contiguous (N, H, W, C) array of `dtype` whose data starts on a 64-byte boundary: a view into
// a NumPy byte buffer 63 bytes longer, so NumPy's allocator (its cache, its huge-page advice) still
// serves it. TensorFlow takes a returned array without copying only when it is aligned to its
// Eigen alignment (64 bytes in builds with AVX-512), and NumPy's own allocations are 16-byte
// aligned; through tf.numpy_function that copy cost more than the codec on small batches.
py::array aligned_empty(const py::dtype& dtype, const nnjpeg::ImageView& v) {
  constexpr std::size_t kAlign = 64;
  const std::size_t nbytes = static_cast<std::size_t>(v.n * v.h * v.w * v.c) * dtype.itemsize();
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
}
