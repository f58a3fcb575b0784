// Block kernels of the 8x8 DCT round trip. No SIMD types here: each variant lives in its own
// translation unit compiled with its own target flags, and dispatch.cpp picks one at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nnjpeg {

// Exact quantization ties. The DCT-II basis rows 0 and 4 are c0 * (+-1) with c0 = 1/sqrt(8), so the
// coefficients (0,0), (0,4), (4,0) and (4,4) of whole-number samples are whole numbers / 8 and land
// exactly on quantization ties (k + 1/2 steps) about once per 8 * step blocks. To round those ties
// the same way every time (away from zero), the forward passes use F = C with rows 0 and 4 divided by
// c0 (exact +-1 weights, exact sums), and quantization divides the unscaled coefficient T = F X F^T
// by fstep = step / (g(v) g(u)), g(0) = g(4) = c0, else 1: fstep is 8 * step (exact) at those four
// frequencies, and IEEE division is correctly rounded, so an exact tie stays exact.
struct QuantTable {
  alignas(64) float step[64];     // dequantization, natural (row-major, [v][u]) order
  alignas(64) float fstep[64];    // quantization divisor of the unscaled T, natural order
  alignas(64) float step_t[64];   // the same two, transposed ([u][v]), for kernels whose
  alignas(64) float fstep_t[64];  // coefficients come out transposed from the second pass
};

QuantTable make_quant_table(const float* step64);

// Round trip of `nblocks` horizontally adjacent 8x8 blocks held in a band of 8 rows (row stride
// `stride` floats). In: samples in [0, 255]. Out, in place: level shift by -128, orthonormal DCT-II,
// q = round_half_away(coef / step) (computed as T / fstep, see QuantTable), coef = q * step, inverse
// DCT, +128, round half away from zero, clamp to [0, 255]; the results are whole numbers.
using BandKernel = void (*)(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);

void roundtrip_band_scalar(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#ifdef NNJPEG_HAVE_AVX2
void roundtrip_band_avx2(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#endif
#ifdef NNJPEG_HAVE_AVX512
void roundtrip_band_avx512(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#endif

// The pipeline's other per-sample loops: one image row of `n` pixels with `channels` (1 or 3)
// interleaved samples to and from one float row per channel. Loads give uint8 samples as is and
// float32 ones times 255 (no rounding); stores take whole numbers in [0, 255] and write them as
// uint8, or divided by 255 as float32.
struct RowIo {
  void (*load_u8)(const std::uint8_t* src, int channels, std::ptrdiff_t n, float* const* dst);
  void (*load_f32)(const float* src, int channels, std::ptrdiff_t n, float* const* dst);
  void (*store_u8)(const float* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst);
  void (*store_f32)(const float* const* src, int channels, std::ptrdiff_t n, float* dst);
};

extern const RowIo kRowIoScalar;
#ifdef NNJPEG_HAVE_AVX2
extern const RowIo kRowIoAvx2;
#endif
#ifdef NNJPEG_HAVE_AVX512
extern const RowIo kRowIoAvx512;
#endif

struct Kernel {
  const char* name;
  BandKernel fn;
  const RowIo* io;
};

// The kernel chosen once per process: the widest one the CPU supports, or "scalar" when the
// environment variable NNJPEG_FORCE_SCALAR is set to a non-empty value other than "0".
const Kernel& active_kernel();
std::vector<std::string> compiled_kernels();
// Every kernel this CPU can run (tests compare them against each other).
std::vector<Kernel> runnable_kernels();

// The orthonormal 8-point DCT-II matrix, C[k][n] = s(k) cos((2n + 1) k pi / 16), and the forward
// matrix F of QuantTable (rows 0 and 4 of C divided by c0: exactly +-1).
extern const float kDct[8][8];
extern const float kFwd[8][8];

}  // namespace nnjpeg
