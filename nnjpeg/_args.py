"""argparse types for the command lines' numbers: a value out of range is named by argparse, before
any work starts, rather than failing deep inside a run or being used as something else (a negative
count slicing from the end, say)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in [low, high] (no upper bound when high is None)."""
    expected = f"an integer >= {low}" if high is None else f"an integer in {low}...{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}. Received: {text!r}")
        return value

    return parse


def real(low: float, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high], or (low, high] with low_open (no upper bound when high is None)."""
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    expected = f"a finite number {bound}" + ("" if high is None else f" and <= {high:g}")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if (not math.isfinite(value) or value < low or (low_open and value == low)
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"expected {expected}. Received: {text!r}")
        return value

    return parse


COUNT = integer(1)  # images, epochs, steps: at least one
SEED = integer(0)  # NumPy's generators take non-negative seeds
EPS = real(0, low_open=True)  # an L-inf budget on images in [0, 1]


def shard(text: str) -> tuple[int, int]:
    """"I/K" with 0 <= I < K: the I-th of K parts of the images (a job index of a cluster array)."""
    i, sep, k = text.partition("/")
    if not (sep and i.isdigit() and k.isdigit() and 0 <= int(i) < int(k)):
        raise argparse.ArgumentTypeError(f"expected I/K with 0 <= I < K, e.g. 0/4. Received: {text!r}")
    return int(i), int(k)


def model_list(text: str) -> tuple[str, ...]:
    """Distinct comma-separated pretrained names or .keras paths."""
    models = tuple(text.split(","))
    if not all(models) or len(set(models)) != len(models):
        raise argparse.ArgumentTypeError("expected distinct comma-separated pretrained names or .keras paths, e.g. "
                                         f"fmnist/classifier,fmnist/surrogate-c. Received: {text!r}")
    return models


def size(text: str) -> tuple[int, int]:
    """"H,W": an image size of two positive integers, e.g. 224,224."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected H,W, two positive integers, e.g. 224,224. Received: {text!r}")
    return int(parts[0]), int(parts[1])
