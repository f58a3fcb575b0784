// The AVX-512 kernel's register-set code, shared by its translation units: dct_avx512.cpp (the
// planar float and uint8 kernels) and dct_avx512vbmi.cpp (uint8 read from and written to
// interleaved RGB rows, which needs VBMI byte permutes and so a target of its own). Each unit
// compiles it with its own flags; inline functions only, in a namespace of their own.
#pragma once

#include <immintrin.h>

#include "aan-inl.h"
#include "kernels.h"

namespace nnjpeg {
namespace avx512 {

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
inline __m256 round_half_away(__m256 x) {
  const __m256 half = _mm256_set1_ps(0.49999997f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  // (x & sign) | half in one ternary-logic op (truth table 0xEA: (A & B) | C).
  const __m256 bias = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(
      _mm256_castps_si256(x), _mm256_castps_si256(sign), _mm256_castps_si256(half), 0xEA));
  return _mm256_round_ps(_mm256_add_ps(x, bias), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
}

// The output rounding of the scalar kernel: floor(x + 0.49999997), clamped to [0, 255]. max
// returns its second operand for -0 against +0, so a -0 floor clamps to +0.
inline __m512 round_clamp_pixel(__m512 x) {
  const __m512 f = _mm512_roundscale_ps(_mm512_add_ps(x, _mm512_set1_ps(0.49999997f)),
                                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  return _mm512_min_ps(_mm512_max_ps(f, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
}

inline __m512 table_row(const float* t, int u) { return _mm512_broadcast_f32x8(_mm256_load_ps(t + 8 * u)); }

// Level shift of T(0,0) (lanes 0 and 8 of register 0) by d.
inline __m512 shift_dc(__m512 r, float d) { return _mm512_mask_add_ps(r, 0x0101, r, _mm512_set1_ps(d)); }

// Register u holds horizontal frequency u, lane v (of each half) vertical frequency v: the same
// table rows for both blocks. Every level is rounded half to even here; quantize_ties then
// replaces the exact-tie ones.
inline __m512 quantize(__m512 r, int u, const QuantTable& qt) {
  return _mm512_roundscale_ps(_mm512_mul_ps(r, table_row(qt.mul, u)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// The exact-tie levels (kernels.h) of a register set are lanes 0, 4, 8 and 12 of registers 0 and
// 4: gathered into 8 lanes they take one 256-bit division instead of two 512-bit ones (a division
// per register stalled the pass). Their divisors, in the gathered order:
inline __m256 tie_divisors(const QuantTable& qt) {
  const float a = qt.div[0], b = qt.div[4], c = qt.div[32], d = qt.div[36];
  return _mm256_setr_ps(a, b, a, b, c, d, c, d);
}

// Lanes 4k to 4k + 3 of l into lanes 0, 4, 8, 12 of r.
inline __m512 scatter_ties(__m512 r, __m512 l, int k) {
  const __m512i idx = _mm512_setr_epi32(4 * k, 0, 0, 0, 4 * k + 1, 0, 0, 0, 4 * k + 2, 0, 0, 0, 4 * k + 3, 0, 0, 0);
  return _mm512_mask_permutexvar_ps(r, 0x1111, idx, l);
}

// t: the forward transform, q: its levels, whose exact-tie lanes are replaced.
inline void quantize_ties(const __m512 t[8], __m512 q[8], __m256 div) {
  const __m512i gather = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
  const __m256 g = _mm512_castps512_ps256(_mm512_permutex2var_ps(t[0], gather, t[4]));
  // Only lanes 0-7 of l are read (scatter_ties).
  const __m512 l = _mm512_castps256_ps512(round_half_away(_mm256_div_ps(g, div)));
  q[0] = scatter_ties(q[0], l, 0);
  q[4] = scatter_ties(q[4], l, 1);
}

// Two blocks per register set, for aan-inl.h.
struct Avx512 {
  using V = __m512;
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V set1(float a) { return _mm512_set1_ps(a); }
  static void transpose(V r[8]) { transpose8x2(r); }
};

// The quantization step of a set's round trip, in place: level shift, levels, exact-tie levels,
// times their steps, level shift back.
inline void quantize_set(__m512 c[8], const QuantTable& qt, __m256 ties) {
  c[0] = shift_dc(c[0], -64.0f * 128.0f);
  __m512 q[8];
  for (int u = 0; u < 8; ++u) q[u] = quantize(c[u], u, qt);
  quantize_ties(c, q, ties);
  for (int u = 0; u < 8; ++u) c[u] = _mm512_mul_ps(q[u], table_row(qt.deq, u));
  c[0] = shift_dc(c[0], 128.0f);
}

// A band of blocks four at a time (two register sets, aan::roundtrip_skewed), then two, then a
// lone last one. load(b, i, mask) gives row i of blocks b and b + 1 (the latter's lanes zero where
// mask is 0x00FF); store(b, i, rows, mask) takes the transformed rows i to i + 3 of the same
// blocks. Blocks are numbered, not addressed: where they lie is the load's and the store's.
template <class Load, class Store>
inline void roundtrip_band(int nblocks, const QuantTable& qt, Load load, Store store) {
  const __m256 ties = tie_divisors(qt);
  auto quant = [&qt, ties](__m512* c) { quantize_set(c, qt, ties); };
  int b = 0;
  for (; b + 4 <= nblocks; b += 4) {
    __m512 x[8], y[8];
    for (int i = 0; i < 8; ++i) x[i] = load(b, i, 0xFFFF);
    aan::roundtrip_skewed<Avx512>(
        x, y, quant, [&] { for (int i = 0; i < 8; ++i) y[i] = load(b + 2, i, 0xFFFF); },
        [&] { for (int i = 0; i < 8; i += 4) store(b, i, x + i, 0xFFFF); });
    for (int i = 0; i < 8; i += 4) store(b + 2, i, y + i, 0xFFFF);
  }
  for (; b < nblocks; b += 2) {
    const __mmask16 mask = b + 2 <= nblocks ? 0xFFFF : 0x00FF;
    __m512 r[8];
    for (int i = 0; i < 8; ++i) r[i] = load(b, i, mask);
    aan::roundtrip_rows<Avx512>(r, quant);
    for (int i = 0; i < 8; i += 4) store(b, i, r + i, mask);
  }
}

// Row i of two blocks' bytes as floats; only the first block's 8 bytes are read when mask is 0x00FF.
inline __m512 load_u8x16(const std::uint8_t* p, __mmask16 mask) {
  const __m128i v = mask == 0xFFFF ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))
                                   : _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
}

// Four output rows of two blocks (before round_clamp_pixel) as bytes: floor(x + 0.49999997)
// clamped to [0, 255], as a truncation and the packs' saturation. They agree: a sum in (-1, 0)
// truncates to 0 and floors to -1, and both clamp to 0; packus_epi16 reads its input as signed,
// which these sums (|x| < 2^15) never exceed. Row k, column j lands at byte packed_u8_byte(k, j):
// 128-bit lane l holds columns 4l to 4l + 3 of rows 0, 1, 2, 3, a dword each.
inline __m512i pack_u8x4(const __m512 r[4]) {
  const __m512 h = _mm512_set1_ps(0.49999997f);
  __m512i t[4];
  for (int k = 0; k < 4; ++k) t[k] = _mm512_cvttps_epi32(_mm512_add_ps(r[k], h));
  return _mm512_packus_epi16(_mm512_packus_epi32(t[0], t[1]), _mm512_packus_epi32(t[2], t[3]));
}

constexpr int packed_u8_byte(int k, int j) { return 16 * (j / 4) + 4 * k + j % 4; }

// pack_u8x4's rows stored 16 bytes each (the permute gathers row k's four dwords into lane k);
// only the first block's 8 bytes of each row are written when mask is 0x00FF.
inline void store_u8x16x4(const __m512 r[4], std::uint8_t* p, std::ptrdiff_t stride, __mmask16 mask) {
  const __m512i rows = _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), pack_u8x4(r));
  const __m128i row[4] = {_mm512_castsi512_si128(rows), _mm512_extracti32x4_epi32(rows, 1),
                          _mm512_extracti32x4_epi32(rows, 2), _mm512_extracti32x4_epi32(rows, 3)};
  for (int k = 0; k < 4; ++k) {
    auto* d = reinterpret_cast<__m128i*>(p + k * stride);
    if (mask == 0xFFFF) {
      _mm_storeu_si128(d, row[k]);
    } else {
      _mm_storel_epi64(d, row[k]);
    }
  }
}

}  // namespace avx512
}  // namespace nnjpeg
