// AVX-512 kernel: two horizontally adjacent 8x8 blocks per register set, row r of both blocks in
// one zmm (lanes 0-7 block b, lanes 8-15 block b + 1), and two sets (four blocks) per pass, run a
// stage apart (aan::roundtrip_skewed). The passes are those of the AVX2 kernel (aan-inl.h across
// the 8 registers, columns first, two transposes per block, no FMA, so bit-identical to the
// scalar kernel); the transposes stay within each 256-bit half. Band tails go two blocks at a
// time, then a lone block through the same code with the upper half masked off. The uint8 variant
// widens bytes on load and packs them on store, as the AVX2 one. The register-set code is
// dct_avx512-inl.h, shared with the interleaved-row variant (dct_avx512vbmi.cpp).
#include "dct_avx512-inl.h"

namespace nnjpeg {

using avx512::load_u8x16;
using avx512::round_clamp_pixel;
using avx512::roundtrip_band;
using avx512::store_u8x16x4;

void roundtrip_band_avx512(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  roundtrip_band(
      nblocks, qt,
      [=](int b, int i, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, band + 8 * b + i * stride); },
      [=](int b, int i, const __m512* r, __mmask16 mask) {
        for (int k = 0; k < 4; ++k) _mm512_mask_storeu_ps(band + 8 * b + (i + k) * stride, mask, round_clamp_pixel(r[k]));
      });
}

void roundtrip_band_u8_avx512(std::uint8_t* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  roundtrip_band(
      nblocks, qt, [=](int b, int i, __mmask16 mask) { return load_u8x16(band + 8 * b + i * stride, mask); },
      [=](int b, int i, const __m512* r, __mmask16 mask) { store_u8x16x4(r, band + 8 * b + i * stride, stride, mask); });
}

}  // namespace nnjpeg
