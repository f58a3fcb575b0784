// AVX-512 kernel: two horizontally adjacent 8x8 blocks per register set, row r of both blocks in
// one zmm (lanes 0-7 block b, lanes 8-15 block b + 1), and two such sets (four blocks) per pass,
// their instructions interleaved as in the AVX2 kernel's pairs: one set's chain alone leaves
// execution units idle (the uint8 kernel measured 32 ns per block with one set, 24 with two, and
// no better with three). The passes are those of the AVX2 kernel (aan-inl.h across the 8
// registers, columns first, two transposes per block, no FMA, so bit-identical to the scalar
// kernel); the transposes stay within each 256-bit half. Band tails go two blocks at a time, then
// a lone block through the same code with the upper half masked off. The uint8 variant widens
// bytes on load and packs them on store, as the AVX2 one.
#include <immintrin.h>

#include "aan-inl.h"
#include "kernels.h"

namespace nnjpeg {
namespace {

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

// Level shift of T(0,0) (lanes 0 and 8 of register 0) by d.
inline __m512 shift_dc(__m512 r, float d) { return _mm512_mask_add_ps(r, 0x0101, r, _mm512_set1_ps(d)); }

// Register u holds horizontal frequency u, lane v (of each half) vertical frequency v: the same
// table rows for both blocks. Every level is rounded half to even here; quant_ties then replaces
// the exact-tie ones.
inline __m512 quantize(__m512 r, int u, const QuantTable& qt) {
  return _mm512_roundscale_ps(_mm512_mul_ps(r, table_row(qt.mul, u)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// The exact-tie levels (kernels.h) of one register set are lanes 0, 4, 8 and 12 of registers 0
// and 4; gathered, those of two sets fill one register, so four blocks take one division rather
// than four (a 512-bit division occupies the divider for many cycles, and stalled the pass).
// `div` holds their divisors in the gathered order (tie_divisors).
struct Ties {
  __m512 div;
};

inline Ties tie_divisors(const QuantTable& qt) {
  const float a = qt.div[0], b = qt.div[4], c = qt.div[32], d = qt.div[36];
  return {_mm512_setr_ps(a, b, a, b, c, d, c, d, a, b, a, b, c, d, c, d)};
}

// Lanes 0, 4, 8, 12 of r0, then of r4, in lanes 0-7.
inline __m512 gather_ties(__m512 r0, __m512 r4) {
  return _mm512_permutex2var_ps(r0, _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28), r4);
}

// Lanes 4k to 4k + 3 of q into lanes 0, 4, 8, 12 of r.
inline __m512 scatter_ties(__m512 r, __m512 q, int k) {
  const __m512i idx = _mm512_setr_epi32(4 * k, 0, 0, 0, 4 * k + 1, 0, 0, 0, 4 * k + 2, 0, 0, 0, 4 * k + 3, 0, 0, 0);
  return _mm512_mask_permutexvar_ps(r, 0x1111, idx, q);
}

// Two blocks per register set.
struct Avx512 {
  using V = __m512;
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V set1(float a) { return _mm512_set1_ps(a); }
  static V row(const float* t, int u) { return table_row(t, u); }
  static void transpose(V r[8]) { transpose8x2(r); }
  static V shift(V r, float d) { return shift_dc(r, d); }
  static V quant(V r, int u, const QuantTable& qt) { return quantize(r, u, qt); }
  // t: the forward transform, q: its levels; the upper half of the division is a copy of the lower.
  static void quant_ties(const V t[8], V q[8], const Ties& ties) {
    const __m512 g = gather_ties(t[0], t[4]);
    const __m512 l = round_half_away(_mm512_div_ps(g, ties.div));
    q[0] = scatter_ties(q[0], l, 0);
    q[4] = scatter_ties(q[4], l, 1);
  }
};

// Four blocks: two register sets, every operation issued for both.
struct Avx512Pair {
  struct V {
    __m512 a, b;
  };
  static V add(V x, V y) { return {_mm512_add_ps(x.a, y.a), _mm512_add_ps(x.b, y.b)}; }
  static V sub(V x, V y) { return {_mm512_sub_ps(x.a, y.a), _mm512_sub_ps(x.b, y.b)}; }
  static V mul(V x, V y) { return {_mm512_mul_ps(x.a, y.a), _mm512_mul_ps(x.b, y.b)}; }
  static V set1(float v) { return {_mm512_set1_ps(v), _mm512_set1_ps(v)}; }
  static V row(const float* t, int u) { return {table_row(t, u), table_row(t, u)}; }
  static void transpose(V r[8]) {
    __m512 a[8], b[8];
    for (int i = 0; i < 8; ++i) a[i] = r[i].a, b[i] = r[i].b;
    transpose8x2(a);
    transpose8x2(b);
    for (int i = 0; i < 8; ++i) r[i] = {a[i], b[i]};
  }
  static V shift(V r, float d) { return {shift_dc(r.a, d), shift_dc(r.b, d)}; }
  static V quant(V r, int u, const QuantTable& qt) { return {quantize(r.a, u, qt), quantize(r.b, u, qt)}; }
  static void quant_ties(const V t[8], V q[8], const Ties& ties) {
    const __m512 g = _mm512_shuffle_f32x4(gather_ties(t[0].a, t[4].a), gather_ties(t[0].b, t[4].b), 0x44);
    const __m512 l = round_half_away(_mm512_div_ps(g, ties.div));
    q[0] = {scatter_ties(q[0].a, l, 0), scatter_ties(q[0].b, l, 2)};
    q[4] = {scatter_ties(q[4].a, l, 1), scatter_ties(q[4].b, l, 3)};
  }
};

// The round trip of the rows r of two blocks (Avx512) or four (Avx512Pair), in place, before the
// output rounding.
template <class D>
inline void roundtrip_rows(typename D::V r[8], const QuantTable& qt, const Ties& ties) {
  aan::roundtrip_rows<D>(r, [&qt, &ties](typename D::V* c) {
    c[0] = D::shift(c[0], -64.0f * 128.0f);
    typename D::V q[8];
    for (int u = 0; u < 8; ++u) q[u] = D::quant(c[u], u, qt);
    D::quant_ties(c, q, ties);
    for (int u = 0; u < 8; ++u) c[u] = D::mul(q[u], D::row(qt.deq, u));
    c[0] = D::shift(c[0], 128.0f);
  });
}

// A band of blocks four at a time, then two, then a lone last one. load(p, i, mask) gives row i
// of blocks p and p + 8 (the latter's lanes zero where mask is 0x00FF); store(p, i, rows, mask)
// takes the transformed rows i to i + 3 of the same blocks.
template <class T, class Load, class Store>
inline void roundtrip_band(T* band, int nblocks, const QuantTable& qt, Load load, Store store) {
  const Ties ties = tie_divisors(qt);
  int b = 0;
  for (; b + 4 <= nblocks; b += 4) {
    T* p = band + 8 * b;
    Avx512Pair::V r[8];
    for (int i = 0; i < 8; ++i) r[i] = {load(p, i, 0xFFFF), load(p + 16, i, 0xFFFF)};
    roundtrip_rows<Avx512Pair>(r, qt, ties);
    for (int i = 0; i < 8; i += 4) {
      const __m512 a[4] = {r[i].a, r[i + 1].a, r[i + 2].a, r[i + 3].a};
      const __m512 c[4] = {r[i].b, r[i + 1].b, r[i + 2].b, r[i + 3].b};
      store(p, i, a, 0xFFFF);
      store(p + 16, i, c, 0xFFFF);
    }
  }
  for (; b < nblocks; b += 2) {
    T* p = band + 8 * b;
    const __mmask16 mask = b + 2 <= nblocks ? 0xFFFF : 0x00FF;
    __m512 r[8];
    for (int i = 0; i < 8; ++i) r[i] = load(p, i, mask);
    roundtrip_rows<Avx512>(r, qt, ties);
    for (int i = 0; i < 8; i += 4) store(p, i, r + i, mask);
  }
}

// Row i of two blocks' bytes as floats; only the first block's 8 bytes are read when mask is 0x00FF.
inline __m512 load_u8x16(const std::uint8_t* p, __mmask16 mask) {
  const __m128i v = mask == 0xFFFF ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))
                                   : _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
}

// Four output rows of two blocks (before round_clamp_pixel) as 16 bytes each: floor(x +
// 0.49999997) clamped to [0, 255], as a truncation and the packs' saturation. They agree: a sum in
// (-1, 0) truncates to 0 and floors to -1, and both clamp to 0; packus_epi16 reads its input as
// signed, which these sums (|x| < 2^15) never exceed. Only the first block's 8 bytes of each row
// are written when mask is 0x00FF.
inline void store_u8x16x4(const __m512 r[4], std::uint8_t* p, std::ptrdiff_t stride, __mmask16 mask) {
  const __m512 h = _mm512_set1_ps(0.49999997f);
  __m512i t[4];
  for (int k = 0; k < 4; ++k) t[k] = _mm512_cvttps_epi32(_mm512_add_ps(r[k], h));
  // 128-bit lane l of the packed bytes holds columns 4l to 4l + 3 of rows 0, 1, 2, 3 (a dword
  // each); the permute gathers each row's four dwords into lane k = row.
  const __m512i bytes = _mm512_packus_epi16(_mm512_packus_epi32(t[0], t[1]), _mm512_packus_epi32(t[2], t[3]));
  const __m512i rows = _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), bytes);
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

}  // namespace

void roundtrip_band_avx512(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  roundtrip_band(
      band, nblocks, qt,
      [stride](const float* p, int i, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, p + i * stride); },
      [stride](float* p, int i, const __m512* r, __mmask16 mask) {
        for (int k = 0; k < 4; ++k) _mm512_mask_storeu_ps(p + (i + k) * stride, mask, round_clamp_pixel(r[k]));
      });
}

void roundtrip_band_u8_avx512(std::uint8_t* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  roundtrip_band(
      band, nblocks, qt,
      [stride](const std::uint8_t* p, int i, __mmask16 mask) { return load_u8x16(p + i * stride, mask); },
      [stride](std::uint8_t* p, int i, const __m512* r, __mmask16 mask) { store_u8x16x4(r, p + i * stride, stride, mask); });
}

}  // namespace nnjpeg
