"""Checks of parameters and images shared by the library's entry points: a TypeError for a wrong type, a
ValueError for a value out of range, each naming what was expected and what was received."""

from __future__ import annotations

import math
import numbers

import numpy as np


def integer(name: str, value, low: int, high: int | None = None, *, meaning: str = "", or_none: bool = False) -> int:
    """`value` as an int in [low, high] (no upper bound when high is None); `meaning` (", the number
    of test images,") follows the name; `or_none` says in the message that None is accepted too (the
    caller handles it)."""
    expected = (f"Expected {name}{meaning} to be {'None or ' if or_none else ''}an integer "
                + (f">= {low}" if high is None else f"in {low}...{high}"))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{expected}. Received: {name}={value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{expected}. Received: {name}={value!r}")
    return int(value)


def real(name: str, value, low: float, high: float | None = None, *, high_open: bool = False) -> float:
    """`value` as a finite float in [low, high] ([low, high) with high_open; no upper bound when high
    is None)."""
    expected = f"Expected {name} to be a finite number " + (
        f">= {low:g}" if high is None else f"in [{low:g}, {high:g}{')' if high_open else ']'}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{expected}. Received: {name}={value!r}")
    if not (math.isfinite(value) and value >= low and (high is None or value < high or (value == high and not high_open))):
        raise ValueError(f"{expected}. Received: {name}={value!r}")
    return float(value)


def unit_images(name: str, images, *, dtypes=("float32",), channels=None, min_side: int = 1,
                empty: bool = False) -> np.ndarray:
    """`images` as an (N, H, W, C) NumPy array of one of `dtypes`, H, W >= min_side, C in `channels`
    (any when None), N >= 1 (N >= 0 with `empty`), with finite values in [0, 1]. Returns it without a
    copy or a cast."""
    a = np.asarray(images)
    spec = " or ".join(dtypes) + " (N, H, W, C) in [0, 1]" + ("" if empty else " with N >= 1")
    spec += f", H, W >= {min_side}" if min_side > 1 else ""
    spec += f" and C in {{{', '.join(map(str, channels))}}}" if channels else ""
    expected = f"Expected {name} {spec}. Received: dtype={a.dtype}, shape={a.shape}"
    if a.dtype.name not in dtypes:
        raise TypeError(expected)
    if (a.ndim != 4 or (not empty and not len(a)) or min(a.shape[1:3]) < min_side
            or (channels and a.shape[-1] not in channels)):
        raise ValueError(expected)
    if not a.size:
        return a
    lo, hi = a.min(), a.max()  # NaN propagates into both, and an Inf shows in one
    if not (math.isfinite(lo) and math.isfinite(hi)):
        nonfinite = np.count_nonzero(~np.isfinite(a))
        raise ValueError(f"Expected {name} with finite values in [0, 1]. Received: {nonfinite} NaN/Inf values")
    if not (lo >= 0.0 and hi <= 1.0):
        raise ValueError(f"Expected {name} with values in [0, 1]. Received: min={lo}, max={hi}")
    return a
