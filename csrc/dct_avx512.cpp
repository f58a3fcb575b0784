// AVX-512 kernel: two horizontally adjacent 8x8 blocks per pass, row r of both blocks in one zmm
// (lanes 0-7 block b, lanes 8-15 block b + 1). The passes are those of the AVX2 kernel (aan-inl.h
// across the 8 registers, columns first, two transposes per block, no FMA, so bit-identical to
// the scalar kernel); the transposes stay within each 256-bit half, and a lone last block goes
// through the same code with the upper half masked off.
#include <immintrin.h>

#include "aan-inl.h"
#include "kernels.h"

namespace nnjpeg {
namespace {

struct Avx512 {
  using V = __m512;
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V set1(float a) { return _mm512_set1_ps(a); }
};

// Two independent 8x8 transposes, one per 256-bit half. unpack and shuffle_ps already act per
// 128-bit lane; the last stage pairs 128-bit lanes (0 with 0, 2 with 2 of the two sources) with
// one two-source permute instead of AVX2's permute2f128, which has no per-half 512-bit form.
inline void transpose8x2(__m512 r[8]) {
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
  const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
  __m512 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    s[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    s[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    s[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_permutex2var_ps(s[i], lo, s[i + 4]);
    r[i + 4] = _mm512_permutex2var_ps(s[i], hi, s[i + 4]);
  }
}

// Round half away from zero, exactly: trunc(x + copysign(0.5 - 2^-25, x)). Adding the largest
// float below 0.5 (not 0.5 itself) keeps x = k + 0.49999997 from rounding up to k + 1 in the sum,
// and for |x| >= 2^23 the addend is below half an ulp so x is returned unchanged.
inline __m512 round_half_away(__m512 x) {
  const __m512 half = _mm512_set1_ps(0.49999997f);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  // (x & sign) | half in one ternary-logic op (truth table 0xEA: (A & B) | C).
  const __m512 bias = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
      _mm512_castps_si512(x), _mm512_castps_si512(sign), _mm512_castps_si512(half), 0xEA));
  return _mm512_roundscale_ps(_mm512_add_ps(x, bias), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
}

// The output rounding of the scalar kernel: floor(x + 0.49999997), clamped to [0, 255]. max
// returns its second operand for -0 against +0, so a -0 floor clamps to +0.
inline __m512 round_clamp_pixel(__m512 x) {
  const __m512 f = _mm512_roundscale_ps(_mm512_add_ps(x, _mm512_set1_ps(0.49999997f)),
                                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  return _mm512_min_ps(_mm512_max_ps(f, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
}

inline __m512 table_row(const float* t, int u) { return _mm512_broadcast_f32x8(_mm256_load_ps(t + 8 * u)); }

// Blocks b and b + 1 at p; `mask` 0xFFFF for both, 0x00FF for block b alone (the zeroed upper
// half is transformed too, harmlessly, and never stored).
void roundtrip_pair(float* p, std::ptrdiff_t stride, const QuantTable& qt, __mmask16 mask) {
  __m512 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm512_maskz_loadu_ps(mask, p + i * stride);
  aan::forward<Avx512>(r);
  transpose8x2(r);
  aan::forward<Avx512>(r);
  // Register u now holds horizontal frequency u, lane v (of each half) vertical frequency v; the
  // same table rows for both blocks. The level shift touches only T(0,0) (lanes 0 and 8 of
  // register 0), and only lanes 0 and 4 of each half of registers 0 and 4 are divided and rounded
  // half away from zero (exact ties, kernels.h); every other level is rounded half to even.
  constexpr __mmask16 kDc = 0x0101, kTies = 0x1111;
  r[0] = _mm512_mask_sub_ps(r[0], kDc, r[0], _mm512_set1_ps(64.0f * 128.0f));
  for (int u = 0; u < 8; ++u) {
    __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(r[u], table_row(qt.mul, u)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (u == 0 || u == 4) {
      q = _mm512_mask_mov_ps(q, kTies, round_half_away(_mm512_div_ps(r[u], table_row(qt.div, u))));
    }
    r[u] = _mm512_mul_ps(q, table_row(qt.deq, u));
  }
  r[0] = _mm512_mask_add_ps(r[0], kDc, r[0], _mm512_set1_ps(128.0f));
  aan::inverse<Avx512>(r);
  transpose8x2(r);
  aan::inverse<Avx512>(r);
  for (int i = 0; i < 8; ++i) _mm512_mask_storeu_ps(p + i * stride, mask, round_clamp_pixel(r[i]));
}

}  // namespace

void roundtrip_band_avx512(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  int b = 0;
  for (; b + 2 <= nblocks; b += 2) roundtrip_pair(band + 8 * b, stride, qt, 0xFFFF);
  if (b < nblocks) roundtrip_pair(band + 8 * b, stride, qt, 0x00FF);
}

}  // namespace nnjpeg
