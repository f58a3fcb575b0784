// csrc/cuda/roundtrip.cu compiled as C++ for the host emulation (cuda_runtime.h beside this file).
#include "cuda/roundtrip.cu"
