"""Random-hyperplane LSH tokenizer: sign bits of seeded random projections per level."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.sid.tokenizer import Tokenizer
from methods.tokenizers.clustering import item_matrix


class LSH(Tokenizer):
    """Random-hyperplane LSH: each level's code is the sign pattern of ``bits_per_level`` random projections."""

    def __init__(self, n_levels: int = 3, bits_per_level: int = 8, seed: int = 0):
        self.n_levels = n_levels
        self.bits_per_level = bits_per_level
        self.seed = seed

    def fit(self, item_vectors: np.ndarray, dataset: Any = None) -> LSH:
        vectors = item_matrix(item_vectors, "lsh")
        if not 1 <= self.bits_per_level <= 30:
            raise ConfigError(f"lsh: bits_per_level must be in [1, 30], found {self.bits_per_level}")
        rng = np.random.default_rng(self.seed)
        self.mean_ = vectors.mean(0)
        self.planes_ = rng.standard_normal((self.n_levels, vectors.shape[1], self.bits_per_level)).astype(np.float32)
        weights = 1 << np.arange(self.bits_per_level, dtype=np.int64)
        centred = vectors - self.mean_
        codes = np.stack([((centred @ self.planes_[level]) > 0).astype(np.int64) @ weights
                          for level in range(self.n_levels)], axis=1)
        self.codes_ = codes.astype(np.int64)
        self.codebook_sizes = [1 << self.bits_per_level] * self.n_levels
        return self
