"""The codec's round trip in pure TensorFlow, and `tf.data` map functions for either backend.

`compress_tf` and `jpeg_tf` reproduce `nnjpeg.compress` and `nnjpeg.jpeg` stage by stage with
TensorFlow ops only, so they run on GPU and compile with XLA (`tf.function(jit_compile=True)`).
Every rounding is straight-through: the forward pass rounds, the backward pass treats the rounding
as the identity, which is the BPDA estimate (Athalye et al., 2018, Sec. 4.1) of the codec's
gradient for float inputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from . import codec
from .codec import check_choice, check_image_spec, check_mode, check_range, check_table, check_threads
from .codec import jpeg_table

__all__ = ["compress_tf", "jpeg_tf", "native_op_status", "tf_compress"]

BACKENDS = ("native", "tf")

# The block transform of the native kernels (csrc/aan-inl.h), with the same float32 constants: the
# Arai-Agui-Nakajima fast DCT (Trans. IEICE E71(11), 1988), which gives T = s(v) s(u) X for the
# orthonormal DCT-II X, and its transposed flow graph as the inverse. s(0) = s(4) = sqrt(8), so the
# coefficients (0, 0), (0, 4), (4, 0) and (4, 4) of whole-number samples are exact sums that often
# sit exactly on a quantization tie; dividing those by 8 * step (exact) keeps such a tie exact, so
# it rounds away from zero as libjpeg's would. Every other coefficient is multiplied by
# 1 / (s(v) s(u) step) and rounded half to even (`tf.round`; see csrc/kernels.h). The scales are the
# decimals of csrc/dct_scalar.cpp, so the tables match.
_C4, _C6 = np.float32(0.707106781186547524), np.float32(0.382683432365089772)
_R2C6, _R2C2 = np.float32(0.541196100146196984), np.float32(1.306562964876376527)
_SCALE = np.array([2.8284271247461903, 3.9231411216129217, 3.695518130045147, 3.325878449210181,
                   2.8284271247461903, 2.222280932078409, 1.5307337294603593, 0.7803612880645133])
_TIES = np.zeros((8, 8), bool)
_TIES[0::4, 0::4] = True  # [v, u] with u, v in {0, 4}
_DC = np.zeros((8, 8), np.float32)
_DC[0, 0] = 1.0


def _ste(x, q):
    # Straight-through: the forward pass gives q, the backward pass the identity.
    return x + tf.stop_gradient(q - x)


def _opaque(x, like):
    """x (broadcast to `like`'s shape in graphs) as a value XLA cannot fold or fuse at compile time.

    XLA (CPU and GPU) fuses a multiply with a following add into one FMA, a single rounding, and
    turns a division by a constant into a multiplication by its reciprocal. Either tips values that
    sit on a rounding tie (frequent here: whole-number samples put DCT coefficients and colour sums
    exactly on k + 1/2) the other way than the native code and eager TensorFlow do. A select on a
    runtime condition is opaque to both rewrites; NaN in `like` gives NaN, as the arithmetic would.
    """
    if tf.executing_eagerly():  # eager kernels run one op at a time: nothing to fuse or fold
        return x
    return tf.where(like == like, x, tf.constant(np.nan, like.dtype))


def _mul(a, b):
    """a * b, rounded on its own as the native code rounds every product (no FMA)."""
    p = a * b
    return _opaque(p, p)


def _div(a, b):
    """a / b, correctly rounded even when b is a constant."""
    return a / _opaque(tf.cast(b, a.dtype), a)


def _round_half_away(x):
    """Rounds half away from zero as libjpeg (`tf.round` rounds half to even), straight-through.

    `floor(|x| + 0.5)` would round 0.49999997 up; comparing the exact fraction does not.
    """
    a = tf.abs(x)
    whole = tf.floor(a)
    q = tf.sign(x) * (whole + tf.cast(a - whole >= 0.5, x.dtype))
    return _ste(x, q)


def _floor(x):
    return _ste(x, tf.floor(x))


def _clamp255(x):
    return tf.clip_by_value(x, 0.0, 255.0)


def _dims(x):
    """(N, H, W) of a 4-D tensor, as Python ints where static and scalar tensors otherwise."""
    dynamic = tf.shape(x)
    return [x.shape[i] if x.shape[i] is not None else dynamic[i] for i in range(3)]


def _round_up(v, m):
    return (v + m - 1) // m * m


def _pad_edge(x, hp, wp):
    """Edge-replicates (N, H, W, P) planes to (N, hp, wp, P), as libjpeg expands edges to whole blocks."""
    _, h, w = _dims(x)
    x = tf.gather(x, tf.minimum(tf.range(hp), h - 1), axis=1)
    return tf.gather(x, tf.minimum(tf.range(wp), w - 1), axis=2)


def _to_blocks(x):
    """(N, H, W, P), H and W multiples of 8 -> (N, P, H/8, W/8, 8, 8)."""
    n, h, w = _dims(x)
    p = x.shape[3]
    x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [n, p, h // 8, 8, w // 8, 8])
    return tf.transpose(x, [0, 1, 2, 4, 3, 5])


def _from_blocks(b):
    """(N, P, H/8, W/8, 8, 8) -> (N, H, W, P)."""
    shape = tf.shape(b)
    n, hb, wb = (b.shape[i] if b.shape[i] is not None else shape[i] for i in (0, 2, 3))
    x = tf.reshape(tf.transpose(b, [0, 1, 2, 4, 3, 5]), [n, b.shape[1], hb * 8, wb * 8])
    return tf.transpose(x, [0, 2, 3, 1])


def _aan_forward(x):
    """y = M x for the 8 tensors x (one per position along a line): the forward pass of aan-inl.h."""
    e0, e1, e2, e3 = x[0] + x[7], x[1] + x[6], x[2] + x[5], x[3] + x[4]
    o0, o1, o2, o3 = x[0] - x[7], x[1] - x[6], x[2] - x[5], x[3] - x[4]
    s03, s12, d03, d12 = e0 + e3, e1 + e2, e0 - e3, e1 - e2
    z1 = _mul(d12 + d03, _C4)
    p, q, r = o3 + o2, o2 + o1, o1 + o0
    z5 = _mul(p - r, _C6)
    z2 = _mul(p, _R2C6) + z5
    z4 = _mul(r, _R2C2) + z5
    z3 = _mul(q, _C4)
    z11, z13 = o0 + z3, o0 - z3
    return [s03 + s12, z11 + z4, d03 + z1, z13 - z2, s03 - s12, z13 + z2, d03 - z1, z11 - z4]


def _aan_inverse(y):
    """x = M^T y, the inverse pass of aan-inl.h (the transposed flow graph)."""
    z11, z4 = y[1] + y[7], y[1] - y[7]
    z13, z2 = y[5] + y[3], y[5] - y[3]
    q = _mul(z11 - z13, _C4)
    w = _mul(z4 + z2, _C6)
    p = _mul(z2, _R2C6) + w
    r = _mul(z4, _R2C2) - w
    o = [(z11 + z13) + r, q + r, p + q, p]
    s03, s12 = y[0] + y[4], y[0] - y[4]
    d12 = _mul(y[2] - y[6], _C4)
    d03 = (y[2] + y[6]) + d12
    e = [s03 + d03, s12 + d12, s12 - d12, s03 - d03]
    return [e[0] + o[0], e[1] + o[1], e[2] + o[2], e[3] + o[3], e[3] - o[3], e[2] - o[2], e[1] - o[1], e[0] - o[0]]


def _along_last(fn, x):
    """Applies an 8-point pass (a function of 8 tensors) along the last axis."""
    return tf.stack(fn(tf.unstack(x, 8, axis=-1)), axis=-1)


def _along_rows(fn, blocks):
    """Applies an 8-point pass to the columns of every 8x8 block instead."""
    return tf.stack(fn(tf.unstack(blocks, 8, axis=-2)), axis=-2)


def _dct8x8(blocks):
    """T = M X M^T for every trailing 8x8 block X, [v, u] order: columns first, then rows."""
    return _along_last(_aan_forward, _along_rows(_aan_forward, blocks))


def _idct8x8(coefs):
    """M^T Z M for every trailing 8x8 block Z of pre-scaled coefficients: rows first, then columns."""
    return _along_rows(_aan_inverse, _along_last(_aan_inverse, coefs))


def _quantize(coefs, tables):
    """Quantizes and dequantizes T as the native kernels (csrc/kernels.h, QuantTable).

    Args:
        coefs: (N, P, H/8, W/8, 8, 8) transform outputs T = s(v) s(u) X of the level-shifted blocks.
        tables: (P, 64) float32 quantization steps.

    Returns:
        The levels times step / (s(v) s(u)), the input of the inverse transform.
    """
    steps = tables.reshape(1, -1, 1, 1, 8, 8).astype(np.float64)
    scale = np.where(_TIES, 8.0, _SCALE[:, np.newaxis] * _SCALE)
    div = (scale * steps).astype(np.float32)
    mul = (1.0 / (scale * steps)).astype(np.float32)
    deq = (steps / scale).astype(np.float32)
    scaled = _mul(coefs, mul)
    levels = tf.where(_TIES, _round_half_away(_div(coefs, div)), _ste(scaled, tf.round(scaled)))
    return _mul(levels, deq)


def _block_roundtrip(planes, tables):
    """Transform, quantize, inverse transform, round, clamp, per 8x8 block; the level shifts by 128
    act on the DC terms alone (T(0,0) - 64 * 128 and Z(0,0) + 128), as in the native kernels.

    Args:
        planes: (N, H, W, P) float32 samples in [0, 255], H and W multiples of 8.
        tables: (P, 64) float32 quantization steps, one row per plane.

    Returns:
        (N, H, W, P) float32 whole samples in [0, 255].
    """
    coefs = _dct8x8(_to_blocks(planes)) - _DC * (64.0 * 128.0)
    pixels = _from_blocks(_idct8x8(_quantize(coefs, tables) + _DC * 128.0))
    # floor(x + 0.49999997) rounds x >= 0 half away from zero; negative x clamp to 0 either way.
    return _clamp255(_ste(pixels, tf.floor(pixels + np.float32(0.49999997))))


def _rgb_to_ycc(rgb):
    """JFIF full-range BT.601 (ITU-T T.871), rounded to whole samples and clamped as libjpeg.

    Integer weights over 10^3 / 10^6 in float64, as the native code: for whole-number samples the
    numerators are exact and the division correctly rounded, so an exact k + 1/2 stays a tie.
    """
    r, g, b = (tf.cast(rgb[..., i], tf.float64) for i in range(3))
    y = _div(299.0 * r + 587.0 * g + 114.0 * b, 1e3)
    cb = _div(-168736.0 * r - 331264.0 * g + 500000.0 * b, 1e6) + 128.0
    cr = _div(500000.0 * r - 418688.0 * g - 81312.0 * b, 1e6) + 128.0
    return tf.cast(_clamp255(_round_half_away(tf.stack([y, cb, cr], axis=-1))), tf.float32)


def _ycc_to_rgb(ycc):
    """Inverse JFIF transform in float64 as `_rgb_to_ycc`, rounded and clamped to [0, 255]."""
    ycc = tf.cast(ycc, tf.float64)
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128.0, ycc[..., 2] - 128.0
    r = y + _div(1402.0 * cr, 1e3)
    g = y - _div(344136.0 * cb + 714136.0 * cr, 1e6)
    b = y + _div(1772.0 * cb, 1e3)
    return tf.cast(_clamp255(_round_half_away(tf.stack([r, g, b], axis=-1))), tf.float32)


def _downsample(chroma, hs, vs):
    """Box filter over hs x vs cells with libjpeg's alternating rounding bias (jcsample.c h2v1/h2v2).

    Args:
        chroma: (N, H, W, 2) whole samples, H a multiple of vs, W of hs.

    Returns:
        (N, H/vs, W/hs, 2) whole samples.
    """
    n, h, w = _dims(chroma)
    cells = tf.reshape(chroma, [n, h // vs, vs, w // hs, hs, 2])
    sums = tf.reduce_sum(cells, axis=[2, 4])
    parity = tf.cast(tf.range(w // hs) % 2, tf.float32)[:, tf.newaxis]
    bias = 1.0 + parity if vs == 2 else parity
    return _floor((sums + bias) / float(hs * vs))


def _interleave(even, odd, axis):
    """Alternates slices of `even` and `odd` along `axis` (doubling it)."""
    stacked = tf.stack([even, odd], axis=axis + 1)
    shape = tf.shape(even)
    dims = [even.shape[i] if even.shape[i] is not None else shape[i] for i in range(4)]
    dims[axis] = dims[axis] * 2
    return tf.reshape(stacked, dims)


def _neighbours(x, axis):
    """x shifted by one sample backwards and forwards along `axis`, repeating the edge samples."""
    size = x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]
    idx = tf.range(size)
    return (tf.gather(x, tf.maximum(idx - 1, 0), axis=axis),
            tf.gather(x, tf.minimum(idx + 1, size - 1), axis=axis))


def _upsample(chroma, hs, vs, h, w):
    """libjpeg's "fancy" triangle upsampling (jdsample.c), with its integer rounding.

    Each output sample takes 3/4 of the nearer and 1/4 of the farther input sample in every
    upsampled direction. Only the valid chroma region (the samples that cover the image) is used;
    neighbours past it repeat its edge, which reproduces libjpeg's special cases at the borders.

    Args:
        chroma: (N, H/vs, W/hs, 2) whole samples (H, W padded to the MCU size).
        hs, vs: horizontal and vertical subsampling factors, 2 and 1 or 2.
        h, w: image height and width.

    Returns:
        (N, h, w, 2) whole samples.
    """
    valid = chroma[:, :(h + vs - 1) // vs, :(w + hs - 1) // hs]
    if vs == 2:
        above, below = _neighbours(valid, axis=1)
        up, down = 3.0 * valid + above, 3.0 * valid + below
        left_up, right_up = _neighbours(up, axis=2)
        left_down, right_down = _neighbours(down, axis=2)
        rows_up = _interleave(_floor((3.0 * up + left_up + 8.0) / 16.0),
                              _floor((3.0 * up + right_up + 7.0) / 16.0), axis=2)
        rows_down = _interleave(_floor((3.0 * down + left_down + 8.0) / 16.0),
                                _floor((3.0 * down + right_down + 7.0) / 16.0), axis=2)
        full = _interleave(rows_up, rows_down, axis=1)
    else:
        left, right = _neighbours(valid, axis=2)
        full = _interleave(_floor((3.0 * valid + left + 1.0) / 4.0),
                           _floor((3.0 * valid + right + 2.0) / 4.0), axis=2)
    return full[:, :h, :w]


def _roundtrip_ycc(samples, tables, hs, vs):
    """The `color="ycbcr"` pipeline on (N, H, W, 3) samples in [0, 255]; tables (3, 64)."""
    _, h, w = _dims(samples)
    ycc = _rgb_to_ycc(_pad_edge(samples, _round_up(h, 8 * vs), _round_up(w, 8 * hs)))
    if hs == 1 and vs == 1:
        ycc = _block_roundtrip(ycc, tables)
    else:
        luma = _block_roundtrip(ycc[..., :1], tables[:1])
        chroma = _block_roundtrip(_downsample(ycc[..., 1:], hs, vs), tables[1:])
        ycc = tf.concat([luma[:, :h, :w], _upsample(chroma, hs, vs, h, w)], axis=-1)
    return _ycc_to_rgb(ycc[:, :h, :w])


def _roundtrip_rgb(samples, tables):
    """The `color="rgb"` pipeline: every channel through the block round trip on its own."""
    _, h, w = _dims(samples)
    out = _block_roundtrip(_pad_edge(samples, _round_up(h, 8), _round_up(w, 8)), tables)
    return out[:, :h, :w]


def _to_unit(samples):
    """Whole samples in [0, 255] -> k / 255 in float32, as the native code divides.

    XLA turns a division by a constant into a multiplication by its reciprocal, off by an ulp for
    most k; a 256-entry table of the exact quotients is not, and straight-through keeps the
    gradient of the division.
    """
    quotients = tf.constant(np.arange(256, dtype=np.float32) / np.float32(255))
    return _ste(samples / 255.0, tf.gather(quotients, tf.cast(samples, tf.int32)))


def _check_tensor(images, values: bool = True):
    """Converts to a tensor and checks dtype, static shape and (with `values`) the value range:
    eagerly, or by an assertion in a graph. The native backend's op checks values itself."""
    if not isinstance(images, (tf.Tensor, tf.Variable)):
        if not isinstance(images, np.ndarray):
            raise TypeError(f"{codec.IMAGES_EXPECTED}, as a tf.Tensor or NumPy array. "
                            f"Received: {type(images).__name__}")
        images = tf.convert_to_tensor(images)
    rank = images.shape.rank
    check_image_spec(np.dtype(images.dtype.as_numpy_dtype), None if rank is None else tuple(images.shape),
                      " (static rank and channels)")
    if values and images.dtype == tf.float32:
        images = check_values(images)
    return images


def check_values(images):
    """Raises ValueError for eager float32 images outside [0, 1]; in a graph, adds an assertion.

    XLA drops assertions, so under `jit_compile=True` out-of-range values go through unchecked.
    """
    inside = (images >= 0.0) & (images <= 1.0)  # False for NaN as well
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(inside)):
            nonfinite = int(tf.size(images)) - int(tf.math.count_nonzero(tf.math.is_finite(images)))
            check_range(float(tf.reduce_min(images)), float(tf.reduce_max(images)), nonfinite)
        return images
    check = tf.debugging.Assert(tf.reduce_all(inside), [
        "Expected float32 images with finite values in [0, 1]. Received: min/max",
        tf.reduce_min(images), tf.reduce_max(images)])
    with tf.control_dependencies([check]):
        return tf.identity(images)


def compress_tf(images, table, *, color: str = "rgb", subsampling: str = "4:4:4"):
    """`nnjpeg.compress` in pure TensorFlow: differentiable, XLA-compilable, runs on GPU.

    The same pipeline as the native codec, stage by stage and with the same rounding points
    (see `nnjpeg.compress`); results agree with it to within one grey level (float32 summation
    order differs, which can tip a coefficient or sample that lies on a rounding tie). Every
    rounding and flooring is straight-through, so for float32 inputs the gradient is that of the
    pipeline without its roundings (BPDA); clamping to [0, 255] keeps its usual zero gradient.

    float32 inputs outside [0, 1] raise ValueError when eager and fail an assertion
    (InvalidArgumentError) inside a `tf.function`; XLA drops assertions, so under
    `jit_compile=True` they go through unchecked (the output is still clamped to [0, 1]).

    Shape:
        images: (H, W, C) or (N, H, W, C), C in {1, 3}; uint8, or float32 in [0, 1]. Rank and C
        must be static; N, H and W may be dynamic.
        returns: same shape (static shape kept) and dtype; float32 results lie on the 1/255 grid.

    Args:
        images: tf.Tensor or NumPy array.
        table: (8, 8) for every plane, or (C, 8, 8) per plane; with `color="ycbcr"` and C = 3,
            also (2, 8, 8) as (luma, chroma). Finite values > 0. A Python/NumPy value, not a tensor.
        color: "rgb" (no colour transform) or "ycbcr".
        subsampling: "4:4:4", "4:2:2" or "4:2:0"; anything but "4:4:4" needs `color="ycbcr"`.

    Returns:
        The round-tripped images as a tf.Tensor.

    Raises:
        TypeError: images not a uint8/float32 tensor or array, non-numeric table.
        ValueError: bad or unknown rank/shape, NaN/Inf or out-of-range eager floats, bad table shape
            or values, unknown color/subsampling.
    """
    mode = check_mode(color, subsampling)
    images = _check_tensor(images)
    return compress_tensor(images, check_table(table, images.shape[-1], color), color, mode)


def compress_tensor(images, tables, color, mode):
    """compress_tf on a checked tensor with (planes, 64) float32 tables."""
    batch = images if images.shape.rank == 4 else images[tf.newaxis]
    samples = tf.cast(batch, tf.float32) if batch.dtype == tf.uint8 else _mul(batch, 255.0)
    if color == "ycbcr" and images.shape[-1] == 3:
        hs, vs = {1: (1, 1), 2: (2, 1), 3: (2, 2)}[mode]
        out = _roundtrip_ycc(samples, tables, hs, vs)
    else:
        out = _roundtrip_rgb(samples, tables)
    # Whole samples in [0, 255] already: the cast to uint8 is exact.
    out = tf.cast(out, tf.uint8) if images.dtype == tf.uint8 else _to_unit(out)
    out = out if images.shape.rank == 4 else out[0]
    out.set_shape(images.shape)
    return out


def jpeg_tf(images, quality: int = 75, *, subsampling: str = "4:2:0"):
    """`nnjpeg.jpeg` in pure TensorFlow: standard baseline JPEG round trip, differentiable (BPDA).

    JFIF YCbCr, the ITU-T T.81 Annex K tables scaled by the IJG quality formula, libjpeg chroma
    subsampling; grey images use the luma table only. See `compress_tf` for the gradient.

    Shape:
        images: (H, W, C) or (N, H, W, C), C in {1, 3}; uint8, or float32 in [0, 1].
        returns: same shape and dtype.

    Args:
        images: tf.Tensor or NumPy array.
        quality: IJG quality, integer in 1...100.
        subsampling: "4:4:4", "4:2:2" or "4:2:0".

    Returns:
        The round-tripped images as a tf.Tensor.

    Raises:
        TypeError: bad image type/dtype, non-integer quality.
        ValueError: bad shape or values, quality outside 1...100, unknown subsampling.
    """
    mode = check_mode("ycbcr", subsampling)
    images = _check_tensor(images)
    tables = check_table(jpeg_table(quality, images.shape[-1]), images.shape[-1], "ycbcr")
    return compress_tensor(images, tables, "ycbcr", mode)


def straight_through(fn, x):
    """fn(x) forward, the identity backward (BPDA, Athalye et al., 2018). Unlike
    `x + stop_gradient(fn(x) - x)`, the forward value is fn(x) exactly (no float rounding that moves
    it off the 1/255 grid) and costs no extra passes over the batch."""
    @tf.custom_gradient
    def identity_gradient(x):
        return fn(x), lambda upstream: upstream

    return identity_gradient(x)


def check_backend_threads(backend: str, threads):
    """The native codec's workers per call (None: every core); only backend="native" takes any."""
    if backend == "tf" and threads is not None:
        raise ValueError(f"Expected threads=None with backend='tf' (threads sets the native codec's workers). "
                         f"Received: threads={threads!r}")
    return None if threads is None else check_threads(threads)


_OP_LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tf_op.so")
_op = None  # the op's Python wrapper once loaded; False when it cannot load or is disabled
_op_error = ""


def load_op():
    """The `NnjpegRoundTrip` op from nnjpeg/_tf_op.so, or None (and why, in `_op_error`)."""
    global _op, _op_error
    if _op is None and os.environ.get("NNJPEG_TF_OP", "") == "0":
        _op, _op_error = False, "disabled by NNJPEG_TF_OP=0"
    if _op is None:
        try:
            module = tf.load_op_library(_OP_LIBRARY)
        except (tf.errors.NotFoundError, OSError) as e:
            _op, _op_error = False, f"{type(e).__name__}: {e}".strip()
        else:
            _op = getattr(module, "nnjpeg_round_trip", False)
            # The library registers nothing when this TensorFlow lacks a C API function it binds.
            _op_error = "" if _op else f"{_OP_LIBRARY} loaded but registered no op (TensorFlow C API incomplete)"
    return _op or None


def native_op_status() -> str:
    """How `backend="native"` runs in TensorFlow: "op" (the codec as a TensorFlow op, from
    nnjpeg/_tf_op.so) or "numpy_function: <why not the op>" (the same codec reached through
    `tf.numpy_function`, with a hand-off to Python and the GIL on every call). The environment
    variable NNJPEG_TF_OP=0, read at the first call, selects the second."""
    return "op" if load_op() else f"numpy_function: {_op_error}"


def native_op(images, tables, mode, threads):
    """Runs the native codec on a tensor, keeping dtype and static shape.

    `tables` (planes, 64) and `mode` come already checked (`check_table`, `check_mode`). The op
    checks the images at run time as `nnjpeg.compress` does, with the same messages; called
    eagerly, a bad value raises ValueError as there, in a graph InvalidArgumentError.
    """
    threads = check_threads(threads)
    op = load_op()
    if op is None:
        def run(x):
            return codec.run(x, tables, mode, threads, "cpu")

        out = tf.numpy_function(run, [images], images.dtype, stateful=False, name="nnjpeg_compress")
        out.set_shape(images.shape)
        return out
    flat = [float(v) for v in np.asarray(tables).ravel()]
    try:
        return op(images, tables=flat, mode=mode, threads=threads)  # in a graph, it fails when run
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(_op_message(e.message)) from None


def _op_message(message: str) -> str:
    """The op's own message, without what eager TensorFlow wraps around it: "{{function_node ...}} "
    before, " [Op:NnjpegRoundTrip] ..." and the node trace after."""
    if message.startswith("{{"):
        message = message.split("}} ", 1)[-1]
    return message.split(" [Op:", 1)[0].split("\n", 1)[0]


def tf_compress(table=None, *, quality=None, color=None, subsampling=None, backend: str = "native", threads=None,
                key: str = "image"):
    """A `tf.data` map function that round-trips images through the codec.

    `ds.map(tf_compress(table), num_parallel_calls=tf.data.AUTOTUNE)` compresses every element;
    for elements that are tuples (`(image, label)`, `(image, *rest)`) only the first item is
    compressed, and for dicts (as TensorFlow Datasets yields them) only `element[key]`; the rest
    passes through. dtype and static shape are kept.

    Shape:
        image: (H, W, C) or a batch (N, H, W, C), C in {1, 3}; uint8, or float32 in [0, 1].

    Args:
        table: quantization table(s) as for `nnjpeg.compress`; required unless `quality` is given.
        quality: IJG quality 1...100 for standard JPEG (YCbCr, Annex K tables), as `nnjpeg.jpeg`;
            then `table` must be None.
        color: "rgb" or "ycbcr"; None means "rgb" with a table and "ycbcr" with `quality`
            (standard JPEG is always YCbCr, so `quality` with "rgb" is an error).
        subsampling: "4:4:4", "4:2:2" or "4:2:0"; anything but "4:4:4" needs YCbCr. None means
            "4:4:4" with a table and "4:2:0" with `quality` (the defaults of `compress` and `jpeg`).
        backend: "native" (the C++ codec as a TensorFlow CPU op, see `native_op_status`; not
            differentiable, not XLA-compilable) or "tf" (`compress_tf`).
        threads: worker threads of the native codec per call; None uses every core. Only with
            backend="native".
        key: the images' key in dict elements.

    Returns:
        A function `fn(image)` / `fn(image, *rest)` / `fn(element_dict)` returning the same structure.

    Raises:
        TypeError: non-numeric table, non-integer quality or threads, a key that is not a string.
        ValueError: neither or both of table and quality, unknown backend/color/subsampling,
            bad table, threads with backend="tf"; when called, a dict element without `key`.
    """
    check_choice("backend", backend, BACKENDS)
    if not isinstance(key, str):
        raise TypeError(f"Expected key to be a string (a dict element's key). Received: {key!r}")
    if quality is not None:
        if table is not None:
            raise ValueError("Expected either table or quality, not both (quality selects the standard JPEG "
                             f"tables). Received: table of shape {np.shape(table)}, quality={quality!r}")
        color = "ycbcr" if color is None else color
        if color != "ycbcr":
            raise ValueError(f"Expected color='ycbcr' or None with quality (standard JPEG is YCbCr). "
                             f"Received: color={color!r}")
    elif table is None:
        raise ValueError("Expected a quantization table or a quality. Received: table=None, quality=None")
    color = "rgb" if color is None else color
    if subsampling is None:
        subsampling = "4:4:4" if quality is None else "4:2:0"
    mode = check_mode(color, subsampling)
    threads = check_backend_threads(backend, threads)
    # Resolve the table now for both channel counts it may meet, so a bad one fails here.
    per_channels, errors = {}, []
    for channels in (1, 3):
        try:
            per_channels[channels] = check_table(table if quality is None else jpeg_table(quality, channels),
                                                  channels, color)
        except ValueError as e:
            errors.append(e)
    if not per_channels:
        raise errors[-1]

    def compress_one(images):
        images = _check_tensor(images, values=backend == "tf")
        tables = per_channels.get(images.shape[-1])
        if tables is None:
            check_table(table, images.shape[-1], color)  # raises, naming the expected shapes
        if backend == "tf":
            return compress_tensor(images, tables, color, mode)
        return native_op(images, tables, mode, threads)

    def fn(image, *rest):
        if not rest and isinstance(image, Mapping):
            if key not in image:
                raise ValueError(f"Expected dict elements holding the images under key={key!r}. "
                                 f"Received: keys {sorted(image)}")
            return {**image, key: compress_one(image[key])}
        if not rest and isinstance(image, (tuple, list)):
            return type(image)((compress_one(image[0]), *image[1:]))
        return (compress_one(image), *rest) if rest else compress_one(image)

    return fn
