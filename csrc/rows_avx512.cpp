// AVX-512 VBMI byte split and merge of three interleaved channels (RowIo::split_u8 / merge_u8),
// 64 pixels per step: a VBMI byte permute picks any of 128 bytes of two registers, so each
// channel (split) or output register (merge) takes one two-source permute and one masked
// one-source permute for the third register, against nine byte shuffles and six ORs per 32 pixels
// at 256 bits. The rest of a row takes one more step through masked loads and stores (handing it
// to the AVX2 functions instead left a 32-pixel row, 32² images, 20 % slower per image). Grey rows
// and the float conversions are the AVX2 functions (kernels.h: 512-bit float conversions measured
// slower).
#include <immintrin.h>

#include <algorithm>

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

// The first `bytes` bytes of register k of a run of three (k = 0, 1, 2), as a byte mask.
inline __mmask64 first_bytes(std::ptrdiff_t bytes, int k) {
  const std::ptrdiff_t n = std::clamp<std::ptrdiff_t>(bytes - 64 * k, 0, 64);
  return n == 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1;
}

// Up to 64 pixels (the loads and stores masked to them: nothing past the row is touched).
inline void split64(const std::uint8_t* src, std::ptrdiff_t pixels, std::uint8_t* const* dst) {
  __m512i v[3];
  for (int k = 0; k < 3; ++k) v[k] = _mm512_maskz_loadu_epi8(first_bytes(3 * pixels, k), src + 64 * k);
  for (int c = 0; c < 3; ++c) _mm512_mask_storeu_epi8(dst[c], first_bytes(pixels, 0), pick(v[0], v[1], v[2], kSplit[c]));
}

inline void merge64(const std::uint8_t* const* src, std::ptrdiff_t pixels, std::uint8_t* dst) {
  __m512i c[3];
  for (int k = 0; k < 3; ++k) c[k] = _mm512_maskz_loadu_epi8(first_bytes(pixels, 0), src[k]);
  for (int k = 0; k < 3; ++k) {
    _mm512_mask_storeu_epi8(dst + 64 * k, first_bytes(3 * pixels, k), pick(c[0], c[1], c[2], kMerge[k]));
  }
}

void split_u8(const std::uint8_t* src, int channels, std::ptrdiff_t n, std::uint8_t* const* dst) {
  if (channels != 3) {
    kRowIoAvx2.split_u8(src, channels, n, dst);
    return;
  }
  std::ptrdiff_t x = 0;
  for (; x + 64 <= n; x += 64) {
    std::uint8_t* d[3] = {dst[0] + x, dst[1] + x, dst[2] + x};
    split64(src + 3 * x, 64, d);
  }
  if (x < n) {
    std::uint8_t* d[3] = {dst[0] + x, dst[1] + x, dst[2] + x};
    split64(src + 3 * x, n - x, d);
  }
}

void merge_u8(const std::uint8_t* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst) {
  if (channels != 3) {
    kRowIoAvx2.merge_u8(src, channels, n, dst);
    return;
  }
  std::ptrdiff_t x = 0;
  for (; x + 64 <= n; x += 64) {
    const std::uint8_t* s[3] = {src[0] + x, src[1] + x, src[2] + x};
    merge64(s, 64, dst + 3 * x);
  }
  if (x < n) {
    const std::uint8_t* s[3] = {src[0] + x, src[1] + x, src[2] + x};
    merge64(s, n - x, dst + 3 * x);
  }
}

}  // namespace

// kRowIoAvx2 is constant-initialized (function addresses only), so it is complete before this
// initializer reads it, whatever the order of translation units.
const RowIo kRowIoAvx512Vbmi = {"avx512vbmi", kRowIoAvx2.load_u8, kRowIoAvx2.load_f32, kRowIoAvx2.store_u8,
                                kRowIoAvx2.store_f32, split_u8, merge_u8};

}  // namespace nnjpeg
