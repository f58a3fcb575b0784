// Block kernels of the 8x8 DCT round trip. No SIMD types here: each variant lives in its own
// translation unit compiled with its own target flags, and dispatch.cpp picks one at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nnjpeg {

// Coefficient order. The kernels transform columns first, then rows, so their coefficients come out
// transposed: every table here is in [u][v] order (u horizontal, v vertical frequency), entry
// u * 8 + v.
//
// Exact quantization ties. The forward transform (aan-inl.h) gives T = s(v) s(u) X, X the
// orthonormal DCT-II, with s(0) = s(4) = sqrt(8): the coefficients (0,0), (0,4), (4,0) and (4,4)
// of whole-number samples are sums with +-1 weights, exact whole numbers, and 8 X there; they land
// exactly on quantization ties (k + 1/2 steps) about once per 8 * step blocks. To round those ties
// the same way every time (away from zero), those four are quantized by IEEE division (correctly
// rounded) of T by div = 8 * step (exact), so an exact tie stays exact, and rounded half away from
// zero (libjpeg's convention, jcdctmgr.c). Every other coefficient is multiplied by
// mul = 1 / (s(v) s(u) step), correctly rounded from double, and rounded half to even (one rounding
// instruction): its T went through the transform's irrational multipliers, so a product on k + 1/2
// is an artefact of float rounding, and where the exact value would be a tie the float product is
// off it by rounding error anyway; neither rule is more faithful there.
// Dequantization gives deq = step / (s(v) s(u)) times the level, the input the inverse transform
// expects.
struct QuantTable {
  alignas(64) float div[64];  // s(v) s(u) step; only the four exact-tie entries are used
  alignas(64) float mul[64];  // 1 / (s(v) s(u) step)
  alignas(64) float deq[64];  // step / (s(v) s(u))
};

// Entries of QuantTable quantized by division: u and v in {0, 4}.
#if defined(__CUDACC__)
__host__ __device__
#endif
constexpr bool exact_tie_entry(int u, int v) { return (u & 3) == 0 && (v & 3) == 0; }

QuantTable make_quant_table(const float* step64);

// Round trip of `nblocks` horizontally adjacent 8x8 blocks held in a band of 8 rows (row stride
// `stride` floats). In: samples in [0, 255]. Out, in place: forward transform T (columns, then
// rows) of the samples, T(0,0) -= 64 * 128 (the level shift: only the DC term sees it), levels
// q = round_half_away(T / div or T * mul, see QuantTable), z = q * deq with z(0,0) += 128 (the
// level shift back), inverse transform (rows, then columns), round half away from zero, clamp to
// [0, 255]; the results are whole numbers.
using BandKernel = void (*)(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);

// The same round trip on a band of one uint8 plane (8 rows of `stride` bytes), in place: the
// uint8 pipeline's kernel, which converts samples on the way in and out of the transform instead
// of through a float band. Bit-identical to the BandKernel of the same variant.
using BandKernelU8 = void (*)(std::uint8_t* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);

// The uint8 round trip of an 8-row band of 3-channel images, read from interleaved rows and
// written to them (row strides in bytes; `nblocks` blocks per channel, 24 * nblocks bytes per row;
// qt: one table per channel). dst may be src itself. Bit-identical to splitting the rows into
// planes and running the BandKernelU8 of the same variant on each. Bands are taken to be coded
// down the images: the kernel prefetches the rows 16 below its own, in both arrays.
using BandKernelRgb8 = void (*)(const std::uint8_t* src, std::ptrdiff_t src_stride, std::uint8_t* dst,
                                std::ptrdiff_t dst_stride, int nblocks, const QuantTable* qt);

void roundtrip_band_scalar(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#ifdef NNJPEG_HAVE_AVX2
void roundtrip_band_avx2(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#endif
#ifdef NNJPEG_HAVE_AVX512
void roundtrip_band_avx512(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#endif

void roundtrip_band_u8_scalar(std::uint8_t* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#ifdef NNJPEG_HAVE_AVX2
void roundtrip_band_u8_avx2(std::uint8_t* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
#endif
#ifdef NNJPEG_HAVE_AVX512
void roundtrip_band_u8_avx512(std::uint8_t* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt);
void roundtrip_band_rgb8_avx512vbmi(const std::uint8_t* src, std::ptrdiff_t src_stride, std::uint8_t* dst,
                                    std::ptrdiff_t dst_stride, int nblocks, const QuantTable* qt);
#endif

// One float32 sample as the loads take it: times 255 when in [0, 1] (true), else 0 (false; NaN too).
inline bool scale_sample(float v, float& d) {
  const bool in = v >= 0.0f && v <= 1.0f;
  d = in ? v * 255.0f : 0.0f;
  return in;
}

// The pipeline's other per-sample loops: one image row of `n` pixels with `channels` (1 or 3)
// interleaved samples to and from one float row per channel. Loads give uint8 samples as is and
// float32 ones times 255 (no rounding); stores take whole numbers in [0, 255] and write them as
// uint8, or divided by 255 as float32. load_f32 also checks the range every entry point accepts: it
// returns false if a sample lies outside [0, 1] or is NaN/Inf, and loads such samples as 0 so that
// nothing downstream sees them (the caller then reports an error and drops the output).
struct RowIo {
  const char* name;
  void (*load_u8)(const std::uint8_t* src, int channels, std::ptrdiff_t n, float* const* dst);
  bool (*load_f32)(const float* src, int channels, std::ptrdiff_t n, float* const* dst);
  void (*store_u8)(const float* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst);
  void (*store_f32)(const float* const* src, int channels, std::ptrdiff_t n, float* dst);
  // uint8 rows to and from one uint8 row per channel (the BandKernelU8 pipeline).
  void (*split_u8)(const std::uint8_t* src, int channels, std::ptrdiff_t n, std::uint8_t* const* dst);
  void (*merge_u8)(const std::uint8_t* const* src, int channels, std::ptrdiff_t n, std::uint8_t* dst);
};

// The AVX-512 kernel uses the AVX2 float conversions: splitting and merging three channels of
// floats takes two two-source permutes per 16 samples at 512 bits, against a blend and a one-source
// permute per 8 at 256 bits, and measured over twice as slow on Zen 4 (loads and stores alike). Its
// byte split and merge are AVX-512 VBMI where the CPU has it (two byte permutes per 64 bytes and
// register, rows_avx512.cpp), else AVX2.
extern const RowIo kRowIoScalar;
#ifdef NNJPEG_HAVE_AVX2
extern const RowIo kRowIoAvx2;
#endif
#ifdef NNJPEG_HAVE_AVX512
extern const RowIo kRowIoAvx512Vbmi;
#endif

struct Kernel {
  const char* name;
  BandKernel fn;
  BandKernelU8 fn_u8;
  const RowIo* io;
  BandKernelRgb8 fn_rgb8 = nullptr;  // where the CPU has one (AVX-512 VBMI)
};

// The kernel chosen once per process: the widest one the CPU supports, or "scalar" when the
// environment variable NNJPEG_FORCE_SCALAR is set to a non-empty value other than "0".
const Kernel& active_kernel();
std::vector<std::string> compiled_kernels();
// Every kernel this CPU can run (tests compare them against each other).
std::vector<Kernel> runnable_kernels();

}  // namespace nnjpeg
