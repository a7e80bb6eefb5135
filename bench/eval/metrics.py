"""Per-user ranking metrics from a target's rank: Recall/NDCG@K and MRR, ties at their expected value."""

from __future__ import annotations

import torch


def metric_names(ks: tuple[int, ...]) -> list[str]:
    return [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks] + ["mrr"]


def mask_history(scores: torch.Tensor, hist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``scores [B, n_items]`` with the items of each row's history set to -inf, the row's target excepted
    (the ``exclude_history`` protocol; ``hist`` is left-padded with ``n_items``)."""
    n_items = scores.shape[1]
    seen = torch.zeros_like(scores, dtype=torch.bool)
    rows = torch.arange(len(hist), device=hist.device)[:, None].expand_as(hist)
    in_history = hist < n_items
    seen[rows[in_history], hist[in_history]] = True
    seen[torch.arange(len(target), device=target.device), target] = False
    return scores.masked_fill(seen, float("-inf"))


def target_rank_counts(scores: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(greater, equal)`` per row of ``scores [B, n]``: items scored above ``target [B]``, and others tied with it."""
    target_score = scores.gather(1, target[:, None])
    return (scores > target_score).sum(1), (scores == target_score).sum(1) - 1


def metrics_from_ranks(greater: torch.Tensor, equal: torch.Tensor, ks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-user metrics for a target with ``greater`` items above it and ``equal`` others tied with it."""
    greater = greater.long()
    equal = equal.long().clamp(min=0)
    top = int((greater + equal).max().item()) + 2 if greater.numel() else 2
    ranks = torch.arange(top, device=greater.device, dtype=torch.float64)
    # cumulative discounts: disc[r] = sum_{i<r} 1/log2(i+2), harm[r] = sum_{i<r} 1/(i+1)
    disc = torch.cat([ranks.new_zeros(1), torch.cumsum(1.0 / torch.log2(ranks + 2), 0)])
    harm = torch.cat([ranks.new_zeros(1), torch.cumsum(1.0 / (ranks + 1), 0)])
    n_tied = (equal + 1).double()
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        out[f"recall@{k}"] = ((k - greater).double() / n_tied).clamp(0, 1)
    for k in ks:
        last = torch.minimum(greater + equal, torch.full_like(greater, k - 1)) + 1
        gain = (disc[last] - disc[greater.clamp(max=k)]) / n_tied
        out[f"ndcg@{k}"] = torch.where(greater < k, gain, torch.zeros_like(gain))
    out["mrr"] = (harm[greater + equal + 1] - harm[greater]) / n_tied
    return out
