// Scalar row conversions (RowIo): the reference for the SIMD variants and their tails.
#include "kernels.h"

namespace nnjpeg {
namespace {

void load_u8(const std::uint8_t* src, int channels, std::ptrdiff_t n, float* const* dst) {
  for (int c = 0; c < channels; ++c) {
    float* d = dst[c];
    for (std::ptrdiff_t x = 0; x < n; ++x) d[x] = static_cast<float>(src[x * channels + c]);
  }
}

bool load_f32(const float* src, int channels, std::ptrdiff_t n, float* const* dst) {
  bool ok = true;
  for (int c = 0; c < channels; ++c) {
    float* d = dst[c];
    for (std::ptrdiff_t x = 0; x < n; ++x) ok &= scale_sample(src[x * channels + c], d[x]);
  }
  return ok;
}

void store_u8(const float* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst) {
  for (int c = 0; c < channels; ++c) {
    const float* s = src[c];
    for (std::ptrdiff_t x = 0; x < n; ++x) dst[x * channels + c] = static_cast<std::uint8_t>(s[x]);
  }
}

void store_f32(const float* const* src, int channels, std::ptrdiff_t n, float* dst) {
  for (int c = 0; c < channels; ++c) {
    const float* s = src[c];
    for (std::ptrdiff_t x = 0; x < n; ++x) dst[x * channels + c] = s[x] / 255.0f;
  }
}

void split_u8(const std::uint8_t* src, int channels, std::ptrdiff_t n, std::uint8_t* const* dst) {
  for (int c = 0; c < channels; ++c) {
    std::uint8_t* d = dst[c];
    for (std::ptrdiff_t x = 0; x < n; ++x) d[x] = src[x * channels + c];
  }
}

void merge_u8(const std::uint8_t* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst) {
  for (int c = 0; c < channels; ++c) {
    const std::uint8_t* s = src[c];
    for (std::ptrdiff_t x = 0; x < n; ++x) dst[x * channels + c] = s[x];
  }
}

}  // namespace

const RowIo kRowIoScalar = {"scalar", load_u8, load_f32, store_u8, store_f32, split_u8, merge_u8};

}  // namespace nnjpeg
