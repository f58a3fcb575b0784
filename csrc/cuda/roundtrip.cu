// CUDA round-trip pipelines: the stages of codec.cpp (pad, JFIF colour transform, libjpeg box
// downsampling, 8x8 block round trip, "fancy" upsampling, crop) as one kernel each. Every float
// operation mirrors codec.cpp and dct_scalar.cpp in value and order (the block transforms are the
// same aan-inl.h), and the file is compiled with --fmad=false (CMakeLists.txt): without fused
// multiply-adds the device rounds exactly where the baseline x86-64 scalar path does, so the two
// agree bit for bit.
#include "cuda/roundtrip.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <vector>

#include "aan-inl.h"
#include "kernels.h"

namespace nnjpeg::cuda {
namespace {

constexpr int kMaxPlanes = 3;
// Four 8x8 blocks of 64 threads each per thread block: 256 threads, and a warp's row of 8 loads
// spans 4 neighbouring blocks (128 contiguous bytes).
constexpr int kBlocksPerCta = 4;
constexpr int kPixelThreads = 256;
// Device memory per chunk of images; larger batches run chunk by chunk.
constexpr std::int64_t kChunkBytes = std::int64_t{256} << 20;

// QuantTable::div, ::mul and ::deq per plane ([u][v] order). Passed by value: kernel parameters
// live in constant memory, and concurrent calls with different tables share no state.
struct Tables {
  float div[kMaxPlanes][64];
  float mul[kMaxPlanes][64];
  float deq[kMaxPlanes][64];
};

struct Lane {
  using V = float;
  __device__ static float add(float a, float b) { return a + b; }
  __device__ static float sub(float a, float b) { return a - b; }
  __device__ static float mul(float a, float b) { return a * b; }
  __device__ static float set1(float a) { return a; }
};

// libjpeg's convention for quantization (jcdctmgr.c): ties go away from zero.
template <class T>
__device__ __forceinline__ T round_half_away(T x) {
  const T t = trunc(x);
  return fabs(x - t) >= T(0.5) ? t + copysign(T(1), x) : t;
}

__device__ __forceinline__ float clamp255(double v) {
  return static_cast<float>(v < 0.0 ? 0.0 : (v > 255.0 ? 255.0 : v));
}

__device__ __forceinline__ float to_sample(std::uint8_t v) { return static_cast<float>(v); }
__device__ __forceinline__ float to_sample(float v) { return v * 255.0f; }
__device__ __forceinline__ void from_sample(float s, std::uint8_t* d) {
  *d = static_cast<std::uint8_t>(s);
}
// IEEE division (nvcc's default -prec-div=true): the result is exactly the CPU's k / 255.
__device__ __forceinline__ void from_sample(float s, float* d) { *d = s / 255.0f; }

// Output k of the forward (kForward) or inverse 8-point pass of aan-inl.h over x[0], x[s], ...,
// x[7s]. Each of the 8 threads of a line runs the whole pass and keeps its own output: the same
// operations as the CPU kernels, without a second barrier; the select loop keeps v in registers.
template <bool kForward>
__device__ __forceinline__ float pass_at(const float* x, int s, int k) {
  float v[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = x[i * s];
  if (kForward) {
    aan::forward<Lane>(v);
  } else {
    aan::inverse<Lane>(v);
  }
  float out = v[0];
#pragma unroll
  for (int i = 1; i < 8; ++i) out = k == i ? v[i] : out;
  return out;
}

// Block round trip over `nplanes` planes of (bh * 8, bw * 8) samples with row stride `pw`, plane
// p at planes + p * plane_stride and quantized with table table_first + p % table_count. Thread
// (x, y, z) holds column x, row y of block z; each 1-D pass gives every thread one output.
__global__ void block_roundtrip_kernel(float* planes, std::int64_t plane_stride, std::int64_t nplanes,
                                       std::int64_t bh, std::int64_t bw, std::int64_t pw,
                                       int table_first, int table_count, Tables tables) {
  // One column of padding: the column passes then read 8 different banks.
  __shared__ float a[kBlocksPerCta][8][9];
  __shared__ float b[kBlocksPerCta][8][9];
  const int c = threadIdx.x, r = threadIdx.y, z = threadIdx.z;
  const std::int64_t per_plane = bh * bw;
  const std::int64_t idx = std::int64_t{blockIdx.x} * kBlocksPerCta + z;
  // Threads past the last block still reach every barrier; they work on zeros and store nothing.
  const bool active = idx < per_plane * nplanes;
  const std::int64_t plane = active ? idx / per_plane : 0;
  const std::int64_t rem = active ? idx - plane * per_plane : 0;
  float* p = planes + plane * plane_stride + (rem / bw) * 8 * pw + (rem % bw) * 8;
  const int t = table_first + static_cast<int>(plane % table_count);
  float(*x)[9] = a[z];
  float(*y)[9] = b[z];

  // The steps of roundtrip_band_scalar (kernels.h): columns first, so thread (c, r) holds T(v = r,
  // u = c) after the second pass; the tables are in [u][v] order.
  x[r][c] = active ? p[r * pw + c] : 0.0f;
  __syncthreads();
  y[r][c] = pass_at<true>(&x[0][c], 9, r);
  __syncthreads();
  float coef = pass_at<true>(&y[r][0], 1, c);
  const bool dc = r == 0 && c == 0;
  if (dc) coef -= 64.0f * 128.0f;
  const int i = c * 8 + r;
  // Division, not a reciprocal, at the four exact-tie entries: correctly rounded, it keeps exact
  // ties exact, which round half away from zero; every other level rounds half to even (rintf;
  // kernels.h).
  const float level = exact_tie_entry(c, r) ? round_half_away(coef / tables.div[t][i]) : rintf(coef * tables.mul[t][i]);
  x[r][c] = dc ? level * tables.deq[t][i] + 128.0f : level * tables.deq[t][i];
  __syncthreads();
  y[r][c] = pass_at<false>(&x[r][0], 1, c);
  __syncthreads();
  const float f = floorf(pass_at<false>(&y[0][c], 9, r) + 0.49999997f);
  const float v = f <= 0.0f ? 0.0f : (f > 255.0f ? 255.0f : f);
  if (active) p[r * pw + c] = v;
}

// Planes [m][ch][hp][wp] from (m, h, w, ch) samples, the last row and column repeated into the
// padding (libjpeg's edge expansion).
template <class T>
__global__ void load_kernel(const T* src, std::int64_t m, std::int64_t h, std::int64_t w,
                            std::int64_t ch, float* planes, std::int64_t hp, std::int64_t wp) {
  const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= m * hp * wp) return;
  const std::int64_t img = i / (hp * wp), rem = i - img * hp * wp;
  const std::int64_t y = rem / wp, x = rem - y * wp;
  const T* s = src + ((img * h + min(y, h - 1)) * w + min(x, w - 1)) * ch;
  for (std::int64_t k = 0; k < ch; ++k) planes[(img * ch + k) * hp * wp + rem] = to_sample(s[k]);
}

// As load_kernel for 3 channels, then JFIF full-range BT.601 (ITU-T T.871) as codec.cpp evaluates
// it: integer weights over 10^3 / 10^6 in double, so exact ties stay exact. Converting a repeated
// edge pixel repeats its conversion, so padding first or after gives the same planes.
template <class T>
__global__ void load_ycc_kernel(const T* src, std::int64_t m, std::int64_t h, std::int64_t w,
                                float* planes, std::int64_t hp, std::int64_t wp) {
  const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= m * hp * wp) return;
  const std::int64_t img = i / (hp * wp), rem = i - img * hp * wp;
  const std::int64_t y = rem / wp, x = rem - y * wp;
  const T* s = src + ((img * h + min(y, h - 1)) * w + min(x, w - 1)) * 3;
  const double r = to_sample(s[0]), g = to_sample(s[1]), b = to_sample(s[2]);
  float* d = planes + img * 3 * hp * wp + rem;
  d[0] = clamp255(round_half_away((299.0 * r + 587.0 * g + 114.0 * b) / 1e3));
  d[hp * wp] = clamp255(round_half_away((-168736.0 * r - 331264.0 * g + 500000.0 * b) / 1e6 + 128.0));
  d[2 * hp * wp] = clamp255(round_half_away((500000.0 * r - 418688.0 * g - 81312.0 * b) / 1e6 + 128.0));
}

// Cb, Cr of planes [m][3][hp][wp] box-filtered into chroma [m][2][hp / vs][wp / hs], with
// libjpeg's alternating rounding bias (jcsample.c h2v1/h2v2).
__global__ void downsample_kernel(const float* planes, float* chroma, std::int64_t m,
                                  std::int64_t hp, std::int64_t wp, int hs, int vs) {
  const std::int64_t ch = hp / vs, cw = wp / hs;
  const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= m * 2 * ch * cw) return;
  const std::int64_t plane = i / (ch * cw), rem = i - plane * ch * cw;
  const std::int64_t y = rem / cw, x = rem - y * cw;
  const std::int64_t img = plane / 2, k = plane - img * 2;
  const float* s = planes + (img * 3 + 1 + k) * hp * wp;
  float sum = 0.0f;
  for (int dy = 0; dy < vs; ++dy) {
    for (int dx = 0; dx < hs; ++dx) sum += s[(y * vs + dy) * wp + x * hs + dx];
  }
  const float bias = vs == 2 ? static_cast<float>(1 + (x & 1)) : static_cast<float>(x & 1);
  chroma[i] = floorf((sum + bias) / static_cast<float>(hs * vs));
}

// libjpeg's "fancy" triangle upsampling (jdsample.c) of chroma [m][2][ch][cw] back into the Cb,
// Cr planes over the (h, w) image; neighbours past the valid (cvh, cvw) region repeat the edge.
__global__ void upsample_kernel(const float* chroma, float* planes, std::int64_t m, std::int64_t h,
                                std::int64_t w, std::int64_t hp, std::int64_t wp, std::int64_t ch,
                                std::int64_t cw, std::int64_t cvh, std::int64_t cvw, int hs, int vs) {
  const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= m * 2 * h * w) return;
  const std::int64_t plane = i / (h * w), rem = i - plane * h * w;
  const std::int64_t y = rem / w, x = rem - y * w;
  const std::int64_t img = plane / 2, k = plane - img * 2;
  const float* src = chroma + plane * ch * cw;
  auto at = [&](std::int64_t yy, std::int64_t xx) {
    yy = max(std::int64_t{0}, min(yy, cvh - 1));
    xx = max(std::int64_t{0}, min(xx, cvw - 1));
    return static_cast<int>(src[yy * cw + xx]);
  };
  const std::int64_t iy = y / vs, ix = x / hs;
  const std::int64_t nx = x % 2 == 0 ? ix - 1 : ix + 1;
  int v;
  if (vs == 1) {
    v = (3 * at(iy, ix) + at(iy, nx) + (x % 2 == 0 ? 1 : 2)) >> 2;
  } else {
    const std::int64_t ny = y % 2 == 0 ? iy - 1 : iy + 1;
    const int near = 3 * at(iy, ix) + at(ny, ix);
    const int far = 3 * at(iy, nx) + at(ny, nx);
    v = (3 * near + far + (x % 2 == 0 ? 8 : 7)) >> 4;
  }
  planes[(img * 3 + 1 + k) * hp * wp + y * wp + x] = static_cast<float>(v);
}

// Planes [m][ch][hp][wp] cropped to a contiguous (m, h, w, ch) result.
template <class T>
__global__ void store_kernel(const float* planes, T* dst, std::int64_t m, std::int64_t h,
                             std::int64_t w, std::int64_t ch, std::int64_t hp, std::int64_t wp) {
  const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= m * h * w * ch) return;
  const std::int64_t pix = i / ch, k = i - pix * ch;
  const std::int64_t img = pix / (h * w), rem = pix - img * h * w;
  const std::int64_t y = rem / w, x = rem - y * w;
  from_sample(planes[(img * ch + k) * hp * wp + y * wp + x], dst + i);
}

// YCbCr planes [m][3][hp][wp] back to RGB (T.871, in double as codec.cpp), cropped to (m, h, w, 3).
template <class T>
__global__ void store_ycc_kernel(const float* planes, T* dst, std::int64_t m, std::int64_t h,
                                 std::int64_t w, std::int64_t hp, std::int64_t wp) {
  const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= m * h * w) return;
  const std::int64_t img = i / (h * w), rem = i - img * h * w;
  const std::int64_t y = rem / w, x = rem - y * w;
  const float* s = planes + img * 3 * hp * wp + y * wp + x;
  const double yy = s[0], cb = s[hp * wp] - 128.0, cr = s[2 * hp * wp] - 128.0;
  T* d = dst + i * 3;
  from_sample(clamp255(round_half_away(yy + 1402.0 * cr / 1e3)), d);
  from_sample(clamp255(round_half_away(yy - (344136.0 * cb + 714136.0 * cr) / 1e6)), d + 1);
  from_sample(clamp255(round_half_away(yy + 1772.0 * cb / 1e3)), d + 2);
}

// Sets *flag when a float32 sample lies outside [0, 1] or is NaN/Inf (the comparison is false
// for NaN), as codec.h's count_out_of_range; a grid-stride loop, so any size takes one launch.
__global__ void check_range_kernel(const float* src, std::int64_t n, unsigned int* flag) {
  const std::int64_t stride = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float v = src[i];
    if (!(v >= 0.0f && v <= 1.0f)) atomicOr(flag, 1u);
  }
}

std::string failure(const char* what, cudaError_t e) {
  return std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" +
         cudaGetErrorString(e) + ")";
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  cudaError_t allocate(std::size_t bytes) { return cudaMalloc(&ptr_, bytes); }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

class Stream {
 public:
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  // Non-blocking: concurrent calls from several Python threads do not serialise on stream 0.
  cudaError_t create() { return cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking); }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

unsigned int grid_for(std::int64_t count, int threads) {
  return static_cast<unsigned int>((count + threads - 1) / threads);
}

#ifdef NNJPEG_CUDA_EMULATION
using emulation::launch;
#else
// kernel<<<grid, block, 0, stream>>>(args...), written as a call: the host emulation
// (emulation/cuda_runtime.h) provides its own.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args... args) {
  kernel<<<grid, block, 0, stream>>>(args...);
}
#endif

std::string check_launch(const char* kernel) {
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return failure(kernel, e);
  return {};
}

struct Geometry {
  bool ycc;
  int hs, vs;
  std::int64_t hp, wp, ch, cw;
};

std::string launch_block_roundtrip(float* planes, std::int64_t plane_stride, std::int64_t nplanes,
                                   std::int64_t ph, std::int64_t pw, int table_first,
                                   int table_count, const Tables& tables, cudaStream_t stream) {
  const std::int64_t blocks = nplanes * (ph / 8) * (pw / 8);
  launch(block_roundtrip_kernel, grid_for(blocks, kBlocksPerCta), dim3(8, 8, kBlocksPerCta), stream,
      planes, plane_stride, nplanes, ph / 8, pw / 8, pw, table_first, table_count, tables);
  return check_launch("block_roundtrip_kernel");
}

// Every stage for `m` images already on the device in `src`; the result goes to `dst`.
template <class T>
std::string launch_pipeline(const T* src, T* dst, float* planes, float* chroma, std::int64_t m,
                            const ImageView& in, const Geometry& g, const Tables& tables,
                            cudaStream_t stream) {
  const std::int64_t pixels = m * g.hp * g.wp;
  std::string err;
  if (!g.ycc) {
    launch(load_kernel<T>, grid_for(pixels, kPixelThreads), kPixelThreads, stream,
        src, m, in.h, in.w, in.c, planes, g.hp, g.wp);
    if (!(err = check_launch("load_kernel")).empty()) return err;
    err = launch_block_roundtrip(planes, g.hp * g.wp, m * in.c, g.hp, g.wp, 0,
                                 static_cast<int>(in.c), tables, stream);
    if (!err.empty()) return err;
    launch(store_kernel<T>, grid_for(m * in.h * in.w * in.c, kPixelThreads), kPixelThreads, stream,
        planes, dst, m, in.h, in.w, in.c, g.hp, g.wp);
    return check_launch("store_kernel");
  }
  launch(load_ycc_kernel<T>, grid_for(pixels, kPixelThreads), kPixelThreads, stream,
      src, m, in.h, in.w, planes, g.hp, g.wp);
  if (!(err = check_launch("load_ycc_kernel")).empty()) return err;
  if (g.hs == 1 && g.vs == 1) {
    err = launch_block_roundtrip(planes, g.hp * g.wp, m * 3, g.hp, g.wp, 0, 3, tables, stream);
    if (!err.empty()) return err;
  } else {
    launch(downsample_kernel, grid_for(m * 2 * g.ch * g.cw, kPixelThreads), kPixelThreads, stream,
        planes, chroma, m, g.hp, g.wp, g.hs, g.vs);
    if (!(err = check_launch("downsample_kernel")).empty()) return err;
    err = launch_block_roundtrip(planes, 3 * g.hp * g.wp, m, g.hp, g.wp, 0, 1, tables, stream);
    if (!err.empty()) return err;
    err = launch_block_roundtrip(chroma, g.ch * g.cw, m * 2, g.ch, g.cw, 1, 2, tables, stream);
    if (!err.empty()) return err;
    const std::int64_t cvh = (in.h + g.vs - 1) / g.vs, cvw = (in.w + g.hs - 1) / g.hs;
    launch(upsample_kernel, grid_for(m * 2 * in.h * in.w, kPixelThreads), kPixelThreads, stream,
        chroma, planes, m, in.h, in.w, g.hp, g.wp, g.ch, g.cw, cvh, cvw, g.hs, g.vs);
    if (!(err = check_launch("upsample_kernel")).empty()) return err;
  }
  launch(store_ycc_kernel<T>, grid_for(m * in.h * in.w, kPixelThreads), kPixelThreads, stream,
      planes, dst, m, in.h, in.w, g.hp, g.wp);
  return check_launch("store_ycc_kernel");
}

// True when the whole view is one C-contiguous run of bytes (size-1 dimensions may have any
// stride, as in NumPy's contiguity flags).
bool contiguous(const ImageView& in, std::int64_t elem) {
  std::int64_t expect = elem;
  const std::int64_t dims[4] = {in.c, in.w, in.h, in.n};
  const std::int64_t strides[4] = {in.sc, in.sw, in.sh, in.sn};
  for (int d = 0; d < 4; ++d) {
    if (dims[d] != 1 && strides[d] != expect) return false;
    expect *= dims[d];
  }
  return true;
}

// Copies images [first, first + count) of a strided view into a contiguous host buffer.
void gather(const ImageView& in, std::int64_t first, std::int64_t count, std::int64_t elem,
            std::uint8_t* dst) {
  for (std::int64_t i = first; i < first + count; ++i) {
    for (std::int64_t y = 0; y < in.h; ++y) {
      const std::uint8_t* row = in.data + i * in.sn + y * in.sh;
      for (std::int64_t x = 0; x < in.w; ++x) {
        for (std::int64_t k = 0; k < in.c; ++k) {
          std::memcpy(dst, row + x * in.sw + k * in.sc, static_cast<std::size_t>(elem));
          dst += elem;
        }
      }
    }
  }
}

Geometry geometry_of(const ImageView& in, Mode mode) {
  Geometry g{};
  g.ycc = mode != Mode::kRgb && in.c == 3;
  g.hs = g.ycc && mode != Mode::kYcc444 ? 2 : 1;
  g.vs = g.ycc && mode == Mode::kYcc420 ? 2 : 1;
  g.hp = (in.h + 8 * g.vs - 1) / (8 * g.vs) * (8 * g.vs);
  g.wp = (in.w + 8 * g.hs - 1) / (8 * g.hs) * (8 * g.hs);
  g.ch = g.hp / g.vs;
  g.cw = g.wp / g.hs;
  return g;
}

Tables tables_of(const float* tables, std::int64_t planes) {
  Tables t{};
  for (std::int64_t p = 0; p < planes; ++p) {
    const QuantTable qt = make_quant_table(tables + 64 * p);
    std::copy(qt.div, qt.div + 64, t.div[p]);
    std::copy(qt.mul, qt.mul + 64, t.mul[p]);
    std::copy(qt.deq, qt.deq + 64, t.deq[p]);
  }
  return t;
}

// Floats of the planes and of the subsampled chroma per image.
std::int64_t plane_elems(const ImageView& in, const Geometry& g) { return (g.ycc ? 3 : in.c) * g.hp * g.wp; }
std::int64_t chroma_elems(const Geometry& g) { return g.ycc ? 2 * g.ch * g.cw : 0; }

template <class T>
std::string run(const ImageView& in, void* out, const Tables& tables, const Geometry& g) {
  constexpr std::int64_t elem = sizeof(T);
  const std::int64_t image_bytes = in.h * in.w * in.c * elem;
  const std::int64_t planes_per_image = plane_elems(in, g);
  const std::int64_t chroma_per_image = chroma_elems(g);
  const std::int64_t per_image =
      2 * image_bytes + (planes_per_image + chroma_per_image) * static_cast<std::int64_t>(sizeof(float));
  const std::int64_t chunk = std::clamp<std::int64_t>(kChunkBytes / per_image, 1, in.n);

  Stream stream;
  if (cudaError_t e = stream.create(); e != cudaSuccess) {
    return failure("cudaStreamCreateWithFlags", e);
  }
  DeviceBuffer src, dst, planes, chroma;
  const auto bytes = [&](std::int64_t n) { return static_cast<std::size_t>(n * chunk); };
  if (cudaError_t e = src.allocate(bytes(image_bytes)); e != cudaSuccess) return failure("cudaMalloc", e);
  if (cudaError_t e = dst.allocate(bytes(image_bytes)); e != cudaSuccess) return failure("cudaMalloc", e);
  if (cudaError_t e = planes.allocate(bytes(planes_per_image * sizeof(float))); e != cudaSuccess) {
    return failure("cudaMalloc", e);
  }
  if (chroma_per_image > 0) {
    if (cudaError_t e = chroma.allocate(bytes(chroma_per_image * sizeof(float))); e != cudaSuccess) {
      return failure("cudaMalloc", e);
    }
  }
  const bool direct = contiguous(in, elem);
  std::vector<std::uint8_t> staging(direct ? 0 : bytes(image_bytes));

  for (std::int64_t first = 0; first < in.n; first += chunk) {
    const std::int64_t m = std::min(chunk, in.n - first);
    const std::uint8_t* host_src = in.data + first * image_bytes;
    if (!direct) {
      gather(in, first, m, elem, staging.data());
      host_src = staging.data();
    }
    if (cudaError_t e = cudaMemcpyAsync(src.as<void>(), host_src, static_cast<std::size_t>(m * image_bytes),
                                        cudaMemcpyHostToDevice, stream.get());
        e != cudaSuccess) {
      return failure("cudaMemcpyAsync (host to device)", e);
    }
    std::string err = launch_pipeline<T>(src.as<const T>(), dst.as<T>(), planes.as<float>(),
                                         chroma.as<float>(), m, in, g, tables, stream.get());
    if (!err.empty()) return err;
    std::uint8_t* host_dst = static_cast<std::uint8_t*>(out) + first * image_bytes;
    if (cudaError_t e = cudaMemcpyAsync(host_dst, dst.as<void>(), static_cast<std::size_t>(m * image_bytes),
                                        cudaMemcpyDeviceToHost, stream.get());
        e != cudaSuccess) {
      return failure("cudaMemcpyAsync (device to host)", e);
    }
    // Also the point where errors of the kernels above surface; the staging buffer is reused next.
    if (cudaError_t e = cudaStreamSynchronize(stream.get()); e != cudaSuccess) {
      return failure("cudaStreamSynchronize", e);
    }
  }
  return {};
}

std::string roundtrip_impl(const ImageView& in, void* out, const float* tables, Mode mode) {
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device is available (cudaGetDeviceCount: ") + cudaGetErrorName(e) +
           ": " + cudaGetErrorString(e) + ")";
  }
  if (count == 0) return "no CUDA device is available (cudaGetDeviceCount found 0 devices)";
  if (in.n == 0) return {};

  const Geometry g = geometry_of(in, mode);
  const Tables t = tables_of(tables, in.c);
  return in.is_float ? run<float>(in, out, t, g) : run<std::uint8_t>(in, out, t, g);
}

// roundtrip_device's scratch: the range flag, then the planes and the chroma of `chunk` images.
constexpr std::size_t kFlagBytes = 256;

std::int64_t scratch_per_image(const ImageView& in, const Geometry& g) {
  return (plane_elems(in, g) + chroma_elems(g)) * static_cast<std::int64_t>(sizeof(float));
}

template <class T>
std::string run_device(const ImageView& in, void* out, const Tables& tables, const Geometry& g,
                       std::uint8_t* scratch, std::int64_t chunk, cudaStream_t stream) {
  const std::int64_t image_elems = in.h * in.w * in.c;
  float* planes = reinterpret_cast<float*>(scratch + kFlagBytes);
  float* chroma = planes + chunk * plane_elems(in, g);
  const T* src = reinterpret_cast<const T*>(in.data);
  T* dst = static_cast<T*>(out);
  for (std::int64_t first = 0; first < in.n; first += chunk) {
    const std::int64_t m = std::min(chunk, in.n - first);
    std::string err = launch_pipeline<T>(src + first * image_elems, dst + first * image_elems, planes, chroma,
                                         m, in, g, tables, stream);
    if (!err.empty()) return err;
  }
  return {};
}

// Whether every float32 sample of `in` (C-contiguous, on the device) lies in [0, 1]; waits for the
// answer, so that out-of-range samples never reach the pipeline.
std::string check_range(const ImageView& in, unsigned int* flag, cudaStream_t stream, bool* in_range) {
  const std::int64_t n = in.n * in.h * in.w * in.c;
  if (cudaError_t e = cudaMemsetAsync(flag, 0, sizeof *flag, stream); e != cudaSuccess) {
    return failure("cudaMemsetAsync", e);
  }
  const unsigned int grid = std::min(grid_for(n, kPixelThreads), 65535u);
  launch(check_range_kernel, grid, kPixelThreads, stream, reinterpret_cast<const float*>(in.data), n, flag);
  if (std::string err = check_launch("check_range_kernel"); !err.empty()) return err;
  unsigned int found = 0;
  if (cudaError_t e = cudaMemcpyAsync(&found, flag, sizeof found, cudaMemcpyDeviceToHost, stream); e != cudaSuccess) {
    return failure("cudaMemcpyAsync (device to host)", e);
  }
  if (cudaError_t e = cudaStreamSynchronize(stream); e != cudaSuccess) return failure("cudaStreamSynchronize", e);
  *in_range = found == 0;
  return {};
}

std::string roundtrip_device_impl(const ImageView& in, void* out, const float* tables, Mode mode, int device,
                                  void* scratch, std::size_t scratch_bytes, bool* in_range) {
  *in_range = true;
  if (in.n == 0) return {};
  const Geometry g = geometry_of(in, mode);
  const auto room = static_cast<std::int64_t>(scratch_bytes) - static_cast<std::int64_t>(kFlagBytes);
  const std::int64_t chunk = std::min(room / scratch_per_image(in, g), in.n);
  if (chunk < 1) return "the scratch given to roundtrip_device holds less than one image";
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) return failure("cudaSetDevice", e);
  // TensorFlow wrote `in`, and last used the memory of `out` and `scratch`, on streams of its own,
  // which its C API does not hand out for its CUDA device (TF_GetStream serves only pluggable
  // devices). Waiting for the whole device orders this call after all of them; finishing before
  // returning orders it before whatever TensorFlow queues next, on any stream.
  if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) return failure("cudaDeviceSynchronize", e);
  Stream stream;
  if (cudaError_t e = stream.create(); e != cudaSuccess) return failure("cudaStreamCreateWithFlags", e);
  // TensorFlow reuses `out` and `scratch` as soon as the kernel returns, so no return, an early
  // one on an error included, leaves work of this call running.
  struct Drain {
    cudaStream_t stream;
    ~Drain() { cudaStreamSynchronize(stream); }
  } drain{stream.get()};
  auto* bytes = static_cast<std::uint8_t*>(scratch);
  if (in.is_float) {
    std::string err = check_range(in, reinterpret_cast<unsigned int*>(bytes), stream.get(), in_range);
    if (!err.empty() || !*in_range) return err;
  }
  const Tables t = tables_of(tables, in.c);
  std::string err = in.is_float ? run_device<float>(in, out, t, g, bytes, chunk, stream.get())
                                : run_device<std::uint8_t>(in, out, t, g, bytes, chunk, stream.get());
  if (!err.empty()) return err;
  // Also the point where errors of the kernels above surface.
  if (cudaError_t e = cudaStreamSynchronize(stream.get()); e != cudaSuccess) {
    return failure("cudaStreamSynchronize", e);
  }
  return {};
}

std::string roundtrip_device_from_host_impl(const ImageView& in, void* out, const float* tables, Mode mode,
                                            std::int64_t chunk, bool* in_range) {
  *in_range = true;
  const std::int64_t elem = in.is_float ? 4 : 1;
  if (!contiguous(in, elem)) return "Expected C-contiguous images for roundtrip_device_from_host";
  if (in.n == 0) return {};
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return failure("cudaGetDevice", e);
  const auto bytes = static_cast<std::size_t>(in.n * in.h * in.w * in.c * elem);
  const std::size_t scratch_bytes = device_scratch_bytes(in, mode, chunk);
  DeviceBuffer src, dst, scratch;
  if (cudaError_t e = src.allocate(bytes); e != cudaSuccess) return failure("cudaMalloc", e);
  if (cudaError_t e = dst.allocate(bytes); e != cudaSuccess) return failure("cudaMalloc", e);
  if (cudaError_t e = scratch.allocate(scratch_bytes); e != cudaSuccess) return failure("cudaMalloc", e);
  // Left in flight: roundtrip_device's wait for the whole device orders its kernels after this
  // copy, as after the TensorFlow kernel that wrote a GPU op's input.
  if (cudaError_t e = cudaMemcpyAsync(src.as<void>(), in.data, bytes, cudaMemcpyHostToDevice, 0); e != cudaSuccess) {
    return failure("cudaMemcpyAsync (host to device)", e);
  }
  ImageView on_device = in;
  on_device.data = src.as<const std::uint8_t>();
  std::string err = roundtrip_device_impl(on_device, dst.as<void>(), tables, mode, device, scratch.as<void>(),
                                         scratch_bytes, in_range);
  if (!err.empty() || !*in_range) return err;
  return copy_to_host(out, dst.as<void>(), bytes);
}

}  // namespace

std::string roundtrip(const ImageView& in, void* out, const float* tables, Mode mode) {
  // Runs without the GIL: nothing may propagate, host allocation failures included.
  try {
    return roundtrip_impl(in, out, tables, mode);
  } catch (const std::exception& e) {
    return std::string("CUDA round trip failed: ") + e.what();
  }
}

std::size_t device_scratch_bytes(const ImageView& in, Mode mode, std::int64_t chunk) {
  if (in.n == 0) return 0;
  const Geometry g = geometry_of(in, mode);
  const std::int64_t per_image = scratch_per_image(in, g);
  const std::int64_t images = std::clamp<std::int64_t>(chunk > 0 ? chunk : kChunkBytes / per_image, 1, in.n);
  return kFlagBytes + static_cast<std::size_t>(images * per_image);
}

std::string roundtrip_device(const ImageView& in, void* out, const float* tables, Mode mode, int device,
                             void* scratch, std::size_t scratch_bytes, bool* in_range) {
  // Runs inside TensorFlow's executor: nothing may propagate, host allocation failures included.
  try {
    return roundtrip_device_impl(in, out, tables, mode, device, scratch, scratch_bytes, in_range);
  } catch (const std::exception& e) {
    return std::string("CUDA round trip failed: ") + e.what();
  }
}

std::string roundtrip_device_from_host(const ImageView& in, void* out, const float* tables, Mode mode,
                                       std::int64_t chunk, bool* in_range) {
  try {
    return roundtrip_device_from_host_impl(in, out, tables, mode, chunk, in_range);
  } catch (const std::exception& e) {
    return std::string("CUDA round trip failed: ") + e.what();
  }
}

std::string copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, 0); e != cudaSuccess) {
    return failure("cudaMemcpyAsync (device to host)", e);
  }
  if (cudaError_t e = cudaStreamSynchronize(0); e != cudaSuccess) return failure("cudaStreamSynchronize", e);
  return {};
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace nnjpeg::cuda
