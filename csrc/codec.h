// The round-trip pipelines behind nnjpeg.compress / nnjpeg.jpeg. Inputs are trusted: the Python
// entry points validate dtype, shape and tables before calling in; the float32 value range is
// checked on the way (roundtrip's result).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels.h"

namespace nnjpeg {

enum class Mode : int { kRgb = 0, kYcc444 = 1, kYcc422 = 2, kYcc420 = 3 };

// A strided (N, H, W, C) view; strides in bytes. float32 samples are in [0, 1], uint8 in [0, 255].
struct ImageView {
  const std::uint8_t* data;
  bool is_float;
  std::int64_t n, h, w, c;
  std::int64_t sn, sh, sw, sc;
};

// Float32 samples outside [0, 1], NaN and Inf included (the range every entry point accepts). One
// vectorizable pass, for callers that must check before they run (the CUDA path).
std::int64_t count_out_of_range(const ImageView& in);

// Writes a C-contiguous (N, H, W, C) result of the input's dtype to `out`. `tables` holds one
// 64-entry table (natural order) per plane: C tables for kRgb, (Y, Cb, Cr) for the YCbCr modes.
// Grey (C == 1) images take the kRgb path with tables[0] whatever the mode. Checks the float32
// range while it loads (no pass of its own): returns false, with `out` unspecified, if a sample
// lies outside [0, 1] or is NaN/Inf; such samples are coded as 0, so nothing else sees them.
bool roundtrip(const ImageView& in, void* out, const float* tables, Mode mode, int threads,
               const Kernel& kernel);

}  // namespace nnjpeg
