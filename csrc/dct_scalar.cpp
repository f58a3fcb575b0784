// Scalar reference kernel: a separable 8x8 DCT-II as two passes of 8-point transforms, each split
// into even and odd halves (x[n] +/- x[7-n]) so a pass costs 32 multiply-adds instead of 64.
#include <cmath>

#include "kernels.h"

namespace nnjpeg {

const float kDct[8][8] = {
#define NNJPEG_C(k, n) static_cast<float>(((k) == 0 ? 0.35355339059327373 : 0.5) * \
                                          std::cos((2 * (n) + 1) * (k) * 3.14159265358979323846 / 16))
#define NNJPEG_ROW(k) {NNJPEG_C(k, 0), NNJPEG_C(k, 1), NNJPEG_C(k, 2), NNJPEG_C(k, 3), \
                       NNJPEG_C(k, 4), NNJPEG_C(k, 5), NNJPEG_C(k, 6), NNJPEG_C(k, 7)}
    NNJPEG_ROW(0), NNJPEG_ROW(1), NNJPEG_ROW(2), NNJPEG_ROW(3),
    NNJPEG_ROW(4), NNJPEG_ROW(5), NNJPEG_ROW(6), NNJPEG_ROW(7),
};

const float kFwd[8][8] = {
    {1, 1, 1, 1, 1, 1, 1, 1},
    NNJPEG_ROW(1), NNJPEG_ROW(2), NNJPEG_ROW(3),
    {1, -1, -1, 1, 1, -1, -1, 1},
    NNJPEG_ROW(5), NNJPEG_ROW(6), NNJPEG_ROW(7),
#undef NNJPEG_ROW
#undef NNJPEG_C
};

QuantTable make_quant_table(const float* step64) {
  // g(k) of QuantTable, in double so fstep is the correctly rounded step / (g(v) g(u)).
  auto g = [](int k) { return (k == 0 || k == 4) ? 0.35355339059327373 : 1.0; };
  QuantTable qt;
  for (int v = 0; v < 8; ++v) {
    for (int u = 0; u < 8; ++u) {
      const float s = step64[v * 8 + u];
      const float fs = static_cast<float>(static_cast<double>(s) / (g(v) * g(u)));
      qt.step[v * 8 + u] = qt.step_t[u * 8 + v] = s;
      qt.fstep[v * 8 + u] = qt.fstep_t[u * 8 + v] = fs;
    }
  }
  return qt;
}

namespace {

// libjpeg's convention for quantization (jcdctmgr.c): ties go away from zero.
inline float round_half_away(float x) {
  const float t = std::trunc(x);
  return std::fabs(x - t) >= 0.5f ? t + std::copysign(1.0f, x) : t;
}

// y[k] = sum_n F[k][n] x[n] (F: kFwd), strided in and out.
inline void fdct8(const float* x, std::ptrdiff_t xs, float* y, std::ptrdiff_t ys) {
  float e[4], o[4];
  for (int n = 0; n < 4; ++n) {
    e[n] = x[n * xs] + x[(7 - n) * xs];
    o[n] = x[n * xs] - x[(7 - n) * xs];
  }
  for (int k = 0; k < 8; k += 2) {
    float se = 0.0f, so = 0.0f;
    for (int n = 0; n < 4; ++n) {
      se += kFwd[k][n] * e[n];
      so += kFwd[k + 1][n] * o[n];
    }
    y[k * ys] = se;
    y[(k + 1) * ys] = so;
  }
}

// x[n] = sum_k C[k][n] y[k]; C[k][7-n] = (-1)^k C[k][n] gives the even/odd split.
inline void idct8(const float* y, std::ptrdiff_t ys, float* x, std::ptrdiff_t xs) {
  for (int n = 0; n < 4; ++n) {
    float se = 0.0f, so = 0.0f;
    for (int k = 0; k < 8; k += 2) {
      se += kDct[k][n] * y[k * ys];
      so += kDct[k + 1][n] * y[(k + 1) * ys];
    }
    x[n * xs] = se + so;
    x[(7 - n) * xs] = se - so;
  }
}

}  // namespace

void roundtrip_band_scalar(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  float blk[64], tmp[64];
  for (int b = 0; b < nblocks; ++b) {
    float* p = band + 8 * b;
    for (int r = 0; r < 8; ++r) {
      for (int c = 0; c < 8; ++c) blk[r * 8 + c] = p[r * stride + c] - 128.0f;
    }
    for (int r = 0; r < 8; ++r) fdct8(blk + r * 8, 1, tmp + r * 8, 1);
    for (int c = 0; c < 8; ++c) fdct8(tmp + c, 8, blk + c, 8);
    for (int i = 0; i < 64; ++i) blk[i] = round_half_away(blk[i] / qt.fstep[i]) * qt.step[i];
    for (int c = 0; c < 8; ++c) idct8(blk + c, 8, tmp + c, 8);
    for (int r = 0; r < 8; ++r) idct8(tmp + r * 8, 1, blk + r * 8, 1);
    for (int r = 0; r < 8; ++r) {
      for (int c = 0; c < 8; ++c) {
        const float v = round_half_away(blk[r * 8 + c] + 128.0f);
        // <= rather than <: round_half_away leaves -0.0 for (-0.5, 0), which must clamp to +0.
        p[r * stride + c] = v <= 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
      }
    }
  }
}

}  // namespace nnjpeg
