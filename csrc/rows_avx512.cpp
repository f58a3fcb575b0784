// AVX-512 row conversions (RowIo), 16 pixels per step and a scalar tail. Three interleaved
// channels (48 samples in vectors v0, v1, v2) are split with two permutes per channel: a
// two-source permute for the samples in v0 and v1, then a merge-masked permute
// of v2 for the rest; interleaving runs the same index arithmetic backwards.
#include <immintrin.h>

#include "kernels.h"

namespace nnjpeg {
namespace {

struct alignas(64) Lanes {
  std::int32_t v[16];
};

// Channel c of pixel p is sample 3p + c; vpermt2ps reads that index mod 32, vpermps mod 16, so the
// one index vector serves both permutes of split3.
constexpr Lanes split_index(int c) {
  Lanes r{};
  for (int p = 0; p < 16; ++p) r.v[p] = 3 * p + c;
  return r;
}

constexpr __mmask16 from_v2(int c) {
  int m = 0;
  for (int p = 0; p < 16; ++p) m |= (3 * p + c >= 32) << p;
  return static_cast<__mmask16>(m);
}

// Output vector s, lane l is sample g = 16 s + l: channel g % 3 of pixel g / 3. Channels 0 and 1
// come from one two-source permute (channel 1 offset by 16), channel 2 from a masked permute.
constexpr Lanes merge_index(int s) {
  Lanes r{};
  for (int l = 0; l < 16; ++l) {
    const int g = 16 * s + l;
    r.v[l] = g / 3 + (g % 3 == 1 ? 16 : 0);
  }
  return r;
}

constexpr __mmask16 channel2_lanes(int s) {
  int m = 0;
  for (int l = 0; l < 16; ++l) m |= ((16 * s + l) % 3 == 2) << l;
  return static_cast<__mmask16>(m);
}

constexpr Lanes kSplit[3] = {split_index(0), split_index(1), split_index(2)};
constexpr Lanes kMerge[3] = {merge_index(0), merge_index(1), merge_index(2)};

inline __m512 split3(int c, __m512 v0, __m512 v1, __m512 v2) {
  const __m512i idx = _mm512_load_si512(kSplit[c].v);
  return _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(v0, idx, v1), from_v2(c), idx, v2);
}

inline __m512 merge3(int s, __m512 p0, __m512 p1, __m512 p2) {
  const __m512i idx = _mm512_load_si512(kMerge[s].v);
  return _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(p0, idx, p1), channel2_lanes(s), idx, p2);
}

inline __m512 u8x16_to_float(const std::uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

inline void store_u8x16(std::uint8_t* p, __m512 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));
}

template <class In, class Load>
void load3(const In* src, std::ptrdiff_t n16, float* const* dst, Load load) {
  for (std::ptrdiff_t x = 0; x < n16; x += 16) {
    const In* s = src + 3 * x;
    const __m512 v0 = load(s), v1 = load(s + 16), v2 = load(s + 32);
    for (int c = 0; c < 3; ++c) _mm512_storeu_ps(dst[c] + x, split3(c, v0, v1, v2));
  }
}

void load_u8(const std::uint8_t* src, int channels, std::ptrdiff_t n, float* const* dst) {
  const std::ptrdiff_t n16 = n / 16 * 16;
  if (channels == 3) {
    load3(src, n16, dst, u8x16_to_float);
  } else {
    for (std::ptrdiff_t x = 0; x < n16; x += 16) _mm512_storeu_ps(dst[0] + x, u8x16_to_float(src + x));
  }
  float* tail[3] = {dst[0] + n16, channels == 3 ? dst[1] + n16 : nullptr, channels == 3 ? dst[2] + n16 : nullptr};
  kRowIoScalar.load_u8(src + n16 * channels, channels, n - n16, tail);
}

void load_f32(const float* src, int channels, std::ptrdiff_t n, float* const* dst) {
  const std::ptrdiff_t n16 = n / 16 * 16;
  const __m512 k255 = _mm512_set1_ps(255.0f);
  auto load = [k255](const float* p) { return _mm512_mul_ps(_mm512_loadu_ps(p), k255); };
  if (channels == 3) {
    load3(src, n16, dst, load);
  } else {
    for (std::ptrdiff_t x = 0; x < n16; x += 16) _mm512_storeu_ps(dst[0] + x, load(src + x));
  }
  float* tail[3] = {dst[0] + n16, channels == 3 ? dst[1] + n16 : nullptr, channels == 3 ? dst[2] + n16 : nullptr};
  kRowIoScalar.load_f32(src + n16 * channels, channels, n - n16, tail);
}

void store_u8(const float* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst) {
  const std::ptrdiff_t n16 = n / 16 * 16;
  if (channels == 3) {
    for (std::ptrdiff_t x = 0; x < n16; x += 16) {
      const __m512 p0 = _mm512_loadu_ps(src[0] + x), p1 = _mm512_loadu_ps(src[1] + x),
                   p2 = _mm512_loadu_ps(src[2] + x);
      for (int s = 0; s < 3; ++s) store_u8x16(dst + 3 * x + 16 * s, merge3(s, p0, p1, p2));
    }
  } else {
    for (std::ptrdiff_t x = 0; x < n16; x += 16) store_u8x16(dst + x, _mm512_loadu_ps(src[0] + x));
  }
  const float* tail[3] = {src[0] + n16, channels == 3 ? src[1] + n16 : nullptr, channels == 3 ? src[2] + n16 : nullptr};
  kRowIoScalar.store_u8(tail, channels, n - n16, dst + n16 * channels);
}

// k / 255 for the whole numbers k in [0, 255] the kernels give, correctly rounded without a
// division: q = k * (1/255) is off by at most an ulp, the residual k - 255 q is exact in one FMA,
// and one Newton step q + residual * (1/255) lands on the correctly rounded quotient for every k
// (checked exhaustively over all 256 values; tests/test_kernels.py compares with k / 255).
inline __m512 div255(__m512 k) {
  const __m512 r = _mm512_set1_ps(1.0f / 255.0f);
  const __m512 q = _mm512_mul_ps(k, r);
  return _mm512_fmadd_ps(_mm512_fnmadd_ps(q, _mm512_set1_ps(255.0f), k), r, q);
}

void store_f32(const float* const* src, int channels, std::ptrdiff_t n, float* dst) {
  const std::ptrdiff_t n16 = n / 16 * 16;
  if (channels == 3) {
    for (std::ptrdiff_t x = 0; x < n16; x += 16) {
      const __m512 p0 = div255(_mm512_loadu_ps(src[0] + x));
      const __m512 p1 = div255(_mm512_loadu_ps(src[1] + x));
      const __m512 p2 = div255(_mm512_loadu_ps(src[2] + x));
      for (int s = 0; s < 3; ++s) _mm512_storeu_ps(dst + 3 * x + 16 * s, merge3(s, p0, p1, p2));
    }
  } else {
    for (std::ptrdiff_t x = 0; x < n16; x += 16) {
      _mm512_storeu_ps(dst + x, div255(_mm512_loadu_ps(src[0] + x)));
    }
  }
  const float* tail[3] = {src[0] + n16, channels == 3 ? src[1] + n16 : nullptr, channels == 3 ? src[2] + n16 : nullptr};
  kRowIoScalar.store_f32(tail, channels, n - n16, dst + n16 * channels);
}

}  // namespace

const RowIo kRowIoAvx512 = {load_u8, load_f32, store_u8, store_f32};

}  // namespace nnjpeg
