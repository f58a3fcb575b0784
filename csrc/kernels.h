// Block kernels of the 8x8 DCT round trip. No SIMD types here: each variant lives in its own
// translation unit compiled with its own target flags, and dispatch.cpp picks one at run time.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace nnjpeg {

// A quantization table prepared once per call: steps and reciprocals, in natural (row-major,
// [vertical][horizontal] frequency) order and transposed, so SIMD kernels that leave coefficients
// transposed between their two 1-D passes can quantize without a shuffle.
struct QuantTable {
  alignas(64) float step[64];
  alignas(64) float inv[64];
  alignas(64) float step_t[64];
  alignas(64) float inv_t[64];
};

QuantTable make_quant_table(const float* step64);

// Round trip of `nblocks` horizontally adjacent 8x8 blocks held in a band of 8 rows (row stride
// `stride` floats). In: samples in [0, 255]. Out, in place: level shift by -128, orthonormal DCT-II,
// q = round_half_away(coef / step), coef = q * step, inverse DCT, +128, round half away from zero,
// clamp to [0, 255]; the results are whole numbers.
using BandKernel = void (*)(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);

void roundtrip_band_scalar(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#ifdef NNJPEG_HAVE_AVX2
void roundtrip_band_avx2(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#endif
#ifdef NNJPEG_HAVE_AVX512
void roundtrip_band_avx512(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#endif

struct Kernel {
  const char* name;
  BandKernel fn;
};

// The kernel chosen once per process: the widest one the CPU supports, or "scalar" when the
// environment variable NNJPEG_FORCE_SCALAR is set to a non-empty value other than "0".
const Kernel& active_kernel();
std::vector<std::string> compiled_kernels();
// Every kernel this CPU can run (tests compare them against each other).
std::vector<Kernel> runnable_kernels();

// The orthonormal 8-point DCT-II matrix, C[k][n] = s(k) cos((2n + 1) k pi / 16).
extern const float kDct[8][8];

}  // namespace nnjpeg
