"""Model-free proxies of item-vector quality: rank items by cosine to the last history item (``knn-last``'s ranking)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.protocol import Split
from bench.eval.metrics import mask_history, metrics_from_ranks, target_rank_counts


def vector_proxies(vectors: np.ndarray, split: Split, device: Any = "cpu", k: int = 10,
                   exclude_history: bool = False) -> dict[str, dict[str, float]]:
    """``{stage: {"vector_recall@k": value}}`` for valid and test: the model-free proxy any encoder gets.

    With ``exclude_history=False`` (what the stage cache stores, whatever the run's protocol) every item is
    ranked; ``True`` leaves the history items out, as the ``exclude_history`` protocol does."""
    return {stage: {f"vector_recall@{k}": vector_proxy_recall(vectors, split, k, stage, device, exclude_history)}
            for stage in ("valid", "test")}


def last_item_scores(unit: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Cosine scores ``[B, n_items]`` of unit item vectors against each row's last item, that item itself -inf."""
    scores = unit[last] @ unit.T
    scores[torch.arange(len(last), device=scores.device), last] = -math.inf
    return scores


@torch.no_grad()
def vector_proxy_recall(item_vectors: np.ndarray, split: Split, k: int = 10, stage: str = "valid",
                        device: torch.device | str = "cpu", exclude_history: bool = False,
                        batch_size: int = 1024) -> float:
    """Item-to-item Recall@k of any item vectors: does the next item sit among the last item's k nearest neighbours?

    For each user, all items except the user's last history item are ranked by
    cosine similarity to that item's vector; the value is the mean Recall@k of
    the ``stage`` target (``valid``: last training item -> validation target).
    A repeat of the last item counts as a miss; ties count as their expectation,
    so vectors of width 0 score chance, k / (n_items - 1). It measures how much
    next-item signal the raw vectors carry, with no model on top.
    ``exclude_history``: the other history items are not ranked either.
    """
    hist, targets = split.eval_inputs(stage)
    unit = F.normalize(torch.as_tensor(np.asarray(item_vectors), dtype=torch.float32, device=device), dim=-1)
    hist = torch.as_tensor(hist, device=device)
    targets = torch.as_tensor(targets, device=device)
    total = 0.0
    for start in range(0, len(targets), batch_size):
        rows, target = hist[start:start + batch_size], targets[start:start + batch_size]
        scores = last_item_scores(unit, rows[:, -1])
        if exclude_history:
            scores = mask_history(scores, rows, target)
        total += float(metrics_from_ranks(*target_rank_counts(scores, target), (k,))[f"recall@{k}"].sum())
    return total / max(1, len(targets))
