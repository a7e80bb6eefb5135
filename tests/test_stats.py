import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.report import stats

# fixed per-user vectors: 12 users, two methods, some ties and zero differences
A = np.array([0.0, 0.5, 0.33, 1.0, 0.0, 0.25, 0.63, 0.0, 0.2, 0.43, 1.0, 0.39])
B = np.array([0.0, 0.33, 0.5, 0.63, 0.1, 0.25, 0.39, 0.0, 0.0, 0.2, 0.5, 0.39])


def test_paired_ttest_is_scipys():
    expected = scipy_stats.ttest_rel(A, B)
    t, p = stats.paired_ttest(A, B)
    assert t == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-12)
    assert p == pytest.approx(0.059947, abs=1e-6)  # pinned by hand: t = 2.0966 on 11 df


def test_wilcoxon_is_scipys():
    expected = scipy_stats.wilcoxon(A, B)
    w, p = stats.wilcoxon_test(A, B)
    assert (w, p) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)
    large_a = np.linspace(0, 1, 200) ** 2
    large_b = np.linspace(0, 1, 200) ** 2.2
    assert stats.wilcoxon_test(large_a, large_b)[1] == pytest.approx(scipy_stats.wilcoxon(large_a, large_b).pvalue)


def test_identical_vectors_have_p_one_and_bad_shapes_are_an_error():
    assert stats.paired_ttest(A, A) == (0.0, 1.0)
    assert stats.wilcoxon_test(A, A) == (0.0, 1.0)
    with pytest.raises(ValueError, match="one length"):
        stats.paired_ttest(A, B[:-1])


def test_differences_all_alike_have_no_spread_so_t_is_infinite_and_p_zero():
    shifted = [x + 0.01 for x in A]  # every difference -0.01, up to rounding (scipy would warn of precision loss)
    assert stats.paired_ttest(A, shifted) == (-math.inf, 0.0)
    assert stats.paired_ttest(shifted, A) == (math.inf, 0.0)


def test_welch_is_scipys_unequal_variance_t_test_with_clear_limits():
    a, b = [0.036, 0.037, 0.038], [0.046, 0.047, 0.0475]
    assert stats.welch_ttest(a, b)[1] == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    # one side constant: Welch is the one-sample t-test of the other side against that value (scipy's two-sample
    # function warns of precision loss there; ours does not)
    assert stats.welch_ttest([0.04, 0.04, 0.04], b)[1] == pytest.approx(scipy_stats.ttest_1samp(b, 0.04).pvalue)
    assert stats.welch_ttest([0.04, 0.04], [0.04, 0.04]) == (0.0, 1.0)
    assert stats.welch_ttest([0.04, 0.04], [0.03, 0.03]) == (math.inf, 0.0)
    with pytest.raises(ValueError, match="two or more values on each side"):
        stats.welch_ttest([0.04], [0.03, 0.05])


def test_holm_on_hand_computed_values():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1 and monotone: 0.4*3 -> 1, 0.45*2 = 0.9 -> 1, 0.9 -> 1
    assert stats.holm([0.4, 0.45, 0.9]) == [1.0, 1.0, 1.0]
    assert stats.holm([0.3, 0.9, 0.02]) == pytest.approx([0.6, 0.9, 0.06])
    assert stats.holm([0.2]) == [0.2]
    assert stats.holm([]) == []


def test_best_and_second_marks_with_ties():
    assert stats.best_second([0.05, 0.04, 0.05, 0.03]) == ["best", "second", "best", ""]
    # compared as shown (4 decimals): 0.04561 and 0.04559 are both 0.0456
    assert stats.best_second([0.04561, 0.04559, 0.04, 0.04]) == ["best", "best", "second", "second"]
    assert stats.best_second([0.1, None, math.nan, 0.2]) == ["second", "", "", "best"]
    assert stats.best_second([0.3]) == ["best"]
    assert stats.best_second([]) == []


def test_paper_delta_and_mean_std():
    assert stats.delta_percent(0.0500, 0.0400) == pytest.approx(25.0)
    assert f"{stats.delta_percent(0.0300, 0.0400):+.1f}%" == "-25.0%"
    assert stats.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert stats.mean_std([0.5]) == (0.5, None)
