"""Quantization tables: the standard JPEG ones and the NN-favored OF/AF split."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["ANNEX_K_CHROMA", "ANNEX_K_LUMA", "fd_table", "nn_table", "quality_scale", "standard_tables"]

# ITU-T T.81 (1992), Annex K, Tables K.1 (luminance) and K.2 (chrominance), natural (row-major)
# order: row = vertical frequency, column = horizontal frequency.
ANNEX_K_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float32,
)
ANNEX_K_CHROMA = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
    ],
    dtype=np.float32,
)
ANNEX_K_LUMA.flags.writeable = False
ANNEX_K_CHROMA.flags.writeable = False


def check_quality(quality) -> int:
    """Returns `quality` as an int after checking it is an integer in 1...100."""
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral):
        raise TypeError(f"Expected quality to be an integer in 1...100. Received: {quality!r} "
                        f"of type {type(quality).__name__}")
    if not 1 <= quality <= 100:
        raise ValueError(f"Expected quality to be an integer in 1...100. Received: quality={quality}")
    return int(quality)


def quality_scale(table, quality: int) -> np.ndarray:
    """Scales a base table by the IJG quality formula (libjpeg's `jpeg_quality_scaling`).

    scale = 5000 / q for q < 50, else 200 - 2 q; entries become floor((t * scale + 50) / 100),
    clamped to [1, 255] as libjpeg does for baseline JPEG (what Pillow writes).

    Args:
        table: (8, 8) base table, e.g. `ANNEX_K_LUMA`.
        quality: integer in 1...100.

    Returns:
        (8, 8) float32 table of whole numbers in [1, 255].

    Raises:
        TypeError: `quality` is not an integer.
        ValueError: `quality` is outside 1...100.
    """
    q = check_quality(quality)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    base = np.asarray(table, dtype=np.int64)
    return np.clip((base * scale + 50) // 100, 1, 255).astype(np.float32)


def standard_tables(quality: int = 75) -> tuple[np.ndarray, np.ndarray]:
    """The standard JPEG tables at an IJG quality.

    Args:
        quality: integer in 1...100 (libjpeg/Pillow's `quality`).

    Returns:
        `(luma, chroma)`, each (8, 8) float32. `np.stack` them to pass both to
        `nnjpeg.compress(..., color="ycbcr")` as a (2, 8, 8) table.

    Raises:
        TypeError: `quality` is not an integer.
        ValueError: `quality` is outside 1...100.
    """
    return quality_scale(ANNEX_K_LUMA, quality), quality_scale(ANNEX_K_CHROMA, quality)


def nn_table(k: int, of: float = 16.0, af: float = 50.0) -> np.ndarray:
    """The NN-favored quantization table (NN-JPEG paper, Sec. 3.2).

    The 8x8 block is split along the anti-diagonals of the zig-zag scan: the original-favored (OF)
    band holds the frequencies (i, j) with i + j < k and is quantized with step `of`; the rest, the
    adversarial-favored (AF) band, with step `af`. The paper's search (Algorithm 1) settles on
    of = 16 and af = 50; k comes from `nnjpeg search-table` on the task at hand.

    Args:
        k: number of anti-diagonals in the OF band, 0...15 (0: all AF, 15: all OF).
        of: quantization step of the OF band, > 0.
        af: quantization step of the AF band, > 0.

    Returns:
        (8, 8) float32 table.

    Raises:
        TypeError: `k` is not an integer.
        ValueError: `k` is outside 0...15, or a step is not a finite positive number.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"Expected k to be an integer in 0...15. Received: {k!r} of type {type(k).__name__}")
    if not 0 <= k <= 15:
        raise ValueError(f"Expected k to be an integer in 0...15. Received: k={k}")
    for name, step in (("of", of), ("af", af)):
        if isinstance(step, bool) or not isinstance(step, numbers.Real) or not np.isfinite(step) or step <= 0:
            raise ValueError(f"Expected {name} to be a finite number > 0. Received: {name}={step!r}")
    i, j = np.indices((8, 8))
    return np.where(i + j < k, np.float32(of), np.float32(af)).astype(np.float32)


def fd_table(band_std, *, energy: float = 0.95, low: float = 10.0, high: float = 60.0) -> np.ndarray:
    """A Feature-Distillation-style two-band table (after Liu et al., CVPR 2019), set from data.

    Bands are ranked by the standard deviation of their benign DCT coefficients (`band_std`, e.g.
    from `nnjpeg.analysis.band_std` on training images); the smallest set of top-ranked bands
    holding `energy` of the benign variance is the accuracy-sensitive band, quantized with step
    `low`; the rest, where benign content is weak and perturbations dominate, with step `high`.
    Unlike `nn_table`, the split follows measured statistics rather than the anti-diagonals, and
    FD runs in YCbCr (`compress(..., color="ycbcr")`).

    Args:
        band_std: (8, 8) non-negative finite stds, not all zero.
        energy: fraction of the benign variance kept in the low-step band, in (0, 1].
        low, high: quantization steps of the two bands, finite and > 0.

    Returns:
        (8, 8) float32 table.

    Raises:
        ValueError: a wrong shape, negative/NaN/all-zero stds, or out-of-range parameters.
    """
    std = np.asarray(band_std, dtype=np.float64)
    if std.shape != (8, 8) or not np.all(np.isfinite(std)) or np.any(std < 0) or not np.any(std > 0):
        bad = int(np.count_nonzero(~np.isfinite(std) | (std < 0))) if std.size else 0
        raise ValueError(f"Expected band_std of shape (8, 8) with finite values >= 0, not all zero. "
                         f"Received: shape {std.shape}, {bad} negative or non-finite values")
    if isinstance(energy, bool) or not isinstance(energy, numbers.Real) or not 0.0 < energy <= 1.0:
        raise ValueError(f"Expected energy in (0, 1]. Received: {energy!r}")
    for name, step in (("low", low), ("high", high)):
        if isinstance(step, bool) or not isinstance(step, numbers.Real) or not np.isfinite(step) or step <= 0:
            raise ValueError(f"Expected {name} to be a finite number > 0. Received: {name}={step!r}")
    var = (std * std).ravel()
    order = np.argsort(-var, kind="stable")
    kept = int(np.searchsorted(np.cumsum(var[order]) / var.sum(), energy - 1e-12)) + 1
    table = np.full(64, np.float32(high), np.float32)
    table[order[:kept]] = np.float32(low)
    return table.reshape(8, 8)
