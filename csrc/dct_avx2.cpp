#include "kernels.h"
namespace nnjpeg {
void roundtrip_band_avx2(float* band, std::ptrdiff_t stride, int nblocks, const QuantTable& qt) {
  roundtrip_band_scalar(band, stride, nblocks, qt);
}
}  // namespace nnjpeg
