"""Checks of scalar parameters shared by the library's entry points: a TypeError for a wrong type, a
ValueError for a value out of range, each naming what was expected and what was received."""

from __future__ import annotations

import math
import numbers


def integer(name: str, value, low: int, *, meaning: str = "") -> int:
    """`value` as an int >= low; `meaning` (", the number of test images,") follows the name."""
    expected = f"Expected {name}{meaning} to be an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{expected}. Received: {name}={value!r}")
    if value < low:
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
