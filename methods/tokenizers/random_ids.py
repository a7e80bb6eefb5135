"""Random unique SIDs that ignore the item vectors: TIGER's ablation floor."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.sid.tokenizer import Tokenizer


class RandomIDs(Tokenizer):
    """Random unique SIDs (TIGER's ablation floor): distinct random tuples, ignoring the item vectors."""

    def __init__(self, n_levels: int = 3, codebook_size: int = 256, seed: int = 0):
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.seed = seed

    def fit(self, item_vectors: np.ndarray, dataset: Any = None) -> RandomIDs:
        n_items = len(item_vectors) if item_vectors is not None else dataset.n_items
        capacity = int(self.codebook_size) ** int(self.n_levels)
        if n_items > capacity:
            raise ConfigError(
                f"random: {n_items} items need unique SIDs but {self.n_levels} levels of {self.codebook_size} "
                f"codes give only {capacity}; raise n_levels or codebook_size")
        if capacity >= 2 ** 63:
            raise ConfigError(f"random: codebook_size**n_levels = {capacity} exceeds int64; use fewer levels")
        flat = np.random.default_rng(self.seed).choice(capacity, size=n_items, replace=False).astype(np.int64)
        codes = np.zeros((n_items, self.n_levels), dtype=np.int64)
        for level in range(self.n_levels - 1, -1, -1):  # level 0 is the most significant digit
            flat, codes[:, level] = np.divmod(flat, self.codebook_size)
        self.codes_ = codes
        self.codebook_sizes = [int(self.codebook_size)] * self.n_levels
        return self
