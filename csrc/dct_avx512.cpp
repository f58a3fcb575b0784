// AVX-512 kernel: two horizontally adjacent 8x8 blocks per pass, row r of both blocks in one zmm
// (lanes 0-7 block b, lanes 8-15 block b + 1). The 1-D passes run across the 8 registers exactly as
// in the AVX2 kernel (same operations, same order, no FMA, so bit-identical to the scalar kernel),
// the transposes stay within each 256-bit half, and a lone last block goes through the same code
// with the upper half masked off.
#include <immintrin.h>

#include "kernels.h"

namespace nnjpeg {
namespace {

inline __m512 fwd_coef(int k, int n) { return _mm512_set1_ps(kFwd[k][n]); }
inline __m512 inv_coef(int k, int n) { return _mm512_set1_ps(kDct[k][n]); }

// y[k] = sum_n F[k][n] x[n] (F: kFwd) for the 8 registers x[0..7], in place. Rows 0 and 4 of F
// are +-1, so their sums are plain additions: x * 1 and 0 + x are exact, and a + (-b) == a - b, so
// this is still bit-identical to the scalar kernel's multiply-add loop.
inline void fdct8(__m512 x[8]) {
  __m512 e[4], o[4];
  for (int n = 0; n < 4; ++n) {
    e[n] = _mm512_add_ps(x[n], x[7 - n]);
    o[n] = _mm512_sub_ps(x[n], x[7 - n]);
  }
  for (int k = 1; k < 8; k += 2) {
    __m512 so = _mm512_mul_ps(fwd_coef(k, 0), o[0]);
    for (int n = 1; n < 4; ++n) so = _mm512_add_ps(so, _mm512_mul_ps(fwd_coef(k, n), o[n]));
    x[k] = so;
  }
  for (int k = 2; k < 8; k += 4) {
    __m512 se = _mm512_mul_ps(fwd_coef(k, 0), e[0]);
    for (int n = 1; n < 4; ++n) se = _mm512_add_ps(se, _mm512_mul_ps(fwd_coef(k, n), e[n]));
    x[k] = se;
  }
  x[0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(e[0], e[1]), e[2]), e[3]);
  x[4] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(e[0], e[1]), e[2]), e[3]);
}

// x[n] = sum_k C[k][n] y[k], in place; C[k][7-n] = (-1)^k C[k][n] gives the even/odd split.
inline void idct8(__m512 y[8]) {
  __m512 x[8];
  for (int n = 0; n < 4; ++n) {
    __m512 se = _mm512_mul_ps(inv_coef(0, n), y[0]);
    __m512 so = _mm512_mul_ps(inv_coef(1, n), y[1]);
    for (int k = 2; k < 8; k += 2) {
      se = _mm512_add_ps(se, _mm512_mul_ps(inv_coef(k, n), y[k]));
      so = _mm512_add_ps(so, _mm512_mul_ps(inv_coef(k + 1, n), y[k + 1]));
    }
    x[n] = _mm512_add_ps(se, so);
    x[7 - n] = _mm512_sub_ps(se, so);
  }
  for (int i = 0; i < 8; ++i) y[i] = x[i];
}

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

// The output rounding: v = x + 128 is a multiple of 2^-17 below 256, so v + 0.5 is exact there and
// floor(v + 0.5) equals round-half-away for every v that survives the clamp; below zero both
// clamp to +0.
inline __m512 round_clamp_pixel(__m512 x) {
  const __m512 v = _mm512_add_ps(_mm512_add_ps(x, _mm512_set1_ps(128.0f)), _mm512_set1_ps(0.5f));
  const __m512 f = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  return _mm512_min_ps(_mm512_max_ps(f, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
}

// Blocks b and b + 1 at p; `mask` 0xFFFF for both, 0x00FF for block b alone (the zeroed upper
// half is transformed too, harmlessly, and never stored).
void roundtrip_pair(float* p, std::ptrdiff_t stride, const QuantTable& qt, __mmask16 mask) {
  const __m512 shift = _mm512_set1_ps(128.0f);
  __m512 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, p + i * stride), shift);
  // Same pass order and the same separate multiplies and adds as the scalar kernel, so the
  // coefficients are bit-identical before quantization (a discontinuous step: one flipped tie
  // would move a whole block by up to step / 8): rows first, then columns.
  transpose8x2(r);
  fdct8(r);
  transpose8x2(r);
  fdct8(r);
  // Register v now holds vertical frequency v, lane u (of each half) horizontal frequency u:
  // natural order, the same table for both blocks.
  // Divide (not multiply by 1 / fstep) as the scalar kernel does: exact ties stay exact.
  for (int v = 0; v < 8; ++v) {
    const __m512 fstep = _mm512_broadcast_f32x8(_mm256_load_ps(qt.fstep + 8 * v));
    const __m512 step = _mm512_broadcast_f32x8(_mm256_load_ps(qt.step + 8 * v));
    r[v] = _mm512_mul_ps(round_half_away(_mm512_div_ps(r[v], fstep)), step);
  }
  idct8(r);
  transpose8x2(r);
  idct8(r);
  transpose8x2(r);
  for (int i = 0; i < 8; ++i) _mm512_mask_storeu_ps(p + i * stride, mask, round_clamp_pixel(r[i]));
}

}  // namespace

void roundtrip_band_avx512(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  int b = 0;
  for (; b + 2 <= nblocks; b += 2) roundtrip_pair(band + 8 * b, stride, qt, 0xFFFF);
  if (b < nblocks) roundtrip_pair(band + 8 * b, stride, qt, 0x00FF);
}

}  // namespace nnjpeg
