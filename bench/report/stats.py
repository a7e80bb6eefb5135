"""Small pure statistics for reports: paired tests, Holm's correction, best/second marks, paper deltas.

Every function takes plain numbers or arrays and returns plain numbers, so each
one is pinned by a test on fixed vectors (``tests/test_stats.py``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as _scipy

DECIMALS = 4  # the precision metrics are shown (and compared for ties) at


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided paired t-test of ``a`` against ``b``: (t statistic, p-value).

    Identical vectors (every difference zero) have no evidence of a difference: p = 1. Differences that are all
    the same non-zero number (up to rounding; e.g. a few seeds shifted alike) have no spread: t is infinite, p = 0,
    the test's limit, where scipy would warn of precision loss.
    """
    a, b = _pair(a, b)
    diff = a - b
    if not np.any(diff):
        return 0.0, 1.0
    if np.ptp(diff) <= 1e-9 * np.abs(diff).max():
        return math.copysign(math.inf, diff.mean()), 0.0
    result = _scipy.ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue)


def welch_ttest(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided two-sample t-test of ``a`` against ``b`` without equal variances (Welch): (t, p-value).

    For samples with nothing to pair, such as the seeds of two methods. Two samples with no spread have p = 1
    if they are equal and p = 0 (t infinite) if not, the test's limits.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs two or more values on each side, found {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)  # computed here: scipy warns when one side is constant
    diff = a.mean() - b.mean()
    if va + vb == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    return float(t), float(min(1.0, 2 * _scipy.t.sf(abs(t), df)))


def wilcoxon_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of ``a`` against ``b``: (statistic, p-value).

    scipy's defaults: zero differences are dropped (``zero_method="wilcox"``), the
    exact distribution for small samples and the normal approximation otherwise.
    All differences zero: p = 1.
    """
    a, b = _pair(a, b)
    if not np.any(a - b):
        return 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sample size too small for normal approximation" etc.
        result = _scipy.wilcoxon(a, b)
    return float(result.statistic), float(result.pvalue)


def _pair(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired tests need two 1-d arrays of one length, found shapes {a.shape} and {b.shape}")
    return a, b


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Sorted ascending, the i-th smallest of m p-values becomes (m - i) * p (i from 0),
    made monotone by a running maximum and capped at 1. Reject where adjusted p < alpha.
    """
    p = [float(x) for x in pvalues]
    m = len(p)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: (p[i], i))):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def best_second(values: Sequence[float | None], decimals: int = DECIMALS) -> list[str]:
    """Marks for one column where higher is better: ``"best"``, ``"second"`` or ``""`` per value.

    Values are compared as shown, rounded to ``decimals``. Every value equal to the
    highest gets ``best``; every value equal to the next lower distinct value gets
    ``second`` (dense ranking: a tie for best does not use up the second place).
    ``None`` and NaN get no mark.
    """
    shown = [None if v is None or math.isnan(v) else round(float(v), decimals) for v in values]
    distinct = sorted({v for v in shown if v is not None}, reverse=True)
    marks = {distinct[0]: "best"} if distinct else {}
    if len(distinct) > 1:
        marks[distinct[1]] = "second"
    return [marks.get(v, "") if v is not None else "" for v in shown]


def delta_percent(ours: float, published: float) -> float:
    """Relative difference of our number to the published one, in percent: 0.05 vs 0.04 is +25.0."""
    return 100.0 * (ours - published) / published


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof 1; ``None`` for fewer than two values)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)
