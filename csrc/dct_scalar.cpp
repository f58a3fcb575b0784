// Scalar reference kernel: the separable 8x8 round trip of kernels.h with the AAN transforms of
// aan-inl.h, one line at a time. The SIMD kernels run the same operations on 8 or 16 lines at once.
#include <cmath>

#include "aan-inl.h"
#include "kernels.h"

namespace nnjpeg {

// s(k) of aan-inl.h in double: sqrt(8) for k = 0, 4, else 4 cos(k pi / 16), written out as the
// shortest decimals that round-trip, so that nnjpeg/tf_ops.py builds bit-identical tables.
constexpr double kScale[8] = {2.8284271247461903, 3.9231411216129217, 3.695518130045147, 3.325878449210181,
                              2.8284271247461903, 2.222280932078409, 1.5307337294603593, 0.7803612880645133};

QuantTable make_quant_table(const float* step64) {
  // Each entry is correctly rounded once from double; at the exact-tie entries the scale is 8
  // exactly, so div = 8 * step exactly there.
  QuantTable qt;
  for (int v = 0; v < 8; ++v) {
    for (int u = 0; u < 8; ++u) {
      const double step = step64[v * 8 + u];
      const double scale = exact_tie_entry(u, v) ? 8.0 : kScale[v] * kScale[u];
      qt.div[u * 8 + v] = static_cast<float>(scale * step);
      qt.mul[u * 8 + v] = static_cast<float>(1.0 / (scale * step));
      qt.deq[u * 8 + v] = static_cast<float>(step / scale);
    }
  }
  return qt;
}

namespace {

struct Scalar {
  using V = float;
  static float add(float a, float b) { return a + b; }
  static float sub(float a, float b) { return a - b; }
  static float mul(float a, float b) { return a * b; }
  static float set1(float a) { return a; }
};

// libjpeg's convention for quantization (jcdctmgr.c): ties go away from zero. The exact-tie entries.
inline float round_half_away(float x) {
  const float t = std::trunc(x);
  return std::fabs(x - t) >= 0.5f ? t + std::copysign(1.0f, x) : t;
}

// Every other entry (kernels.h): ties to even, whatever the floating-point environment's rounding
// mode (std::nearbyint would follow it). x - t is exact for |x| < 2^23, and larger x are whole.
inline float round_half_even(float x) {
  const float t = std::trunc(x);
  const float f = std::fabs(x - t);
  const bool odd = std::fmod(t, 2.0f) != 0.0f;
  return f > 0.5f || (f == 0.5f && odd) ? t + std::copysign(1.0f, x) : t;
}

// The largest float below 1/2: for x >= 0, floor(x + kHalfBelow) is x rounded half away from zero.
// A fraction below 1/2 leaves the sum more than half an ulp short of the next whole number, so it
// stays below; a fraction of 1/2 or more brings it within 2^-25 of it, and it rounds up to it.
constexpr float kHalfBelow = 0.49999997f;

// The 1-D transform of the 8 samples at x, x + step, ..., x + 7 step, in place.
template <bool kForward>
inline void line(float* x, int step) {
  float v[8];
  for (int i = 0; i < 8; ++i) v[i] = x[i * step];
  if (kForward) {
    aan::forward<Scalar>(v);
  } else {
    aan::inverse<Scalar>(v);
  }
  for (int i = 0; i < 8; ++i) x[i * step] = v[i];
}

}  // namespace

void roundtrip_band_scalar(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  float blk[64];  // [y][x] samples, then [v][u] coefficients, then [y][x] again
  for (int b = 0; b < nblocks; ++b) {
    float* p = band + 8 * b;
    for (int r = 0; r < 8; ++r) {
      for (int c = 0; c < 8; ++c) blk[r * 8 + c] = p[r * stride + c];
    }
    for (int c = 0; c < 8; ++c) line<true>(blk + c, 8);
    for (int v = 0; v < 8; ++v) line<true>(blk + v * 8, 1);
    blk[0] -= 64.0f * 128.0f;
    for (int v = 0; v < 8; ++v) {
      for (int u = 0; u < 8; ++u) {
        const int i = u * 8 + v;
        const float t = blk[v * 8 + u];
        const float q = exact_tie_entry(u, v) ? round_half_away(t / qt.div[i]) : round_half_even(t * qt.mul[i]);
        blk[v * 8 + u] = q * qt.deq[i];
      }
    }
    blk[0] += 128.0f;
    for (int v = 0; v < 8; ++v) line<false>(blk + v * 8, 1);
    for (int c = 0; c < 8; ++c) line<false>(blk + c, 8);
    for (int r = 0; r < 8; ++r) {
      for (int c = 0; c < 8; ++c) {
        const float f = std::floor(blk[r * 8 + c] + kHalfBelow);
        // <= rather than <: the floor of a sum in (-1, 0] may be -0.0, which must clamp to +0.
        p[r * stride + c] = f <= 0.0f ? 0.0f : (f > 255.0f ? 255.0f : f);
      }
    }
  }
}

void roundtrip_band_u8_scalar(std::uint8_t* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  // Through a float copy of one block at a time: the float kernel's results are whole numbers in
  // [0, 255], exact as bytes.
  float blk[64];
  for (int b = 0; b < nblocks; ++b) {
    std::uint8_t* p = band + 8 * b;
    for (int r = 0; r < 8; ++r) {
      for (int c = 0; c < 8; ++c) blk[r * 8 + c] = p[r * stride + c];
    }
    roundtrip_band_scalar(blk, 8, 1, qt);
    for (int r = 0; r < 8; ++r) {
      for (int c = 0; c < 8; ++c) p[r * stride + c] = static_cast<std::uint8_t>(blk[r * 8 + c]);
    }
  }
}

}  // namespace nnjpeg
