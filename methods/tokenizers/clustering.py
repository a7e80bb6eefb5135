"""Clustering building blocks the tokenizers share: squared distances, k-means++ seeding, k-means, cost padding.

``kmeans`` is the small seeded k-means the tokenizers (and ``rqvae``'s
codebook initialisation) share: k-means++ seeding and Lloyd iterations on
BLAS matrix products, which on 12k x 384 is several times faster than
scikit-learn's greedy k-means++ for 256 clusters. ``item_matrix`` checks a
tokenizer's input vectors. ``balanced_kmeans`` is LETTER's size-constrained
k-means, batched on torch tensors so that it runs on the GPU every epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.core.errors import ConfigError
from bench.sid.tokenizer import group_means


def squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``[n, k]`` between rows of ``x`` and ``centres`` (clipped at 0)."""
    d2 = (x * x).sum(1, keepdims=True) - 2.0 * (x @ centres.T) + (centres * centres).sum(1)
    return np.maximum(d2, 0.0)


def _kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (one candidate per step): each new centre drawn with probability ~ squared distance."""
    n = len(x)
    sq_norms = (x * x).sum(1)
    chosen = [int(rng.integers(n))]
    closest = np.maximum(sq_norms - 2.0 * (x @ x[chosen[0]]) + sq_norms[chosen[0]], 0.0)
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:  # every point sits on a centre already; cannot happen with > k distinct points
            break
        pick = int(np.searchsorted(np.cumsum(closest, dtype=np.float64), rng.random() * total))
        pick = min(pick, n - 1)
        chosen.append(pick)
        closest = np.minimum(closest, np.maximum(sq_norms - 2.0 * (x @ x[pick]) + sq_norms[pick], 0.0))
    return x[chosen].copy()


def kmeans(x: np.ndarray, k: int, seed: int = 0, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means of ``x`` into at most ``k`` clusters; returns ``(centroids [k', d], labels [n])``.

    With ``k`` or fewer distinct points, every distinct point is its own
    cluster (so ``k' < k`` is possible, and a small group gets one cluster
    per item). Empty clusters are re-seeded with the points farthest from
    their centroid. Stops when no label changes.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros((0, x.shape[1]), dtype=np.float32), np.zeros(0, dtype=np.int64)
    distinct, inverse = np.unique(x, axis=0, return_inverse=True)
    if len(distinct) <= k:
        return distinct.astype(np.float32), inverse.reshape(-1).astype(np.int64)
    rng = np.random.default_rng(seed)
    centres = _kmeans_plusplus(x, k, rng)
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(max_iter):
        d2 = squared_distances(x, centres)
        new_labels = d2.argmin(1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        centres, counts = group_means(labels, k, x)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            far = np.argsort(-d2[np.arange(n), labels], kind="stable")[: len(empty)]
            centres[empty] = x[far]
    centres = centres.astype(np.float32)
    return centres, squared_distances(x, centres).argmin(1).astype(np.int64)


def _padded_costs(d2: np.ndarray, size: int) -> np.ndarray:
    """``d2 [n, k']`` widened to ``[n, size]``; codes without a centroid cost more than any real assignment."""
    out = np.empty((len(d2), size), dtype=np.float32)
    out[:, : d2.shape[1]] = d2
    if d2.shape[1] < size:
        top = float(d2.max()) if d2.size else 0.0
        out[:, d2.shape[1]:] = (top + 1.0) * (size + 1)  # above any matching that uses real codes only
    return out


def item_matrix(item_vectors: Any, who: str) -> np.ndarray:
    """The item vectors as float32 ``[n_items, dim>0]``, or a clear error (for tokenizers that read vectors)."""
    vectors = np.asarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ConfigError(f"{who} needs item vectors [n_items, dim>0], found shape {vectors.shape}; "
                          f"pick an encoder that produces vectors (e.g. text-tfidf)")
    return vectors


def balanced_labels(costs: torch.Tensor, size_min: int, size_max: int, rounds: int = 40) -> torch.Tensor:
    """Labels ``[B, n]`` for costs ``[B, n, k]`` with cluster sizes pushed into ``[size_min, size_max]``.

    Each point takes its cheapest cluster after adding a price per cluster;
    ``rounds`` decaying dual steps raise the price of clusters above
    ``size_max`` and lower it for those below ``size_min``, in proportion to
    the excess. A stand-in for the min-cost-flow assignment of constrained
    k-means: sizes can miss the bounds by a few (the caller counts that), but
    it has fixed shapes and never synchronises, so a CUDA graph can replay it.
    """
    batch, n, k = costs.shape
    spread = (costs.amax(2) - costs.amin(2)).mean(1, keepdim=True)  # [B, 1]: a typical cost range
    prices = costs.new_zeros(batch, k)
    ones = costs.new_ones(batch, n)
    for t in range(rounds):
        labels = (costs + prices[:, None, :]).argmin(2)
        counts = costs.new_zeros(batch, k).scatter_add_(1, labels, ones)
        excess = (counts - size_max).clamp_min(0) - (size_min - counts).clamp_min(0)
        prices = prices + spread * (0.3 * 0.93 ** t) * excess * (k / n)
    return (costs + prices[:, None, :]).argmin(2)


def balanced_kmeans(x: torch.Tensor, k: int, size_min: int, size_max: int, noise: torch.Tensor,
                    iters: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Size-constrained k-means of each of ``B`` point sets ``x [B, n, d]``, ``R`` starts each, on x's device.

    ``noise [B * R, n]`` (uniform, drawn by the caller) picks each start's
    ``k`` initial centres; then ``iters`` Lloyd steps whose assignment is
    ``balanced_labels``. Returns the start of least inertia per set:
    ``(centres [B, k, d], labels [B, n], counts [B, k])``. Fixed shapes, no
    synchronisation (a CUDA graph can replay it).
    """
    batch, _, dim = x.shape
    starts = len(noise) // batch
    xr = x.repeat_interleave(starts, 0)  # [B * R, n, d]
    centres = torch.gather(xr, 1, noise.argsort(1)[:, :k, None].expand(-1, -1, dim))

    def costs_of(c: torch.Tensor) -> torch.Tensor:
        return (xr.pow(2).sum(2, keepdim=True) - 2 * xr @ c.transpose(1, 2) + c.pow(2).sum(2)[:, None, :]).clamp_min(0)

    for _ in range(iters):
        labels = balanced_labels(costs_of(centres), size_min, size_max)
        counts = xr.new_zeros(len(xr), k).scatter_add_(1, labels, xr.new_ones(labels.shape))
        sums = xr.new_zeros(len(xr), k, dim).scatter_add_(1, labels[..., None].expand(-1, -1, dim), xr)
        centres = torch.where(counts[..., None] > 0, sums / counts.clamp_min(1)[..., None], centres)
    costs = costs_of(centres)
    labels = balanced_labels(costs, size_min, size_max)
    inertia = costs.gather(2, labels[..., None]).squeeze(2).sum(1).view(batch, starts)
    best = inertia.argmin(1) + torch.arange(batch, device=x.device) * starts
    counts = xr.new_zeros(len(xr), k).scatter_add_(1, labels, xr.new_ones(labels.shape))
    return centres[best], labels[best], counts[best]
