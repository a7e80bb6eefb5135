"""Hierarchical k-means: each cluster split again, children numbered locally (ReSID's Q2 ablation)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.sid.tokenizer import Tokenizer, members_by_group
from methods.tokenizers.clustering import (
    _padded_costs,
    item_matrix,
    kmeans,
    squared_distances,
)


class HKMeans(Tokenizer):
    """Hierarchical k-means: each cluster is split again, children numbered locally (0..b-1) under their parent.

    ``centroids_[l]`` maps a parent prefix (tuple of the codes above level
    ``l``) to its children's centroids ``[b', d]``, so a child's centroid
    minus its parent's can be compared across parents. ``last_costs_`` holds
    each item's squared distance to its siblings' centroids at the last level.
    """

    def __init__(self, branching: tuple[int, ...] = (32, 32, 16), seed: int = 0, max_iter: int = 50):
        self.branching = branching
        self.seed = seed
        self.max_iter = max_iter

    def fit(self, item_vectors: np.ndarray, dataset: Any = None) -> HKMeans:
        vectors = item_matrix(item_vectors, "hkmeans")
        branching = [int(b) for b in self.branching]
        if not branching or min(branching) < 1:
            raise ConfigError(f"hkmeans: branching must be a non-empty list of positive ints, found {self.branching!r}")
        n = len(vectors)
        codes = np.zeros((n, len(branching)), dtype=np.int64)
        self.centroids_: list[dict[tuple[int, ...], np.ndarray]] = []
        groups: dict[tuple[int, ...], np.ndarray] = {(): np.arange(n)}
        last_costs = np.zeros((n, branching[-1]), dtype=np.float32)
        for level, b in enumerate(branching):
            level_centroids: dict[tuple[int, ...], np.ndarray] = {}
            children: dict[tuple[int, ...], np.ndarray] = {}
            for prefix, members in groups.items():
                group = vectors[members]
                centres, labels = kmeans(group, b, seed=self.seed + level, max_iter=self.max_iter)
                level_centroids[prefix] = centres
                codes[members, level] = labels
                if level == len(branching) - 1:
                    last_costs[members] = _padded_costs(squared_distances(group, centres), b)
                order, bounds = members_by_group(labels, len(centres))
                for child in range(len(centres)):
                    if bounds[child + 1] > bounds[child]:
                        children[prefix + (child,)] = members[order[bounds[child]:bounds[child + 1]]]
            self.centroids_.append(level_centroids)
            groups = children
        self.codes_ = codes
        self.codebook_sizes = branching
        self.last_costs_ = last_costs
        return self
