// AVX2 kernel: one 8x8 block at a time, its 8 rows held in 8 ymm registers (lanes = columns).
// Each 1-D pass runs *across* the registers, so 8 lines are transformed at once with no horizontal
// arithmetic; a transpose switches between rows and columns. The pass is the scalar kernel's
// even/odd split (x[n] +/- x[7-n], then two 4x4 products) with the same separate multiplies and
// adds in the same order, and no FMA (built with -ffp-contract=off): the results are bit-identical
// to the scalar kernel, so the choice of kernel never changes an output.
#include <immintrin.h>

#include "kernels.h"

namespace nnjpeg {
namespace {

inline __m256 fwd_coef(int k, int n) { return _mm256_broadcast_ss(&kFwd[k][n]); }
inline __m256 inv_coef(int k, int n) { return _mm256_broadcast_ss(&kDct[k][n]); }

// y[k] = sum_n F[k][n] x[n] (F: kFwd) for the 8 registers x[0..7], in place. Rows 0 and 4 of F
// are +-1, so their sums are plain additions: x * 1 and 0 + x are exact, and a + (-b) == a - b, so
// this is still bit-identical to the scalar kernel's multiply-add loop.
inline void fdct8(__m256 x[8]) {
  __m256 e[4], o[4];
  for (int n = 0; n < 4; ++n) {
    e[n] = _mm256_add_ps(x[n], x[7 - n]);
    o[n] = _mm256_sub_ps(x[n], x[7 - n]);
  }
  for (int k = 1; k < 8; k += 2) {
    __m256 so = _mm256_mul_ps(fwd_coef(k, 0), o[0]);
    for (int n = 1; n < 4; ++n) so = _mm256_add_ps(so, _mm256_mul_ps(fwd_coef(k, n), o[n]));
    x[k] = so;
  }
  for (int k = 2; k < 8; k += 4) {
    __m256 se = _mm256_mul_ps(fwd_coef(k, 0), e[0]);
    for (int n = 1; n < 4; ++n) se = _mm256_add_ps(se, _mm256_mul_ps(fwd_coef(k, n), e[n]));
    x[k] = se;
  }
  x[0] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(e[0], e[1]), e[2]), e[3]);
  x[4] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(e[0], e[1]), e[2]), e[3]);
}

// x[n] = sum_k C[k][n] y[k], in place; C[k][7-n] = (-1)^k C[k][n] gives the even/odd split.
inline void idct8(__m256 y[8]) {
  __m256 x[8];
  for (int n = 0; n < 4; ++n) {
    __m256 se = _mm256_mul_ps(inv_coef(0, n), y[0]);
    __m256 so = _mm256_mul_ps(inv_coef(1, n), y[1]);
    for (int k = 2; k < 8; k += 2) {
      se = _mm256_add_ps(se, _mm256_mul_ps(inv_coef(k, n), y[k]));
      so = _mm256_add_ps(so, _mm256_mul_ps(inv_coef(k + 1, n), y[k + 1]));
    }
    x[n] = _mm256_add_ps(se, so);
    x[7 - n] = _mm256_sub_ps(se, so);
  }
  for (int i = 0; i < 8; ++i) y[i] = x[i];
}

// 8x8 transpose in three shuffle stages (unpack pairs, shuffle quads, swap 128-bit halves).
inline void transpose8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}

// Round half away from zero, exactly: trunc(x + copysign(0.5 - 2^-25, x)). Adding the largest
// float below 0.5 (not 0.5 itself) keeps x = k + 0.49999997 from rounding up to k + 1 in the sum,
// and for |x| >= 2^23 the addend is below half an ulp so x is returned unchanged.
inline __m256 round_half_away(__m256 x) {
  const __m256 bias = _mm256_or_ps(_mm256_and_ps(x, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(0.49999997f));
  return _mm256_round_ps(_mm256_add_ps(x, bias), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
}

// The output rounding: v = x + 128 is a multiple of 2^-17 below 256, so v + 0.5 is exact there and
// floor(v + 0.5) equals round-half-away for every v that survives the clamp; below zero both
// clamp to +0.
inline __m256 round_clamp_pixel(__m256 x) {
  const __m256 v = _mm256_add_ps(_mm256_add_ps(x, _mm256_set1_ps(128.0f)), _mm256_set1_ps(0.5f));
  const __m256 f = _mm256_round_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  return _mm256_min_ps(_mm256_max_ps(f, _mm256_setzero_ps()), _mm256_set1_ps(255.0f));
}

void roundtrip_block(float* p, std::ptrdiff_t stride, const QuantTable& qt) {
  const __m256 shift = _mm256_set1_ps(128.0f);
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_sub_ps(_mm256_loadu_ps(p + i * stride), shift);
  // Same pass order and the same separate multiplies and adds as the scalar kernel, so the
  // coefficients are bit-identical before quantization (a discontinuous step: one flipped tie
  // would move a whole block by up to step / 8): rows first, then columns.
  transpose8(r);
  fdct8(r);
  transpose8(r);
  fdct8(r);
  // Register v now holds vertical frequency v, lane u horizontal frequency u: natural order.
  // Divide (not multiply by 1 / fstep) as the scalar kernel does: exact ties stay exact.
  for (int v = 0; v < 8; ++v) {
    const __m256 q = round_half_away(_mm256_div_ps(r[v], _mm256_load_ps(qt.fstep + 8 * v)));
    r[v] = _mm256_mul_ps(q, _mm256_load_ps(qt.step + 8 * v));
  }
  idct8(r);
  transpose8(r);
  idct8(r);
  transpose8(r);
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(p + i * stride, round_clamp_pixel(r[i]));
}

}  // namespace

void roundtrip_band_avx2(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  for (int b = 0; b < nblocks; ++b) roundtrip_block(band + 8 * b, stride, qt);
}

}  // namespace nnjpeg
