// Round-trip pipelines: load (edge-replicate to the block/MCU size), optional JFIF colour
// transform with libjpeg-style chroma down/upsampling, the 8x8 block kernel, store (crop back).
#include "codec.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

namespace nnjpeg {
namespace {

using Plane = std::vector<float>;

template <class T>
inline T round_half_away(T x) {
  const T t = std::trunc(x);
  return std::fabs(x - t) >= T(0.5) ? t + std::copysign(T(1), x) : t;
}

inline float clamp255(double v) { return static_cast<float>(v < 0.0 ? 0.0 : (v > 255.0 ? 255.0 : v)); }

inline std::int64_t round_up(std::int64_t v, std::int64_t m) { return (v + m - 1) / m * m; }

// Static partition of [0, count) over up to `threads` workers; the caller's thread takes a share.
template <class F>
void parallel_for(std::int64_t count, int threads, F&& fn) {
  const std::int64_t workers = std::max<std::int64_t>(1, std::min<std::int64_t>(threads, count));
  if (workers == 1) {
    fn(std::int64_t{0}, count);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(workers - 1));
  for (std::int64_t w = 1; w < workers; ++w) {
    pool.emplace_back([&, w] { fn(count * w / workers, count * (w + 1) / workers); });
  }
  fn(std::int64_t{0}, count / workers);
  for (auto& t : pool) t.join();
}

// Reads channel `ch` of image `img` into a (hp, wp) plane scaled to [0, 255], replicating the last
// row and column into the padding as libjpeg does when it expands edges to whole blocks.
void load_plane(const ImageView& in, std::int64_t img, std::int64_t ch, float* dst,
                std::int64_t hp, std::int64_t wp) {
  const std::uint8_t* base = in.data + img * in.sn + ch * in.sc;
  for (std::int64_t y = 0; y < in.h; ++y) {
    const std::uint8_t* row = base + y * in.sh;
    float* d = dst + y * wp;
    if (in.is_float) {
      for (std::int64_t x = 0; x < in.w; ++x) {
        d[x] = *reinterpret_cast<const float*>(row + x * in.sw) * 255.0f;
      }
    } else {
      for (std::int64_t x = 0; x < in.w; ++x) d[x] = static_cast<float>(row[x * in.sw]);
    }
    std::fill(d + in.w, d + wp, d[in.w - 1]);
  }
  for (std::int64_t y = in.h; y < hp; ++y) {
    std::copy(dst + (in.h - 1) * wp, dst + in.h * wp, dst + y * wp);
  }
}

// Writes whole-number samples in [0, 255] to a contiguous (N, H, W, C) output; float32 output is
// sample / 255, so it lies on the 1/255 grid.
void store_plane(const float* src, std::int64_t wp, const ImageView& in, std::int64_t img,
                 std::int64_t ch, void* out) {
  const std::int64_t row_len = in.w * in.c;
  const std::int64_t offset = img * in.h * row_len + ch;
  for (std::int64_t y = 0; y < in.h; ++y) {
    const float* s = src + y * wp;
    if (in.is_float) {
      float* d = static_cast<float*>(out) + offset + y * row_len;
      for (std::int64_t x = 0; x < in.w; ++x) d[x * in.c] = s[x] / 255.0f;
    } else {
      std::uint8_t* d = static_cast<std::uint8_t*>(out) + offset + y * row_len;
      for (std::int64_t x = 0; x < in.w; ++x) d[x * in.c] = static_cast<std::uint8_t>(s[x]);
    }
  }
}

struct PlaneJob {
  float* data;
  std::int64_t hp, wp;
  const QuantTable* qt;
};

// Runs the block kernel over every 8-row band of the given planes, spreading bands over threads.
void run_kernel(const std::vector<PlaneJob>& jobs, int threads, const Kernel& kernel) {
  std::vector<std::pair<std::size_t, std::int64_t>> bands;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    for (std::int64_t b = 0; b < jobs[j].hp / 8; ++b) bands.emplace_back(j, b);
  }
  parallel_for(static_cast<std::int64_t>(bands.size()), threads,
               [&](std::int64_t lo, std::int64_t hi) {
                 for (std::int64_t i = lo; i < hi; ++i) {
                   const PlaneJob& job = jobs[bands[i].first];
                   kernel.fn(job.data + bands[i].second * 8 * job.wp, job.wp,
                             static_cast<int>(job.wp / 8), *job.qt);
                 }
               });
}

void roundtrip_rgb_image(const ImageView& in, std::int64_t img, void* out,
                         const std::vector<QuantTable>& qts, int threads, const Kernel& kernel,
                         std::vector<Plane>& planes) {
  const std::int64_t hp = round_up(in.h, 8), wp = round_up(in.w, 8);
  std::vector<PlaneJob> jobs;
  planes.resize(static_cast<std::size_t>(in.c));
  for (std::int64_t ch = 0; ch < in.c; ++ch) {
    Plane& p = planes[ch];
    p.resize(static_cast<std::size_t>(hp * wp));
    load_plane(in, img, ch, p.data(), hp, wp);
    jobs.push_back({p.data(), hp, wp, &qts[ch]});
  }
  run_kernel(jobs, threads, kernel);
  for (std::int64_t ch = 0; ch < in.c; ++ch) store_plane(planes[ch].data(), wp, in, img, ch, out);
}

// JFIF full-range BT.601 (ITU-T T.871), rounded to whole samples as libjpeg's rgb_ycc_convert.
// The weights are written as integers over 10^3 / 10^6 and evaluated in double: for whole-number
// samples the numerators are exact and the division correctly rounded, so a sum that is exactly
// k + 1/2 stays a tie and rounds away from zero every time.
void rgb_to_ycc(Plane& r_y, Plane& g_cb, Plane& b_cr) {
  for (std::size_t i = 0; i < r_y.size(); ++i) {
    const double r = r_y[i], g = g_cb[i], b = b_cr[i];
    r_y[i] = clamp255(round_half_away((299.0 * r + 587.0 * g + 114.0 * b) / 1e3));
    g_cb[i] = clamp255(round_half_away((-168736.0 * r - 331264.0 * g + 500000.0 * b) / 1e6 + 128.0));
    b_cr[i] = clamp255(round_half_away((500000.0 * r - 418688.0 * g - 81312.0 * b) / 1e6 + 128.0));
  }
}

// Box-filter downsampling with libjpeg's alternating rounding bias (jcsample.c h2v1/h2v2).
Plane downsample(const Plane& src, std::int64_t hp, std::int64_t wp, int hs, int vs) {
  const std::int64_t ch = hp / vs, cw = wp / hs;
  Plane dst(static_cast<std::size_t>(ch * cw));
  for (std::int64_t y = 0; y < ch; ++y) {
    for (std::int64_t x = 0; x < cw; ++x) {
      float sum = 0.0f;
      for (int dy = 0; dy < vs; ++dy) {
        for (int dx = 0; dx < hs; ++dx) sum += src[(y * vs + dy) * wp + x * hs + dx];
      }
      const float bias = vs == 2 ? static_cast<float>(1 + (x & 1)) : static_cast<float>(x & 1);
      dst[y * cw + x] = std::floor((sum + bias) / static_cast<float>(hs * vs));
    }
  }
  return dst;
}

// libjpeg's default "fancy" upsampling (jdsample.c): a triangle filter, 3/4 of the nearer and 1/4 of
// the farther input sample in each upsampled direction, with its integer rounding; neighbours past
// the valid (cvh, cvw) region repeat the edge, which reproduces libjpeg's edge special cases.
void upsample(const Plane& src, std::int64_t cw, std::int64_t cvh, std::int64_t cvw, int hs, int vs,
              Plane& dst, std::int64_t h, std::int64_t w, std::int64_t wp) {
  auto at = [&](std::int64_t y, std::int64_t x) {
    y = std::clamp<std::int64_t>(y, 0, cvh - 1);
    x = std::clamp<std::int64_t>(x, 0, cvw - 1);
    return static_cast<int>(src[y * cw + x]);
  };
  for (std::int64_t y = 0; y < h; ++y) {
    const std::int64_t iy = y / vs;
    const std::int64_t ny = vs == 2 ? (y % 2 == 0 ? iy - 1 : iy + 1) : iy;
    for (std::int64_t x = 0; x < w; ++x) {
      const std::int64_t ix = x / hs;
      int v;
      if (hs == 1) {
        v = at(iy, ix);
      } else if (vs == 1) {
        const std::int64_t nx = x % 2 == 0 ? ix - 1 : ix + 1;
        v = (3 * at(iy, ix) + at(iy, nx) + (x % 2 == 0 ? 1 : 2)) >> 2;
      } else {
        const std::int64_t nx = x % 2 == 0 ? ix - 1 : ix + 1;
        const int near = 3 * at(iy, ix) + at(ny, ix);
        const int far = 3 * at(iy, nx) + at(ny, nx);
        v = (3 * near + far + (x % 2 == 0 ? 8 : 7)) >> 4;
      }
      dst[y * wp + x] = static_cast<float>(v);
    }
  }
}

void ycc_to_rgb(Plane& y_r, Plane& cb_g, Plane& cr_b) {
  for (std::size_t i = 0; i < y_r.size(); ++i) {
    const double y = y_r[i], cb = cb_g[i] - 128.0, cr = cr_b[i] - 128.0;
    y_r[i] = clamp255(round_half_away(y + 1402.0 * cr / 1e3));
    cb_g[i] = clamp255(round_half_away(y - (344136.0 * cb + 714136.0 * cr) / 1e6));
    cr_b[i] = clamp255(round_half_away(y + 1772.0 * cb / 1e3));
  }
}

void roundtrip_ycc_image(const ImageView& in, std::int64_t img, void* out,
                         const std::vector<QuantTable>& qts, Mode mode, int threads,
                         const Kernel& kernel, std::vector<Plane>& planes) {
  const int hs = mode == Mode::kYcc444 ? 1 : 2;
  const int vs = mode == Mode::kYcc420 ? 2 : 1;
  const std::int64_t hp = round_up(in.h, 8 * vs), wp = round_up(in.w, 8 * hs);
  const std::int64_t ch = hp / vs, cw = wp / hs;
  planes.resize(3);
  for (std::int64_t c = 0; c < 3; ++c) {
    planes[c].resize(static_cast<std::size_t>(hp * wp));
    load_plane(in, img, c, planes[c].data(), hp, wp);
  }
  rgb_to_ycc(planes[0], planes[1], planes[2]);
  if (hs == 1 && vs == 1) {
    run_kernel({{planes[0].data(), hp, wp, &qts[0]},
                {planes[1].data(), hp, wp, &qts[1]},
                {planes[2].data(), hp, wp, &qts[2]}},
               threads, kernel);
  } else {
    Plane cb = downsample(planes[1], hp, wp, hs, vs);
    Plane cr = downsample(planes[2], hp, wp, hs, vs);
    run_kernel({{planes[0].data(), hp, wp, &qts[0]},
                {cb.data(), ch, cw, &qts[1]},
                {cr.data(), ch, cw, &qts[2]}},
               threads, kernel);
    const std::int64_t cvh = (in.h + vs - 1) / vs, cvw = (in.w + hs - 1) / hs;
    upsample(cb, cw, cvh, cvw, hs, vs, planes[1], in.h, in.w, wp);
    upsample(cr, cw, cvh, cvw, hs, vs, planes[2], in.h, in.w, wp);
  }
  ycc_to_rgb(planes[0], planes[1], planes[2]);
  for (std::int64_t c = 0; c < 3; ++c) store_plane(planes[c].data(), wp, in, img, c, out);
}

}  // namespace

void roundtrip(const ImageView& in, void* out, const float* tables, Mode mode, int threads,
               const Kernel& kernel) {
  if (in.n == 0) return;
  const bool ycc = mode != Mode::kRgb && in.c == 3;
  std::vector<QuantTable> qts;
  for (std::int64_t t = 0; t < in.c; ++t) qts.push_back(make_quant_table(tables + 64 * t));
  auto one = [&](std::int64_t img, int inner_threads, std::vector<Plane>& planes) {
    if (ycc) {
      roundtrip_ycc_image(in, img, out, qts, mode, inner_threads, kernel, planes);
    } else {
      roundtrip_rgb_image(in, img, out, qts, inner_threads, kernel, planes);
    }
  };
  if (in.n >= threads) {
    // Whole images per worker: no synchronisation inside an image, planes reused across images.
    parallel_for(in.n, threads, [&](std::int64_t lo, std::int64_t hi) {
      std::vector<Plane> planes;
      for (std::int64_t i = lo; i < hi; ++i) one(i, 1, planes);
    });
  } else {
    std::vector<Plane> planes;
    for (std::int64_t i = 0; i < in.n; ++i) one(i, threads, planes);
  }
}

}  // namespace nnjpeg
