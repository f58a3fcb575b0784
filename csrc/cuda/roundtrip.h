// The round-trip pipelines of codec.h on a CUDA device. Plain C++ interface, so bindings.cpp and
// tf_op.cpp need no CUDA headers; nothing here throws, errors come back as text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "codec.h"

namespace nnjpeg::cuda {

// Same contract and results as nnjpeg::roundtrip, run on the calling thread's current device.
// Returns an empty string on success, otherwise what failed (including "no CUDA device").
std::string roundtrip(const ImageView& in, void* out, const float* tables, Mode mode);

// Device memory that roundtrip_device needs beside its input and output to work through `chunk`
// images at a time; chunk 0: as many as fit in about 256 MiB. 0 for an empty batch.
std::size_t device_scratch_bytes(const ImageView& in, Mode mode, std::int64_t chunk = 0);

// The round trip of images already in the memory of device `device` (TensorFlow's GPU op): `in`
// C-contiguous, `out` a C-contiguous result of its dtype and shape, `scratch` device_scratch_bytes
// for a chunk of one image or more, aligned as floats, which sets how many images run at a time;
// all three device memory. `tables` is host memory. Whoever wrote `in`, or last used the memory of
// `out` and `scratch`, may have done so on any stream of the device: this waits for all work
// already queued on the device, and returns once its own work has finished. Sets *in_range to
// false, leaving `out` unspecified, when float32 samples lie outside [0, 1] or are NaN/Inf; such
// samples never reach the kernels.
std::string roundtrip_device(const ImageView& in, void* out, const float* tables, Mode mode, int device,
                             void* scratch, std::size_t scratch_bytes, bool* in_range);

// roundtrip_device on device copies of C-contiguous host images, `chunk` images at a time (0 as
// device_scratch_bytes), the result copied back to `out`: how tests reach the entry point of
// TensorFlow's GPU op without TensorFlow.
std::string roundtrip_device_from_host(const ImageView& in, void* out, const float* tables, Mode mode,
                                       std::int64_t chunk, bool* in_range);

// Copies `bytes` of device memory to the host (a GPU op's error path reads its input).
std::string copy_to_host(void* dst, const void* src, std::size_t bytes);

// Devices the CUDA runtime sees; 0 when there is no device or no usable driver.
int device_count();

}  // namespace nnjpeg::cuda
