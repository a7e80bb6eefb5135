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

from bench.core.errors import SidbenchError
from bench.core.progress import progress
from bench.data.protocol import Split
from bench.eval.metrics import mask_history, metrics_from_ranks, target_rank_counts


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
