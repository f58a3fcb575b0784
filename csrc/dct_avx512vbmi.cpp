// The AVX-512 uint8 kernel on interleaved RGB rows: each channel's samples are picked out of the
// image rows as they load and written back into them as they store, so whole bands of 3-channel
// uint8 images skip the byte split into planes and the merge back (roundtrip_planar), which a
// profile put at a fifth of a one-thread call at 224x224. A VBMI byte permute does both: one
// zero-masked permute widens a channel's 16 bytes of a 48-byte row span to 16 dwords, and one
// permute per row puts the packed results at every third byte, which a masked store writes. The
// loads and stores take back part of what the split and merge cost: on a 2-vCPU Xeon VM, one
// thread, medians over alternating runs of the two builds, 64 224x224x3 images 3.86 -> 3.71 ms and
// 1024 32x32x3 ones 1.55 -> 1.40 ms. The block code is the AVX-512 kernel's (dct_avx512-inl.h), so
// the results are bit-identical to the planar kernels'.
#include <cstdint>

#include "dct_avx512-inl.h"

namespace nnjpeg {
namespace {

// The byte permutes of channel c over 16 interleaved pixels (48 bytes, sample 3 j + c of pixel j).
struct ChannelBytes {
  alignas(64) std::uint8_t load[64];  // byte 4 j: sample 3 j + c (the other bytes are zeroed)
  // Output row k, byte 3 j + c: row k, column j of pack_u8x4's result.
  alignas(64) std::uint8_t store[4][64];
  std::uint64_t pixels16, pixels8;  // bytes 3 j + c of the first 16 / 8 pixels
};

constexpr ChannelBytes channel_bytes(int c) {
  ChannelBytes m{};
  for (int j = 0; j < 16; ++j) {
    m.load[4 * j] = static_cast<std::uint8_t>(3 * j + c);
    for (int k = 0; k < 4; ++k) m.store[k][3 * j + c] = static_cast<std::uint8_t>(avx512::packed_u8_byte(k, j));
    m.pixels16 |= std::uint64_t{1} << (3 * j + c);
    if (j < 8) m.pixels8 |= std::uint64_t{1} << (3 * j + c);
  }
  return m;
}

constexpr ChannelBytes kChannel[3] = {channel_bytes(0), channel_bytes(1), channel_bytes(2)};

// Bands are coded down the images, so the rows 16 below this band's (two bands on: the same
// image's, or the next image's in a contiguous batch) are read and written next. The channel-0
// pass prefetches them as it loads this band: for reading at src (into L2), for writing at dst. A
// band of 224-pixel rows is eight streams of 10.5 lines, too short for the hardware prefetchers to
// follow, so wherever the images or the output were not in the cache every line came on a demand
// miss. A/B on a 2-vCPU AMD EPYC (Zen 5) VM, one thread: 64 224x224x3 images 5.7-6.3 -> 2.7-3.4 ms;
// the layer in tf.data on 256-image batches of 32x32 (a fresh output each) 1.14-1.28 -> 1.08-1.15
// ms per 1024 images; batches already in the cache 5-15 % slower (the prefetches' own cost). Reads
// or writes alone, or one band ahead, gained less; three bands and more, no more. Addresses are
// formed as integers: past the last band they may lie past the arrays, which a prefetch may name
// (it never faults) but pointer arithmetic may not.
constexpr std::ptrdiff_t kPrefetchRows = 16;

inline void prefetch_read(const std::uint8_t* p, std::ptrdiff_t offset) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + offset), _MM_HINT_T1);
}

inline void prefetch_write(std::uint8_t* p, std::ptrdiff_t offset) {
  _m_prefetchw(reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(p) + offset));
}

// Byte 0 of every dword: the load permute's zero mask.
constexpr __mmask64 kDwordLow = 0x1111111111111111;

// The row bytes of 16 pixels (two blocks) or 8 (one): the loads read no further.
constexpr __mmask64 kRowBytes16 = (__mmask64{1} << 48) - 1, kRowBytes8 = (__mmask64{1} << 24) - 1;

}  // namespace

void roundtrip_band_rgb8_avx512vbmi(const std::uint8_t* src, std::ptrdiff_t src_stride, std::uint8_t* dst,
                                    std::ptrdiff_t dst_stride, int nblocks, const QuantTable* qt) {
  const std::ptrdiff_t src_ahead = kPrefetchRows * src_stride, dst_ahead = kPrefetchRows * dst_stride;
  for (int c = 0; c < 3; ++c) {
    const ChannelBytes& m = kChannel[c];
    avx512::roundtrip_band(
        nblocks, qt[c],
        [=, &m](int b, int i, __mmask16 mask) {
          const std::uint8_t* p = src + i * src_stride + 24 * b;
          if (c == 0) {
            prefetch_read(p, src_ahead);
            prefetch_write(dst + i * dst_stride + 24 * b, dst_ahead);
          }
          const __m512i row = _mm512_maskz_loadu_epi8(mask == 0xFFFF ? kRowBytes16 : kRowBytes8, p);
          return _mm512_cvtepi32_ps(_mm512_maskz_permutexvar_epi8(kDwordLow, _mm512_load_si512(m.load), row));
        },
        [=, &m](int b, int i, const __m512* r, __mmask16 mask) {
          const __m512i bytes = avx512::pack_u8x4(r);
          const __mmask64 out = mask == 0xFFFF ? m.pixels16 : m.pixels8;
          for (int k = 0; k < 4; ++k) {
            _mm512_mask_storeu_epi8(dst + (i + k) * dst_stride + 24 * b, out,
                                    _mm512_permutexvar_epi8(_mm512_load_si512(m.store[k]), bytes));
          }
        });
  }
}

}  // namespace nnjpeg
