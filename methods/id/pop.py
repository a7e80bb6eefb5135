"""Popularity: rank every item by how often it occurs in the training sequences."""

from __future__ import annotations

import torch

from bench.core.method import FitContext, Method
from bench.core.registry import register
from bench.data.protocol import Split


@register("method", "pop")
class Pop(Method):
    """Most popular items first (training counts); the floor any method must clear."""

    def fit(self, split: Split, ctx: FitContext) -> "Pop":
        self.counts_ = torch.from_numpy(split.item_counts()).float().to(ctx.device)
        return self

    def score(self, histories: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return self.counts_.expand(len(histories), -1)
