// The round-trip pipelines behind nnjpeg.compress / nnjpeg.jpeg. Inputs are trusted: the Python
// entry points validate dtype, shape, value range and tables before calling in.
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
// vectorizable pass; callers look closer only when it is non-zero.
std::int64_t count_out_of_range(const ImageView& in);

// Writes a C-contiguous (N, H, W, C) result of the input's dtype to `out`. `tables` holds one
// 64-entry table (natural order) per plane: C tables for kRgb, (Y, Cb, Cr) for the YCbCr modes.
// Grey (C == 1) images take the kRgb path with tables[0] whatever the mode.
void roundtrip(const ImageView& in, void* out, const float* tables, Mode mode, int threads,
               const Kernel& kernel);

}  // namespace nnjpeg
