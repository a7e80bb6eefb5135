"""One evaluator for every method: full-catalogue ranking, per-user Recall/NDCG@K and MRR.

A method either scores all items (``score(histories, users) -> [B, n_items]``)
or returns ranked lists (``rank(histories, users, k) -> [B, k]`` of item
indices, -1 for an invalid or missing entry). For scores, the target's rank is
described by ``greater`` (items scored strictly higher) and ``equal`` (other
items with the same score); metrics are their exact expectation under
uniformly random tie-breaking, so ties neither help nor hurt a method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.errors import SidbenchError
from bench.progress import progress
from bench.protocol import Split


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


@dataclass
class EvalResult:
    per_user: dict[str, np.ndarray]
    invalid_rate: float | None = None  # share of invalid entries in ranked lists (generative methods)

    @property
    def means(self) -> dict[str, float]:
        out = {k: float(v.mean()) for k, v in self.per_user.items()}
        if self.invalid_rate is not None:
            out["invalid_rate"] = self.invalid_rate
        return out


class Evaluator:
    """Evaluates a model on the validation or test targets of a split."""

    def __init__(self, split: Split, stage: str, device: torch.device | str = "cpu", batch_size: int = 1024):
        self.split = split
        self.stage = stage
        self.device = torch.device(device)
        self.batch_size = batch_size
        hist, targets = split.eval_inputs(stage)
        self.histories = torch.from_numpy(hist)
        self.targets = torch.from_numpy(targets)
        self.users = torch.arange(len(targets))

    @torch.no_grad()
    def evaluate(self, model, quiet: bool = True) -> EvalResult:
        ks = self.split.protocol.ks
        chunks: dict[str, list[torch.Tensor]] = {}
        invalid, listed = 0, 0
        starts = range(0, len(self.targets), self.batch_size)
        for start in progress(starts, desc=f"eval {self.stage}", quiet=quiet):
            sl = slice(start, start + self.batch_size)
            hist = self.histories[sl].to(self.device)
            users = self.users[sl].to(self.device)
            target = self.targets[sl].to(self.device)
            if hasattr(model, "score"):
                greater, equal = self._ranks_from_scores(model.score(hist, users), hist, target)
            else:
                # under exclude_history the seen items leave the list afterwards: ask for enough to refill it
                want = max(ks) + (hist.shape[1] if self.split.protocol.exclude_history else 0)
                ranked = model.rank(hist, users, want)
                greater, equal = self._ranks_from_lists(ranked, hist, target)
                invalid += int((ranked < 0).sum())
                listed += ranked.numel()
            for name, values in metrics_from_ranks(greater, equal, ks).items():
                chunks.setdefault(name, []).append(values.cpu())
        per_user = {k: torch.cat(v).numpy() for k, v in chunks.items()}
        return EvalResult(per_user, invalid / listed if listed else None)

    def _ranks_from_scores(self, scores: torch.Tensor, hist: torch.Tensor, target: torch.Tensor):
        n_items = self.split.n_items
        if scores.shape != (len(target), n_items):
            raise SidbenchError(
                f"a model's score() must return [batch, n_items] = [{len(target)}, {n_items}], "
                f"found {tuple(scores.shape)}"
            )
        scores = scores.float()
        if torch.isnan(scores).any():
            raise SidbenchError("the model produced NaN scores; training diverged (try a lower learning rate)")
        if self.split.protocol.exclude_history:
            scores = mask_history(scores, hist, target)
        return target_rank_counts(scores, target)

    def _ranks_from_lists(self, ranked: torch.Tensor, hist: torch.Tensor, target: torch.Tensor):
        hit = ranked == target[:, None]
        found = hit.any(1)
        if self.split.protocol.exclude_history:  # history items (the target excepted) leave the list
            in_history = (ranked[:, :, None] == hist[:, None, :]).any(2) & ~hit & (ranked >= 0)
            position = ((~in_history).long().cumsum(1) - 1).gather(1, hit.float().argmax(1, keepdim=True))[:, 0]
        else:
            position = hit.float().argmax(1)
        greater = torch.where(found, position, torch.full_like(position, self.split.n_items))
        return greater, torch.zeros_like(greater)
