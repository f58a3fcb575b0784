// Run-time kernel selection (CPUID through the compiler's builtins), done once per process.
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace nnjpeg {
namespace {

bool force_scalar() {
  const char* v = std::getenv("NNJPEG_FORCE_SCALAR");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

bool cpu_has_avx2() {
#if defined(NNJPEG_HAVE_AVX2)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(NNJPEG_HAVE_AVX512)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

bool cpu_has_avx512vbmi() {
#if defined(NNJPEG_HAVE_AVX512)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vbmi");
#else
  return false;
#endif
}

}  // namespace

std::vector<Kernel> runnable_kernels() {
  std::vector<Kernel> ks{{"scalar", roundtrip_band_scalar, roundtrip_band_u8_scalar, &kRowIoScalar}};
#ifdef NNJPEG_HAVE_AVX2
  if (cpu_has_avx2()) ks.push_back({"avx2", roundtrip_band_avx2, roundtrip_band_u8_avx2, &kRowIoAvx2});
#endif
#ifdef NNJPEG_HAVE_AVX512
  if (cpu_has_avx512()) {
    const bool vbmi = cpu_has_avx512vbmi();
    ks.push_back({"avx512", roundtrip_band_avx512, roundtrip_band_u8_avx512, vbmi ? &kRowIoAvx512Vbmi : &kRowIoAvx2,
                  vbmi ? roundtrip_band_rgb8_avx512vbmi : nullptr});
  }
#endif
  return ks;
}

const Kernel& active_kernel() {
  static const Kernel k = force_scalar() ? runnable_kernels().front() : runnable_kernels().back();
  return k;
}

std::vector<std::string> compiled_kernels() {
  std::vector<std::string> names{"scalar"};
#ifdef NNJPEG_HAVE_AVX2
  names.emplace_back("avx2");
#endif
#ifdef NNJPEG_HAVE_AVX512
  names.emplace_back("avx512");
#endif
  return names;
}

}  // namespace nnjpeg
