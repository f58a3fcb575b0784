"""How sure an accuracy is: Wilson score intervals for a share of correct answers, and Newcombe's
interval for the difference of two.

    >>> from nnjpeg import stats
    >>> stats.wilson(36, 50)            # 72 % of 50 images
    (0.5833..., 0.8253...)
    >>> stats.wilson(720, 1000)         # 72 % of 1000 images
    (0.6913..., 0.7469...)

At 50 images an accuracy of 72 % is anywhere from 58 % to 83 %; the report states every cell with its
interval and judges a claim only where the interval decides it.
"""

from __future__ import annotations

import math
import numbers

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile: two-sided 95 %


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Expected {name} to be an integer. Received: {type(value).__name__} {value!r}")
    return int(value)


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (Wilson, 1927) of the share `correct / n`: unlike the normal
    approximation it stays inside [0, 1] and is sound near 0 % and 100 % and at small n.

    Args:
        correct: the answers that were right, 0 <= correct <= n.
        n: the answers, >= 1.
        z: the normal quantile of the coverage (default 1.96: 95 %).

    Returns:
        (low, high), shares in [0, 1].

    Raises:
        TypeError: `correct` or `n` is not an integer.
        ValueError: n < 1, or `correct` outside 0...n.
    """
    correct, n = _count("correct", correct), _count("n", n)
    if n < 1 or not 0 <= correct <= n:
        raise ValueError(f"Expected 0 <= correct <= n and n >= 1. Received: correct={correct}, n={n}")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def counted(share: float, n: int) -> int:
    """The number of right answers behind an accuracy `share` of `n` (results saved before counts
    were kept hold the share alone).

    Raises:
        ValueError: `share` is not a share of `n` answers (k / n for an integer k, to rounding).
    """
    n = _count("n", n)
    k = round(share * n)
    if n < 1 or abs(k - share * n) > 1e-6 * n or not 0 <= k <= n:
        raise ValueError(f"Expected an accuracy that is k / {n} for an integer k. Received: {share!r}")
    return k


def difference(correct_a: int, n_a: int, correct_b: int, n_b: int, z: float = Z95) -> tuple[float, float, float]:
    """The difference of two shares, a - b, with Newcombe's hybrid score interval (Newcombe, 1998,
    method 10), built from each share's Wilson interval. For two shares measured on the same images
    it errs wide (it ignores their correlation): a claim it decides is decided.

    Returns:
        (difference, low, high), in shares.
    """
    pa, pb = correct_a / _count("n_a", n_a), correct_b / _count("n_b", n_b)
    la, ua = wilson(correct_a, n_a, z)
    lb, ub = wilson(correct_b, n_b, z)
    d = pa - pb
    return d, d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2), d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)


def judge(low: float, high: float, limit: float, *, at_least: bool = False) -> str:
    """Whether a claim "the value is at most `limit`" (or, with `at_least`, "at least `limit`")
    holds, given the value's interval: "reproduced" when the whole interval is on the claim's side,
    "not reproduced" when the whole interval is on the other side, else "not decided at this n"."""
    holds, fails = (low >= limit, high < limit) if at_least else (high <= limit, low > limit)
    if holds:
        return "reproduced"
    if fails:
        return "not reproduced"
    return "not decided at this n"
