// AVX2 kernel: an 8x8 block's 8 rows held in 8 ymm registers (lanes = columns). Each 1-D pass runs
// *across* the registers, so 8 lines are transformed at once with no horizontal arithmetic. The
// first pass works on the rows as loaded (a column transform), one transpose turns the result for
// the row transform, and the coefficients stay transposed ([u][v], the order of the QuantTable
// entries); the inverse runs the mirror image, so a block costs two transposes. Blocks go two at a
// time, a stage apart (aan::roundtrip_skewed): one block is a single dependency chain of some 300
// instructions, longer than the core's reorder window, so a lone block leaves most of the
// execution units idle (two blocks in step measured 15-25 % faster than one on Zen 3). The passes
// are aan-inl.h, as in the scalar kernel, with no FMA (-ffp-contract=off): the results are
// bit-identical to it, so the choice of kernel never changes an output. The uint8 variant runs
// the same block code with bytes widened on load and packed (with saturation) on store, so uint8
// images skip the float band and its conversions.
#include <immintrin.h>

#include "aan-inl.h"
#include "kernels.h"

namespace nnjpeg {
namespace {


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

// Round half to even, the rounding of every coefficient that cannot sit on an exact tie (kernels.h).
inline __m256 round_nearest(__m256 x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

// The output rounding of the scalar kernel: floor(x + 0.49999997), clamped to [0, 255]. max
// returns its second operand for -0 against +0, so a -0 floor clamps to +0.
inline __m256 round_clamp_pixel(__m256 x) {
  const __m256 f = _mm256_round_ps(_mm256_add_ps(x, _mm256_set1_ps(0.49999997f)),
                                   _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  return _mm256_min_ps(_mm256_max_ps(f, _mm256_setzero_ps()), _mm256_set1_ps(255.0f));
}

// Row i of a block as floats: 8 bytes widened and converted.
inline __m256 u8x8_to_float(const std::uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// Two output rows (before round_clamp_pixel) as 8 bytes each: floor(x + 0.49999997) clamped to
// [0, 255], as a truncation and the packs' saturation. They agree: a sum in (-1, 0) truncates to 0
// and floors to -1, and both clamp to 0; packus_epi16 reads its input as signed, which these sums
// (|x| < 2^15) never exceed.
inline void store_u8x8x2(__m256 a, __m256 b, std::uint8_t* pa, std::uint8_t* pb) {
  const __m256 h = _mm256_set1_ps(0.49999997f);
  const __m256i w = _mm256_packus_epi32(_mm256_cvttps_epi32(_mm256_add_ps(a, h)),
                                        _mm256_cvttps_epi32(_mm256_add_ps(b, h)));
  // w's 128-bit halves: (a0-3, b0-3) and (a4-7, b4-7) as 16-bit words.
  const __m128i v = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
  const __m128i rows = _mm_shuffle_epi32(v, _MM_SHUFFLE(3, 1, 2, 0));  // a0-7, b0-7
  _mm_storel_epi64(reinterpret_cast<__m128i*>(pa), rows);
  _mm_storeh_pd(reinterpret_cast<double*>(pb), _mm_castsi128_pd(rows));
}

// Level shift of T(0,0) (lane 0 of register 0) by d.
inline __m256 shift_dc(__m256 r, float d) { return _mm256_add_ps(r, _mm256_setr_ps(d, 0, 0, 0, 0, 0, 0, 0)); }

// Register u holds horizontal frequency u, lane v vertical frequency v. Only lanes 0 and 4 of
// registers 0 and 4 are divided and rounded half away from zero (exact ties, kernels.h); every
// other level is rounded half to even.
inline __m256 quantize(__m256 r, int u, const QuantTable& qt) {
  __m256 q = round_nearest(_mm256_mul_ps(r, _mm256_load_ps(qt.mul + 8 * u)));
  if (u == 0 || u == 4) {
    q = _mm256_blend_ps(q, round_half_away(_mm256_div_ps(r, _mm256_load_ps(qt.div + 8 * u))), 0x11);
  }
  return _mm256_mul_ps(q, _mm256_load_ps(qt.deq + 8 * u));
}

// One block per register set, for aan-inl.h.
struct Avx2 {
  using V = __m256;
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V set1(float a) { return _mm256_set1_ps(a); }
  static void transpose(V r[8]) { transpose8(r); }
};

// The quantization step of a block's round trip, in place: level shift, levels times their steps,
// level shift back.
inline void quantize_block(__m256 c[8], const QuantTable& qt) {
  c[0] = shift_dc(c[0], -64.0f * 128.0f);
  for (int u = 0; u < 8; ++u) c[u] = quantize(c[u], u, qt);
  c[0] = shift_dc(c[0], 128.0f);
}

// A band of blocks two at a time (aan::roundtrip_skewed), then a lone last one: load(p, i) gives
// row i of the block at p as floats, store(p, i, row i, row i + 1) takes its transformed rows two
// at a time.
template <class T, class Load, class Store>
inline void roundtrip_band(T* band, int nblocks, const QuantTable& qt, Load load, Store store) {
  auto quant = [&qt](__m256* c) { quantize_block(c, qt); };
  int b = 0;
  for (; b + 2 <= nblocks; b += 2) {
    T* p = band + 8 * b;
    __m256 x[8], y[8];
    for (int i = 0; i < 8; ++i) x[i] = load(p, i);
    aan::roundtrip_skewed<Avx2>(
        x, y, quant, [&] { for (int i = 0; i < 8; ++i) y[i] = load(p + 8, i); },
        [&] { for (int i = 0; i < 8; i += 2) store(p, i, x[i], x[i + 1]); });
    for (int i = 0; i < 8; i += 2) store(p + 8, i, y[i], y[i + 1]);
  }
  if (b < nblocks) {
    T* p = band + 8 * b;
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = load(p, i);
    aan::roundtrip_rows<Avx2>(r, quant);
    for (int i = 0; i < 8; i += 2) store(p, i, r[i], r[i + 1]);
  }
}

}  // namespace

void roundtrip_band_u8_avx2(std::uint8_t* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  roundtrip_band(
      band, nblocks, qt, [stride](const std::uint8_t* p, int i) { return u8x8_to_float(p + i * stride); },
      [stride](std::uint8_t* p, int i, __m256 a, __m256 b) { store_u8x8x2(a, b, p + i * stride, p + (i + 1) * stride); });
}

void roundtrip_band_avx2(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  roundtrip_band(
      band, nblocks, qt, [stride](const float* p, int i) { return _mm256_loadu_ps(p + i * stride); },
      [stride](float* p, int i, __m256 a, __m256 b) {
        _mm256_storeu_ps(p + i * stride, round_clamp_pixel(a));
        _mm256_storeu_ps(p + (i + 1) * stride, round_clamp_pixel(b));
      });
}

}  // namespace nnjpeg
