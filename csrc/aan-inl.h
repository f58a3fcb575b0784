// The 8-point transforms of every block kernel, written once over a lane type so that the scalar
// and SIMD kernels perform the same float operations in the same order and stay bit-identical.
// Included by each kernel's translation unit (compiled with its own target flags, no FMA
// contraction); no SIMD types here. `D` provides `V`, add, sub, mul and set1.
//
// Forward: the Arai-Agui-Nakajima fast DCT (Arai, Agui, Nakajima, Trans. IEICE E71(11), 1988),
// 29 additions and 5 multiplications. It computes y[k] = s(k) X[k], X the orthonormal DCT-II and
// s(0) = s(4) = sqrt(8), s(k) = 4 cos(k pi / 16) otherwise; the scales are folded into the
// quantization tables (make_quant_table). Outputs 0 and 4 are (x0 + x7 + x3 + x4) +- (x1 + x6 +
// x2 + x5): additions only, so whole-number samples give exact sums there (the exact-tie property
// of QuantTable). Inverse: the transposed flow graph (with M = S C the forward matrix, C^T = M^T
// S^-1), fed with coefficients pre-divided by s(k); same operation count.
#pragma once

// The CUDA kernel (cuda/roundtrip.cu) runs the same passes on the device.
#if defined(__CUDACC__)
#define NNJPEG_HOST_DEVICE __host__ __device__
#else
#define NNJPEG_HOST_DEVICE
#endif

namespace nnjpeg {
namespace aan {

// cos(pi / 4), and the three multipliers of the odd part's rotation by 3 pi / 8 (written as
// (p - r) c6 shared between two products): c6 = cos(3 pi / 8), sqrt(2) c6, sqrt(2) cos(pi / 8).
constexpr float kC4 = 0.707106781186547524f;
constexpr float kC6 = 0.382683432365089772f;
constexpr float kR2C6 = 0.541196100146196984f;
constexpr float kR2C2 = 1.306562964876376527f;

// y = M x in place, x[0..7] one sample each from 8 equally spaced positions of a line.
template <class D>
NNJPEG_HOST_DEVICE inline void forward(typename D::V x[8]) {
  using V = typename D::V;
  const V e0 = D::add(x[0], x[7]), e1 = D::add(x[1], x[6]), e2 = D::add(x[2], x[5]), e3 = D::add(x[3], x[4]);
  const V o0 = D::sub(x[0], x[7]), o1 = D::sub(x[1], x[6]), o2 = D::sub(x[2], x[5]), o3 = D::sub(x[3], x[4]);
  // Even half: a 4-point DCT of e; outputs 2 and 6 share one product (d03 + d12) c4.
  const V s03 = D::add(e0, e3), s12 = D::add(e1, e2), d03 = D::sub(e0, e3), d12 = D::sub(e1, e2);
  x[0] = D::add(s03, s12);
  x[4] = D::sub(s03, s12);
  const V z1 = D::mul(D::add(d12, d03), D::set1(kC4));
  x[2] = D::add(d03, z1);
  x[6] = D::sub(d03, z1);
  // Odd half: a rotation of (o2 + o3, o0 + o1) by 3 pi / 8 in three products, and (o1 + o2) c4.
  const V p = D::add(o3, o2), q = D::add(o2, o1), r = D::add(o1, o0);
  const V z5 = D::mul(D::sub(p, r), D::set1(kC6));
  const V z2 = D::add(D::mul(p, D::set1(kR2C6)), z5);
  const V z4 = D::add(D::mul(r, D::set1(kR2C2)), z5);
  const V z3 = D::mul(q, D::set1(kC4));
  const V z11 = D::add(o0, z3), z13 = D::sub(o0, z3);
  x[1] = D::add(z11, z4);
  x[7] = D::sub(z11, z4);
  x[3] = D::sub(z13, z2);
  x[5] = D::add(z13, z2);
}

// x = M^T y in place: each node of `forward` with its fan-out turned into a sum, in reverse order.
template <class D>
NNJPEG_HOST_DEVICE inline void inverse(typename D::V y[8]) {
  using V = typename D::V;
  const V z11 = D::add(y[1], y[7]), z4 = D::sub(y[1], y[7]);
  const V z13 = D::add(y[5], y[3]), z2 = D::sub(y[5], y[3]);
  const V q = D::mul(D::sub(z11, z13), D::set1(kC4));
  const V w = D::mul(D::add(z4, z2), D::set1(kC6));
  const V p = D::add(D::mul(z2, D::set1(kR2C6)), w);
  const V r = D::sub(D::mul(z4, D::set1(kR2C2)), w);
  const V o0 = D::add(D::add(z11, z13), r), o1 = D::add(q, r), o2 = D::add(p, q), o3 = p;
  const V s03 = D::add(y[0], y[4]), s12 = D::sub(y[0], y[4]);
  const V d12 = D::mul(D::sub(y[2], y[6]), D::set1(kC4));
  const V d03 = D::add(D::add(y[2], y[6]), d12);
  const V e0 = D::add(s03, d03), e3 = D::sub(s03, d03), e1 = D::add(s12, d12), e2 = D::sub(s12, d12);
  y[0] = D::add(e0, o0);
  y[7] = D::sub(e0, o0);
  y[1] = D::add(e1, o1);
  y[6] = D::sub(e1, o1);
  y[2] = D::add(e2, o2);
  y[5] = D::sub(e2, o2);
  y[3] = D::add(e3, o3);
  y[4] = D::sub(e3, o3);
}

// A SIMD block set's round trip between its loads and stores (D also provides transpose), rows r
// as loaded: the forward transform (columns, one transpose, rows, so coefficients in [u][v]
// order), `quantize(r)` in place (the level shift, levels times their steps), the inverse (rows,
// the transpose back, columns).
template <class D, class Quantize>
inline void roundtrip_rows(typename D::V r[8], Quantize quantize) {
  forward<D>(r);
  D::transpose(r);
  forward<D>(r);
  quantize(r);
  inverse<D>(r);
  D::transpose(r);
  inverse<D>(r);
}

// Two independent block sets' round trips, y a stage behind x: while one set is in a transpose
// (shuffles, which fewer ports execute) the other is in an arithmetic pass. Run in step, both sat
// in their transposes at once with the arithmetic ports idle: on an Intel Xeon the AVX-512 uint8
// kernel took 24 ns per block in step and 20 skewed, the AVX2 one 39 and 34 (224-wide bands); a
// skew of two stages or more measured slower again. load_y() fills y, store_x() takes x when done.
template <class D, class Quantize, class LoadY, class StoreX>
inline void roundtrip_skewed(typename D::V x[8], typename D::V y[8], Quantize quantize, LoadY load_y,
                             StoreX store_x) {
  forward<D>(x);
  load_y();
  D::transpose(x);
  forward<D>(y);
  forward<D>(x);
  D::transpose(y);
  quantize(x);
  forward<D>(y);
  inverse<D>(x);
  quantize(y);
  D::transpose(x);
  inverse<D>(y);
  inverse<D>(x);
  D::transpose(y);
  store_x();
  inverse<D>(y);
}

}  // namespace aan
}  // namespace nnjpeg
