// The round-trip pipelines of codec.h on a CUDA device. Plain C++ interface, so bindings.cpp needs
// no CUDA headers; nothing here throws, errors come back as text.
#pragma once

#include <string>

#include "codec.h"

namespace nnjpeg::cuda {

// Same contract and results as nnjpeg::roundtrip, run on the calling thread's current device.
// Returns an empty string on success, otherwise what failed (including "no CUDA device").
std::string roundtrip(const ImageView& in, void* out, const float* tables, Mode mode);

// Devices the CUDA runtime sees; 0 when there is no device or no usable driver.
int device_count();

}  // namespace nnjpeg::cuda
