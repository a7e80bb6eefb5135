"""The item-encoder (E-stage) contract: items in, one vector per item out.

Like a tokenizer, an encoder keeps its hyperparameters as constructor
arguments with defaults and learns in ``fit(split, ctx=None) -> self``,
which sets ``item_vectors_`` (float32 ``[n_items, dim]``). Encoders that
read the training sequences (not only item content) set
``reads_sequences = True``: their cache key then includes the protocol and
the seed, and they must train on ``split.train_seqs`` only; like any method
they may pick a checkpoint on the validation targets. ``fit_info_`` (a dict,
optional) is kept with the cached vectors and in the run record; a
``"proxy"`` entry there (``{split: {metric: value}}``) is reported as the
encoder's proxy metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.core.plugin import Plugin


class Encoder(Plugin):
    """Base class for item encoders (parameter introspection as for tokenizers)."""

    reads_sequences: bool = False

    def fit(self, split: Any, ctx: Any = None) -> "Encoder":
        raise NotImplementedError


def check_vectors(vectors: Any, n_items: int, who: str) -> np.ndarray:
    """``vectors`` as finite float32 ``[n_items, dim]``, or a clear error."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != n_items:
        raise ConfigError(f"{who}: item_vectors_ must be [n_items={n_items}, dim], found shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ConfigError(f"{who}: item vectors contain NaN or infinite values")
    return vectors
