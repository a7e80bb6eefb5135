"""Residual k-means: each level clusters the residuals left by the levels before it."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.sid.tokenizer import Tokenizer
from methods.tokenizers.clustering import (
    _padded_costs,
    item_matrix,
    kmeans,
    squared_distances,
)


class RQKMeans(Tokenizer):
    """Residual k-means: level 1 clusters the vectors, each later level clusters what is left (the residuals)."""

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0, max_iter: int = 50):
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.seed = seed
        self.max_iter = max_iter

    def fit(self, item_vectors: np.ndarray, dataset: Any = None) -> RQKMeans:
        residual = item_matrix(item_vectors, "rqkmeans").copy()
        codes = np.zeros((len(residual), self.n_levels), dtype=np.int64)
        self.centroids_: list[np.ndarray] = []
        for level in range(self.n_levels):
            last_input = residual
            centres, labels = kmeans(residual, self.codebook_size, seed=self.seed + level, max_iter=self.max_iter)
            codes[:, level] = labels
            self.centroids_.append(centres)
            residual = residual - centres[labels]
        self.codes_ = codes
        self.codebook_sizes = [int(self.codebook_size)] * self.n_levels
        self.last_costs_ = _padded_costs(squared_distances(last_input, self.centroids_[-1]), self.codebook_size)
        return self
