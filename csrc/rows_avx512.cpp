// AVX-512 VBMI byte split and merge of three interleaved channels (RowIo::split_u8 / merge_u8),
// 64 pixels per step: a VBMI byte permute picks any of 128 bytes of two registers, so each
// channel (split) or output register (merge) takes one two-source permute and one masked
// one-source permute for the third register, against nine byte shuffles and six ORs per 32 pixels
// at 256 bits. What is left of a row goes to the AVX2 functions, as do the float conversions
// (kernels.h: 512-bit versions of those measured slower).
#include <immintrin.h>

#include "kernels.h"

namespace nnjpeg {
namespace {

struct ByteIndex {
  alignas(64) std::uint8_t b[64];
  std::uint64_t third;  // bytes taken from the third register (bit i: byte i)
};

// Channel c of 64 pixels, whose 192 samples fill registers 0-2 (sample 3 k + c is byte
// (3 k + c) % 64 of register (3 k + c) / 64): registers 0 and 1 by index 3 k + c (bit 6 picks the
// register), register 2 by the low six bits where `third` is set.
constexpr ByteIndex split_index(int c) {
  ByteIndex m{};
  for (int k = 0; k < 64; ++k) {
    const int g = 3 * k + c;
    m.b[k] = static_cast<std::uint8_t>(g % 128);
    if (g >= 128) m.third |= std::uint64_t{1} << k;
  }
  return m;
}

// Output register s of 64 pixels: byte j is sample g = 64 s + j, channel g % 3 of pixel g / 3;
// channels 0 and 1 by index g / 3 + 64 (g % 3), channel 2 by g / 3 where `third` is set.
constexpr ByteIndex merge_index(int s) {
  ByteIndex m{};
  for (int j = 0; j < 64; ++j) {
    const int g = 64 * s + j, c = g % 3;
    m.b[j] = static_cast<std::uint8_t>(g / 3 + (c == 1 ? 64 : 0));
    if (c == 2) m.third |= std::uint64_t{1} << j;
  }
  return m;
}

constexpr ByteIndex kSplit[3] = {split_index(0), split_index(1), split_index(2)};
constexpr ByteIndex kMerge[3] = {merge_index(0), merge_index(1), merge_index(2)};

// Bytes of a and b by m, with those of `third` from c instead.
inline __m512i pick(__m512i a, __m512i b, __m512i c, const ByteIndex& m) {
  const __m512i idx = _mm512_load_si512(m.b);
  return _mm512_mask_permutexvar_epi8(_mm512_permutex2var_epi8(a, idx, b), m.third, idx, c);
}

inline __m512i load64(const std::uint8_t* p) { return _mm512_loadu_si512(p); }
inline void store64(std::uint8_t* p, __m512i v) { _mm512_storeu_si512(p, v); }

void split_u8(const std::uint8_t* src, int channels, std::ptrdiff_t n, std::uint8_t* const* dst) {
  std::ptrdiff_t x = 0;
  if (channels == 3) {
    for (; x + 64 <= n; x += 64) {
      const std::uint8_t* p = src + 3 * x;
      const __m512i v0 = load64(p), v1 = load64(p + 64), v2 = load64(p + 128);
      for (int c = 0; c < 3; ++c) store64(dst[c] + x, pick(v0, v1, v2, kSplit[c]));
    }
  }
  std::uint8_t* tail[3] = {dst[0] + x, channels == 3 ? dst[1] + x : nullptr, channels == 3 ? dst[2] + x : nullptr};
  kRowIoAvx2.split_u8(src + x * channels, channels, n - x, tail);
}

void merge_u8(const std::uint8_t* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst) {
  std::ptrdiff_t x = 0;
  if (channels == 3) {
    for (; x + 64 <= n; x += 64) {
      const __m512i c0 = load64(src[0] + x), c1 = load64(src[1] + x), c2 = load64(src[2] + x);
      for (int s = 0; s < 3; ++s) store64(dst + 3 * x + 64 * s, pick(c0, c1, c2, kMerge[s]));
    }
  }
  const std::uint8_t* tail[3] = {src[0] + x, channels == 3 ? src[1] + x : nullptr, channels == 3 ? src[2] + x : nullptr};
  kRowIoAvx2.merge_u8(tail, channels, n - x, dst + x * channels);
}

}  // namespace

// kRowIoAvx2 is constant-initialized (function addresses only), so it is complete before this
// initializer reads it, whatever the order of translation units.
const RowIo kRowIoAvx512Vbmi = {"avx512vbmi", kRowIoAvx2.load_u8, kRowIoAvx2.load_f32, kRowIoAvx2.store_u8,
                                kRowIoAvx2.store_f32, split_u8, merge_u8};

}  // namespace nnjpeg
