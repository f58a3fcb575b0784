// AVX2 row conversions (RowIo), 8 pixels per step and a scalar tail. Three interleaved channels
// are split with a blend and a lane permute per channel: of 8 pixels' 24 samples, held in vectors
// s = 0, 1, 2 (sample 3p + c in vector (3p + c) / 8, lane (3p + c) % 8), each channel fills 8
// distinct lanes, because 3 is invertible mod 8 (3 * 3 = 9): lane l holds pixel 3 (l - c) mod 8.
#include <immintrin.h>

#include "kernels.h"

namespace nnjpeg {
namespace {

constexpr int pixel_in_lane(int c, int l) { return ((3 * (l - c)) % 8 + 8) % 8; }

// Lanes whose channel-c sample lies in vector s (the blend mask that gathers channel c).
constexpr int lanes_of(int c, int s) {
  int m = 0;
  for (int l = 0; l < 8; ++l) m |= ((3 * pixel_in_lane(c, l) + c) / 8 == s) << l;
  return m;
}

// Lanes of output vector s that hold channel c (the blend mask that interleaves).
constexpr int channel_lanes(int s, int c) {
  int m = 0;
  for (int l = 0; l < 8; ++l) m |= ((8 * s + l) % 3 == c) << l;
  return m;
}

template <int c>
inline __m256 split3(__m256 v0, __m256 v1, __m256 v2) {
  const __m256 m = _mm256_blend_ps(_mm256_blend_ps(v0, v1, lanes_of(c, 1)), v2, lanes_of(c, 2));
  const __m256i idx = _mm256_setr_epi32(c % 8, (3 + c) % 8, (6 + c) % 8, (9 + c) % 8, (12 + c) % 8,
                                        (15 + c) % 8, (18 + c) % 8, (21 + c) % 8);
  return _mm256_permutevar8x32_ps(m, idx);
}

template <int c>
inline __m256 spread3(__m256 v) {
  const __m256i idx = _mm256_setr_epi32(pixel_in_lane(c, 0), pixel_in_lane(c, 1), pixel_in_lane(c, 2),
                                        pixel_in_lane(c, 3), pixel_in_lane(c, 4), pixel_in_lane(c, 5),
                                        pixel_in_lane(c, 6), pixel_in_lane(c, 7));
  return _mm256_permutevar8x32_ps(v, idx);
}

template <int s>
inline __m256 merge3(__m256 p0, __m256 p1, __m256 p2) {
  return _mm256_blend_ps(_mm256_blend_ps(p0, p1, channel_lanes(s, 1)), p2, channel_lanes(s, 2));
}

inline __m256 u8x8_to_float(const std::uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// Whole numbers in [0, 255] of a and b as 16 bytes (a's 8 then b's 8).
inline __m128i pack_u8x16(__m256 a, __m256 b) {
  const __m256i w = _mm256_packus_epi32(_mm256_cvttps_epi32(a), _mm256_cvttps_epi32(b));
  const __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
  // w's 128-bit halves hold (a0-3, b0-3) and (a4-7, b4-7) as 16-bit words.
  return _mm_shuffle_epi32(_mm_packus_epi16(lo, hi), _MM_SHUFFLE(3, 1, 2, 0));
}

template <class In, class Load>
void load3(const In* src, std::ptrdiff_t n8, float* const* dst, Load load) {
  for (std::ptrdiff_t x = 0; x < n8; x += 8) {
    const In* s = src + 3 * x;
    const __m256 v0 = load(s), v1 = load(s + 8), v2 = load(s + 16);
    _mm256_storeu_ps(dst[0] + x, split3<0>(v0, v1, v2));
    _mm256_storeu_ps(dst[1] + x, split3<1>(v0, v1, v2));
    _mm256_storeu_ps(dst[2] + x, split3<2>(v0, v1, v2));
  }
}

void load_u8(const std::uint8_t* src, int channels, std::ptrdiff_t n, float* const* dst) {
  const std::ptrdiff_t n8 = n / 8 * 8;
  if (channels == 3) {
    load3(src, n8, dst, u8x8_to_float);
  } else {
    for (std::ptrdiff_t x = 0; x < n8; x += 8) _mm256_storeu_ps(dst[0] + x, u8x8_to_float(src + x));
  }
  float* tail[3] = {dst[0] + n8, channels == 3 ? dst[1] + n8 : nullptr, channels == 3 ? dst[2] + n8 : nullptr};
  kRowIoScalar.load_u8(src + n8 * channels, channels, n - n8, tail);
}

bool load_f32(const float* src, int channels, std::ptrdiff_t n, float* const* dst) {
  const std::ptrdiff_t n8 = n / 8 * 8;
  const __m256 k255 = _mm256_set1_ps(255.0f), zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  __m256 bad = zero;  // lanes that met a sample outside [0, 1] (unordered compares: NaN too)
  auto load = [&](const float* p) {
    const __m256 v = _mm256_loadu_ps(p);
    const __m256 out = _mm256_or_ps(_mm256_cmp_ps(v, zero, _CMP_NGE_UQ), _mm256_cmp_ps(v, one, _CMP_NLE_UQ));
    bad = _mm256_or_ps(bad, out);
    return _mm256_mul_ps(_mm256_andnot_ps(out, v), k255);
  };
  if (channels == 3) {
    load3(src, n8, dst, load);
  } else {
    for (std::ptrdiff_t x = 0; x < n8; x += 8) _mm256_storeu_ps(dst[0] + x, load(src + x));
  }
  float* tail[3] = {dst[0] + n8, channels == 3 ? dst[1] + n8 : nullptr, channels == 3 ? dst[2] + n8 : nullptr};
  const bool tail_ok = kRowIoScalar.load_f32(src + n8 * channels, channels, n - n8, tail);
  return tail_ok && _mm256_testz_ps(bad, bad);
}

void store_u8(const float* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst) {
  std::ptrdiff_t x = 0;
  if (channels == 3) {
    for (; x + 16 <= n; x += 16) {
      __m256 v[6];
      for (int h = 0; h < 2; ++h) {
        const __m256 p0 = spread3<0>(_mm256_loadu_ps(src[0] + x + 8 * h));
        const __m256 p1 = spread3<1>(_mm256_loadu_ps(src[1] + x + 8 * h));
        const __m256 p2 = spread3<2>(_mm256_loadu_ps(src[2] + x + 8 * h));
        v[3 * h] = merge3<0>(p0, p1, p2);
        v[3 * h + 1] = merge3<1>(p0, p1, p2);
        v[3 * h + 2] = merge3<2>(p0, p1, p2);
      }
      std::uint8_t* d = dst + 3 * x;
      for (int i = 0; i < 3; ++i) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 16 * i), pack_u8x16(v[2 * i], v[2 * i + 1]));
      }
    }
  } else {
    for (; x + 16 <= n; x += 16) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + x),
                       pack_u8x16(_mm256_loadu_ps(src[0] + x), _mm256_loadu_ps(src[0] + x + 8)));
    }
  }
  const float* tail[3] = {src[0] + x, channels == 3 ? src[1] + x : nullptr, channels == 3 ? src[2] + x : nullptr};
  kRowIoScalar.store_u8(tail, channels, n - x, dst + x * channels);
}

// k / 255 for the whole numbers k in [0, 255] the kernels give, correctly rounded without a
// division: q = k * (1/255) is off by at most an ulp, the residual k - 255 q is exact in one FMA,
// and one Newton step q + residual * (1/255) lands on the correctly rounded quotient for every k
// (checked exhaustively over all 256 values; tests/test_kernels.py compares with k / 255).
inline __m256 div255(__m256 k) {
  const __m256 r = _mm256_set1_ps(1.0f / 255.0f);
  const __m256 q = _mm256_mul_ps(k, r);
  return _mm256_fmadd_ps(_mm256_fnmadd_ps(q, _mm256_set1_ps(255.0f), k), r, q);
}

void store_f32(const float* const* src, int channels, std::ptrdiff_t n, float* dst) {
  const std::ptrdiff_t n8 = n / 8 * 8;
  if (channels == 3) {
    for (std::ptrdiff_t x = 0; x < n8; x += 8) {
      const __m256 p0 = spread3<0>(div255(_mm256_loadu_ps(src[0] + x)));
      const __m256 p1 = spread3<1>(div255(_mm256_loadu_ps(src[1] + x)));
      const __m256 p2 = spread3<2>(div255(_mm256_loadu_ps(src[2] + x)));
      float* d = dst + 3 * x;
      _mm256_storeu_ps(d, merge3<0>(p0, p1, p2));
      _mm256_storeu_ps(d + 8, merge3<1>(p0, p1, p2));
      _mm256_storeu_ps(d + 16, merge3<2>(p0, p1, p2));
    }
  } else {
    for (std::ptrdiff_t x = 0; x < n8; x += 8) {
      _mm256_storeu_ps(dst + x, div255(_mm256_loadu_ps(src[0] + x)));
    }
  }
  const float* tail[3] = {src[0] + n8, channels == 3 ? src[1] + n8 : nullptr, channels == 3 ? src[2] + n8 : nullptr};
  kRowIoScalar.store_f32(tail, channels, n - n8, dst + n8 * channels);
}

// Bytes: 16 pixels (48 samples, three 16-byte vectors) per group, one byte shuffle per channel and
// source vector. Sample 3 k + c (pixel k, channel c) is byte (3 k + c) % 16 of vector (3 k + c) / 16.
// The main loops take two groups at once, one per 128-bit lane of a ymm register (byte shuffles
// act per lane), so the masks are the same for both.
struct ByteMask {
  alignas(16) std::int8_t b[16];
};

// Gathers channel c's bytes from source vector s into pixel order (zero elsewhere).
constexpr ByteMask split_mask(int c, int s) {
  ByteMask m{};
  for (int k = 0; k < 16; ++k) m.b[k] = (3 * k + c) / 16 == s ? static_cast<std::int8_t>((3 * k + c) % 16) : -1;
  return m;
}

// Places channel c's pixels at their bytes of output vector s (zero elsewhere).
constexpr ByteMask merge_mask(int c, int s) {
  ByteMask m{};
  for (int j = 0; j < 16; ++j) m.b[j] = (16 * s + j) % 3 == c ? static_cast<std::int8_t>((16 * s + j) / 3) : -1;
  return m;
}

inline __m128i mask_of(const ByteMask& m) { return _mm_load_si128(reinterpret_cast<const __m128i*>(m.b)); }
inline __m128i shuffle(__m128i v, const ByteMask& m) { return _mm_shuffle_epi8(v, mask_of(m)); }
inline __m256i shuffle(__m256i v, const ByteMask& m) {
  return _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(mask_of(m)));
}
inline __m128i bit_or(__m128i a, __m128i b) { return _mm_or_si128(a, b); }
inline __m256i bit_or(__m256i a, __m256i b) { return _mm256_or_si256(a, b); }

// Indexed [channel][source vector].
constexpr ByteMask kSplit[3][3] = {{split_mask(0, 0), split_mask(0, 1), split_mask(0, 2)},
                                   {split_mask(1, 0), split_mask(1, 1), split_mask(1, 2)},
                                   {split_mask(2, 0), split_mask(2, 1), split_mask(2, 2)}};
// Indexed [output vector][channel].
constexpr ByteMask kMerge[3][3] = {{merge_mask(0, 0), merge_mask(1, 0), merge_mask(2, 0)},
                                   {merge_mask(0, 1), merge_mask(1, 1), merge_mask(2, 1)},
                                   {merge_mask(0, 2), merge_mask(1, 2), merge_mask(2, 2)}};

// Output i of three vectors: the OR of v[j] shuffled by m[i][j].
template <class V>
inline V gather3(const V v[3], const ByteMask (&m)[3][3], int i) {
  return bit_or(bit_or(shuffle(v[0], m[i][0]), shuffle(v[1], m[i][1])), shuffle(v[2], m[i][2]));
}

inline __m128i load16(const std::uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline void store16(std::uint8_t* p, __m128i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }

// 16 bytes at lo in the low lane, 16 at hi in the high one.
inline __m256i load16x2(const std::uint8_t* lo, const std::uint8_t* hi) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(load16(lo)), load16(hi), 1);
}

void split_u8(const std::uint8_t* src, int channels, std::ptrdiff_t n, std::uint8_t* const* dst) {
  std::ptrdiff_t x = 0;
  if (channels == 3) {
    for (; x + 32 <= n; x += 32) {
      const std::uint8_t* p = src + 3 * x;  // pixels x...x + 15 in bytes 0-47, the next 16 in 48-95
      const __m256i v[3] = {load16x2(p, p + 48), load16x2(p + 16, p + 64), load16x2(p + 32, p + 80)};
      for (int c = 0; c < 3; ++c) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[c] + x), gather3(v, kSplit, c));
      }
    }
    for (; x + 16 <= n; x += 16) {
      const std::uint8_t* p = src + 3 * x;
      const __m128i v[3] = {load16(p), load16(p + 16), load16(p + 32)};
      for (int c = 0; c < 3; ++c) store16(dst[c] + x, gather3(v, kSplit, c));
    }
  }
  std::uint8_t* tail[3] = {dst[0] + x, channels == 3 ? dst[1] + x : nullptr, channels == 3 ? dst[2] + x : nullptr};
  kRowIoScalar.split_u8(src + x * channels, channels, n - x, tail);
}

void merge_u8(const std::uint8_t* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst) {
  std::ptrdiff_t x = 0;
  if (channels == 3) {
    for (; x + 32 <= n; x += 32) {
      __m256i v[3];
      for (int c = 0; c < 3; ++c) v[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[c] + x));
      std::uint8_t* p = dst + 3 * x;
      for (int i = 0; i < 3; ++i) {
        const __m256i o = gather3(v, kMerge, i);
        store16(p + 16 * i, _mm256_castsi256_si128(o));
        store16(p + 48 + 16 * i, _mm256_extracti128_si256(o, 1));
      }
    }
    for (; x + 16 <= n; x += 16) {
      const __m128i v[3] = {load16(src[0] + x), load16(src[1] + x), load16(src[2] + x)};
      for (int i = 0; i < 3; ++i) store16(dst + 3 * x + 16 * i, gather3(v, kMerge, i));
    }
  }
  const std::uint8_t* tail[3] = {src[0] + x, channels == 3 ? src[1] + x : nullptr, channels == 3 ? src[2] + x : nullptr};
  kRowIoScalar.merge_u8(tail, channels, n - x, dst + x * channels);
}

}  // namespace

const RowIo kRowIoAvx2 = {"avx2", load_u8, load_f32, store_u8, store_f32, split_u8, merge_u8};

}  // namespace nnjpeg
