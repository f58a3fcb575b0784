"""Public entry points of the native codec: argument checks here, the work in `nnjpeg._codec`."""

from __future__ import annotations

import os

import numpy as np

from . import _checks, _codec
from .tables import check_quality, standard_tables

__all__ = ["build_info", "compress", "default_threads", "jpeg"]

_COLORS = ("rgb", "ycbcr")
_SUBSAMPLING = {"4:4:4": 1, "4:2:2": 2, "4:2:0": 3}
_DEVICES = ("cpu", "cuda")
_MODE_RGB = 0
_MIN_STEP, _MAX_STEP = 0.001, 65535


def default_threads() -> int:
    """Cores this process may run on (what `threads=None` uses)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


IMAGES_EXPECTED = ("Expected images of dtype uint8 or float32 with shape (H, W, C) or (N, H, W, C), "
                    "C in {1, 3}")


def check_image_spec(dtype, shape, note: str = "") -> None:
    """Checks dtype and shape (entries may be None where unknown); shared with the TF backend."""
    if dtype not in (np.uint8, np.float32):
        raise TypeError(f"{IMAGES_EXPECTED}{note}. Received: dtype={dtype}, shape={shape}")
    if shape is None or len(shape) not in (3, 4) or shape[-1] not in (1, 3):
        raise ValueError(f"{IMAGES_EXPECTED}{note}. Received: dtype={dtype}, shape={shape}")
    if any(d is not None and d < 1 for d in shape[-3:-1]):
        raise ValueError(f"Expected images with H >= 1 and W >= 1. Received: shape={shape}")


def check_range(lo, hi, nonfinite) -> None:
    """Checks float32 images by their min, max and NaN/Inf count; shared with the TF backend."""
    if nonfinite:
        raise ValueError(f"Expected float32 images with finite values in [0, 1]. Received: {nonfinite} NaN/Inf values")
    if not (lo >= 0.0 and hi <= 1.0):
        raise ValueError(f"Expected float32 images with values in [0, 1]. Received: min={lo}, max={hi}")


def _check_images(images) -> np.ndarray:
    """Checks type, dtype and shape; returns a 4-D view (no copy, no cast). The float32 value range
    is checked natively as the samples load (`_run`)."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{IMAGES_EXPECTED}, as a NumPy array. Received: {type(images).__name__}")
    check_image_spec(images.dtype, images.shape)
    return images if images.ndim == 4 else images[np.newaxis]


def _check_out(out, images: np.ndarray) -> np.ndarray | None:
    """Checks a preallocated result against the images (as passed); returns its 4-D view."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"Expected out to be None or a NumPy array. Received: {type(out).__name__}")
    if out.dtype != images.dtype:
        raise TypeError(f"Expected out of the images' dtype {images.dtype}. Received: dtype={out.dtype}")
    if out.shape != images.shape:
        raise ValueError(f"Expected out of the images' shape {images.shape}. Received: shape={out.shape}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("Expected out to be C-contiguous and writeable. Received: "
                         f"c_contiguous={out.flags.c_contiguous}, writeable={out.flags.writeable}")
    if np.shares_memory(out, images) and not _same_buffer(out, images):
        raise ValueError("Expected out to be the images themselves (C-contiguous) or to share no memory with "
                         "them. Received: an array overlapping part of them")
    return out if out.ndim == 4 else out[np.newaxis]


def _same_buffer(out: np.ndarray, images: np.ndarray) -> bool:
    """Whether out (C-contiguous, same dtype and shape) is laid out exactly over the images."""
    return images.flags.c_contiguous and out.__array_interface__["data"][0] == images.__array_interface__["data"][0]


def check_table(table, channels: int, color: str) -> np.ndarray:
    """Returns a (planes, 64) float32 table stack for the native call."""
    t = np.asarray(table)
    if t.dtype.kind not in "iuf":
        raise TypeError(f"Expected a numeric quantization table. Received: dtype={t.dtype}")
    planes = 3 if channels == 3 else 1
    allowed = ["(8, 8)", f"({planes}, 8, 8)"] + (["(2, 8, 8) as (luma, chroma)"] if color == "ycbcr" and planes == 3 else [])
    t64 = t.astype(np.float64)
    # Bounded away from 0 and infinity so that steps, their reciprocals and q * step all stay finite
    # in float32 (JPEG's own tables hold 1...65535).
    if not np.isfinite(t64).all() or (t64 < _MIN_STEP).any() or (t64 > _MAX_STEP).any():
        low = np.nanmin(t64) if not np.isnan(t64).all() else np.nan
        high = np.nanmax(t64) if not np.isnan(t64).all() else np.nan
        raise ValueError(f"Expected quantization table entries that are finite and > 0, in [{_MIN_STEP}, {_MAX_STEP}]. "
                         f"Received: min={low}, max={high}, {np.count_nonzero(~np.isfinite(t64))} non-finite")
    if t.shape == (2, 8, 8) and color == "ycbcr" and planes == 3:
        t64 = t64[[0, 1, 1]]
    elif t.shape not in ((8, 8), (1, 8, 8), (planes, 8, 8)):
        raise ValueError(f"Expected a quantization table of shape {' or '.join(allowed)} for {channels}-channel "
                         f"images with color={color!r}. Received: shape={t.shape}")
    t64 = np.broadcast_to(t64, (planes, 8, 8))
    return np.ascontiguousarray(t64.reshape(planes, 64), dtype=np.float32)


_MAX_THREADS = 2**31 - 1  # the native calls' (and the TensorFlow op attribute's) int32


def check_threads(threads) -> int:
    if threads is None:
        return default_threads()
    return _checks.integer("threads", threads, 1, _MAX_THREADS, or_none=True)


def check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Expected {name} to be one of {', '.join(map(repr, choices))}. Received: {value!r}")
    return value


def check_mode(color, subsampling) -> int:
    """Validates color and subsampling; returns the native pipeline mode."""
    check_choice("color", color, _COLORS)
    check_choice("subsampling", subsampling, tuple(_SUBSAMPLING))
    if color == "rgb" and subsampling != "4:4:4":
        raise ValueError(f"Expected subsampling='4:4:4' with color='rgb' (chroma subsampling needs "
                         f"color='ycbcr'). Received: subsampling={subsampling!r}")
    return _MODE_RGB if color == "rgb" else _SUBSAMPLING[subsampling]


def jpeg_table(quality, channels: int) -> np.ndarray:
    """The standard tables at an IJG quality: (2, 8, 8) (luma, chroma) for colour, (8, 8) luma for grey."""
    luma, chroma = standard_tables(check_quality(quality))
    return np.stack([luma, chroma]) if channels == 3 else luma


def _range_of(batch: np.ndarray) -> tuple:
    return batch.min(), batch.max(), np.count_nonzero(~np.isfinite(batch))


def run(images, tables: np.ndarray, mode: int, threads, device: str, kernel: str = "", out=None) -> np.ndarray:
    batch = _check_images(images)
    threads = check_threads(threads)
    check_choice("device", device, _DEVICES)
    given = _check_out(out, images)
    if given is not None and batch.dtype == np.float32 and batch.size and _same_buffer(out, images):
        # Coded in place (_check_out let through no other overlap), a bad sample would be found
        # only after earlier rows were overwritten.
        check_range(*_range_of(batch))
    result = _codec.roundtrip(batch, tables, mode, threads, kernel, device, given)
    if result is None:  # float32 samples outside [0, 1], found as they loaded
        check_range(*_range_of(batch))
        raise RuntimeError("the native range check found float32 values outside [0, 1] that NumPy did not")
    if out is not None:
        return out
    return result if images.ndim == 4 else result[0]


def compress(images, table, *, color: str = "rgb", subsampling: str = "4:4:4", threads=None,
             device: str = "cpu", out=None) -> np.ndarray:
    """JPEG-like round trip with an arbitrary quantization table, without entropy coding.

    Per 8x8 block and plane: level shift by -128, orthonormal DCT-II, quantize
    `round(coef / table)` (exact ties away from zero, as libjpeg; see docs/codec.md), dequantize,
    inverse DCT, +128, round, clamp to [0, 255]. `color="rgb"` works on each channel
    independently, as the NN-favored JPEG of the NN-JPEG paper (Sec. 3.2) does; `color="ycbcr"` wraps the round trip in the JFIF BT.601
    full-range transform with chroma subsampling (box-filter down, libjpeg "fancy" triangle up).
    Images are edge-replicated to whole blocks (MCUs) and cropped back.

    Shape:
        images: (H, W, C) or (N, H, W, C), C in {1, 3}; uint8, or float32 in [0, 1].
        returns: same shape and dtype. float32 results lie on the 1/255 grid (`k / 255`, k whole),
        exactly as decoding a JPEG file and dividing by 255.

    Args:
        images: NumPy array; non-contiguous and read-only arrays are fine, N may be 0.
        table: (8, 8) for every plane, or (C, 8, 8) per plane; with `color="ycbcr"` and C = 3,
            also (2, 8, 8) as (luma, chroma). Finite values > 0. Grey images (C = 1) use the table
            as is, whatever `color` says.
        color: "rgb" (no colour transform) or "ycbcr".
        subsampling: "4:4:4", "4:2:2" or "4:2:0"; anything but "4:4:4" needs `color="ycbcr"`.
        threads: worker threads; None uses every core this process may run on. Results are
            bit-identical for every value.
        device: "cpu", or "cuda" when nnjpeg was built with `-DNNJPEG_CUDA=ON`.
        out: where to write the result, instead of a new array: C-contiguous and writeable, of
            the images' dtype and shape; `images` itself (when C-contiguous) codes them in place.
            Without it, a new array of 32 MiB or more (a 64 x 224 x 224 x 3 float32 batch is 38.5
            MB) takes a buffer kept from an earlier output of the same size whose arrays were all
            freed (two at most, 1 GiB in all, are kept), rather than fresh memory, which the system
            would zero on first write every call.

    Returns:
        The round-tripped images (`out` when given).

    Raises:
        TypeError: images not a uint8/float32 NumPy array, non-numeric table, non-integer threads,
            `out` not an array of the images' dtype.
        ValueError: bad shape, NaN/Inf or out-of-range floats (with `out`, before anything is
            written), bad table shape or values, unknown color/subsampling/device, `out` of
            another shape, not C-contiguous and writeable, or overlapping part of the images.
    """
    mode = check_mode(color, subsampling)
    channels = images.shape[-1] if isinstance(images, np.ndarray) and images.ndim in (3, 4) else 3
    tables = check_table(table, channels, color)
    return run(images, tables, mode, threads, device, out=out)


def jpeg(images, quality: int = 75, *, subsampling: str = "4:2:0", threads=None, device: str = "cpu",
         out=None) -> np.ndarray:
    """Standard baseline JPEG round trip, without entropy coding (which is lossless).

    JFIF YCbCr, the ITU-T T.81 Annex K tables scaled by the IJG quality formula, chroma
    subsampling as libjpeg; what Pillow's `save(quality=q, subsampling=...)` then `open` gives,
    within the differences of libjpeg's integer DCT. Grey images use the luma table only.

    Shape:
        images: (H, W, C) or (N, H, W, C), C in {1, 3}; uint8, or float32 in [0, 1].
        returns: same shape and dtype (float32 on the 1/255 grid).

    Args:
        images: NumPy array.
        quality: IJG quality, integer in 1...100.
        subsampling: "4:4:4", "4:2:2" or "4:2:0".
        threads: worker threads; None uses every core this process may run on.
        device: "cpu" or "cuda".
        out: a preallocated result, or `images` itself, as in `compress`.

    Returns:
        The round-tripped images (`out` when given).

    Raises:
        TypeError: bad image type/dtype, non-integer quality or threads, `out` of another dtype.
        ValueError: bad shape or values, quality outside 1...100, unknown subsampling/device, a bad
            `out` (as in `compress`).
    """
    channels = 3 if _is_color(images) else 1
    return compress(images, jpeg_table(quality, channels), color="ycbcr", subsampling=subsampling,
                    threads=threads, device=device, out=out)


def _is_color(images) -> bool:
    return isinstance(images, np.ndarray) and images.ndim in (3, 4) and images.shape[-1] == 3


def build_info() -> dict:
    """What the native module was built with and what it runs.

    Returns:
        dict with `kernels_compiled` (e.g. ["scalar", "avx2", "avx512"]), `kernels_runnable` (those
        this CPU supports), `kernel` (the one in use; "scalar" when `NNJPEG_FORCE_SCALAR=1`),
        `rows` (the row conversions that go with it: "avx512vbmi" under the "avx512" kernel
        where the CPU has VBMI, whose byte permutes also let that kernel code 3-channel uint8
        images a multiple of 8 pixels wide straight from their interleaved rows; else "avx2" or
        "scalar"), `cuda_compiled`, `cuda_devices`, `cuda_emulated` (True only in a build with
        `-DNNJPEG_CUDA_EMULATION=ON`, where device="cuda" runs the CUDA kernels on the CPU, for
        checking them; its one "device" is the emulation), `compiler`.
    """
    return dict(_codec.build_info())
