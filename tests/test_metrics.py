import math

import numpy as np
import pytest
import torch

from bench.data.dataset import RawData, build_dataset
from bench.data.protocol import Protocol, Split
from bench.eval.evaluator import Evaluator
from bench.eval.metrics import metrics_from_ranks


def metrics(greater, equal, ks=(1, 2, 5)):
    out = metrics_from_ranks(torch.tensor(greater), torch.tensor(equal), ks)
    return {k: v.numpy() for k, v in out.items()}


def test_untied_ranks_match_hand_computed_values():
    m = metrics([0, 1, 4, 7], [0, 0, 0, 0])
    assert m["recall@1"].tolist() == [1, 0, 0, 0]
    assert m["recall@2"].tolist() == [1, 1, 0, 0]
    assert m["recall@5"].tolist() == [1, 1, 1, 0]
    np.testing.assert_allclose(m["ndcg@5"], [1, 1 / math.log2(3), 1 / math.log2(6), 0])
    np.testing.assert_allclose(m["ndcg@1"], [1, 0, 0, 0])
    np.testing.assert_allclose(m["mrr"], [1, 1 / 2, 1 / 5, 1 / 8])


def test_ties_give_the_expectation_under_random_tie_breaking():
    # target tied with 1 other item at the top: rank 1 or 2 with probability 1/2 each
    m = metrics([0], [1])
    assert m["recall@1"][0] == pytest.approx(0.5)
    assert m["recall@2"][0] == pytest.approx(1.0)
    assert m["ndcg@1"][0] == pytest.approx(0.5)
    assert m["ndcg@2"][0] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert m["mrr"][0] == pytest.approx((1 + 1 / 2) / 2)
    # one item above, tied with 3 others: ranks 2..5 uniformly
    m = metrics([1], [3])
    assert m["recall@2"][0] == pytest.approx(1 / 4)
    assert m["recall@5"][0] == pytest.approx(1.0)
    expected = sum(1 / math.log2(r + 1) for r in (2, 3, 4, 5)) / 4
    assert m["ndcg@5"][0] == pytest.approx(expected)


def test_k_larger_than_the_catalogue():
    # catalogue of 3 items: whatever the rank, recall@5 is 1
    m = metrics([0, 1, 2], [0, 0, 0], ks=(5,))
    assert m["recall@5"].tolist() == [1, 1, 1]
    np.testing.assert_allclose(m["ndcg@5"], [1, 1 / math.log2(3), 0.5])


def tiny_split(exclude_history=False):
    raw = RawData(sequences={"u1": ["1", "2", "3", "4"], "u2": ["3", "1", "2"]},
                  items={})
    ds = build_dataset("tiny", raw, {"fields": []})
    return Split(ds, Protocol(history_len=3, ks=(1, 2, 5), exclude_history=exclude_history))


class FixedScores:
    def __init__(self, scores):
        self.scores = torch.tensor(scores, dtype=torch.float32)

    def score(self, histories, users):
        return self.scores[users]


def test_evaluator_on_a_fixed_scorer():
    split = tiny_split()
    # test targets: u1 -> item "4" (index 3), u2 -> item "2" (index 1)
    model = FixedScores([[0.1, 0.2, 0.3, 0.9], [0.5, 0.4, 0.9, 0.0]])
    per_user = Evaluator(split, "test").evaluate(model).per_user
    assert per_user["recall@1"].tolist() == [1.0, 0.0]
    assert per_user["ndcg@5"][1] == pytest.approx(1 / math.log2(4))


def test_exclude_history_removes_seen_items_but_not_the_target():
    split = tiny_split(exclude_history=True)
    # u2 history (test stage) = items 3, 1 -> indices 2, 0; both outscore the target (index 1)
    model = FixedScores([[0.1, 0.2, 0.3, 0.9], [0.5, 0.4, 0.9, 0.0]])
    per_user = Evaluator(split, "test").evaluate(model).per_user
    assert per_user["recall@1"].tolist() == [1.0, 1.0]


class FixedLists:
    def rank(self, histories, users, k):
        lists = torch.full((len(users), k), -1)
        lists[:, 0] = torch.tensor([2, 1])[users]
        lists[:, 1] = torch.tensor([3, 0])[users]
        return lists


def test_ranked_lists_count_invalid_entries_as_misses():
    split = tiny_split()
    result = Evaluator(split, "test").evaluate(FixedLists())
    assert result.per_user["recall@1"].tolist() == [0.0, 1.0]
    assert result.per_user["recall@2"].tolist() == [1.0, 1.0]
    assert result.invalid_rate == pytest.approx(6 / 10)


def test_nan_scores_are_an_error_not_a_perfect_rank():
    split = tiny_split()
    with pytest.raises(Exception, match="NaN"):
        Evaluator(split, "test").evaluate(FixedScores([[float("nan")] * 4] * 2))


class HistoryFirstLists:
    def rank(self, histories, users, k):
        lists = torch.full((len(users), k), -1)
        lists[:, 0] = torch.tensor([0, 2])[users]  # u2: item index 2 is in its history
        lists[:, 1] = torch.tensor([3, 1])[users]  # then each user's target
        return lists


def test_exclude_history_also_applies_to_ranked_lists():
    plain = Evaluator(tiny_split(), "test").evaluate(HistoryFirstLists()).per_user
    excluded = Evaluator(tiny_split(exclude_history=True), "test").evaluate(HistoryFirstLists()).per_user
    assert plain["recall@1"].tolist() == [0.0, 0.0]
    assert excluded["recall@1"][1] == 1.0  # the seen item left the list, the target moved up
    assert excluded["recall@2"].tolist() == [1.0, 1.0]


class AskedFor(HistoryFirstLists):
    def rank(self, histories, users, k):
        self.asked = k
        return super().rank(histories, users, k)


def test_ranked_lists_are_asked_long_enough_to_refill_after_excluding_history():
    """Up to history_len seen items can leave a list, so the model is asked for that many more."""
    model = AskedFor()
    Evaluator(tiny_split(), "test").evaluate(model)
    assert model.asked == 5
    Evaluator(tiny_split(exclude_history=True), "test").evaluate(model)
    assert model.asked == 5 + 3
