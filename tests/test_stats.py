"""nnjpeg.stats: Wilson intervals against SciPy's, Newcombe's difference, and the verdicts they give."""

import math

import pytest
from scipy.stats import binomtest

from nnjpeg import stats


@pytest.mark.parametrize("n", [1, 7, 50, 250, 1000, 10000])
def test_wilson_equals_scipys(n):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n} & set(range(n + 1))):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert stats.wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_intervals_narrow_with_n_and_hold_the_share():
    widths = [(lambda lo, hi: hi - lo)(*stats.wilson(int(0.72 * n), n)) for n in (50, 200, 1000, 10000)]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0.2 and widths[-1] < 0.02
    lo, hi = stats.wilson(36, 50)
    assert lo < 0.72 < hi


def test_difference_is_newcombes_hybrid_score_interval():
    d, lo, hi = stats.difference(9431, 10000, 9239, 10000)
    la, ua = stats.wilson(9431, 10000)
    lb, ub = stats.wilson(9239, 10000)
    assert d == pytest.approx(0.0192)
    assert lo == pytest.approx(d - math.hypot(0.9431 - la, ub - 0.9239))
    assert hi == pytest.approx(d + math.hypot(ua - 0.9431, 0.9239 - lb))
    assert lo < d < hi and 0.005 < hi - lo < 0.02
    # The same drop measured on a tenth of the images: a wider interval around it.
    d10, lo10, hi10 = stats.difference(943, 1000, 924, 1000)
    assert hi10 - lo10 > 3 * (hi - lo)


def test_judge_decides_only_outside_the_interval():
    assert stats.judge(0.01, 0.02, 0.025) == "reproduced"
    assert stats.judge(0.03, 0.04, 0.025) == "not reproduced"
    assert stats.judge(0.01, 0.04, 0.025) == "not decided at this n"
    assert stats.judge(0.91, 0.95, 0.9, at_least=True) == "reproduced"
    assert stats.judge(0.80, 0.89, 0.9, at_least=True) == "not reproduced"
    assert stats.judge(0.88, 0.92, 0.9, at_least=True) == "not decided at this n"


def test_counted_and_bad_input():
    assert stats.counted(0.72, 50) == 36 and stats.counted(1 / 3, 3) == 1
    with pytest.raises(ValueError, match=r"Expected an accuracy that is k / 50 for an integer k. Received: 0.715"):
        stats.counted(0.715, 50)
    with pytest.raises(ValueError, match=r"Expected 0 <= correct <= n and n >= 1. Received: correct=5, n=4"):
        stats.wilson(5, 4)
    with pytest.raises(ValueError, match=r"Received: correct=0, n=0"):
        stats.wilson(0, 0)
    with pytest.raises(TypeError, match=r"Expected correct to be an integer. Received: float 3.0"):
        stats.wilson(3.0, 4)
