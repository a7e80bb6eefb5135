"""GAOQ, ReSID's quantizer: balanced hierarchical k-means whose codes name shared anchor directions.

Level 1 is balanced k-means of the item vectors. Under each parent, every
later level splits the parent's items by balanced k-means and matches the
children one-to-one (Hungarian, on cosine) to one set of nearly orthogonal
anchor directions shared by all parents of that level: a code means "the
child sits off its parent in direction ``anchors_[l][code]``" under every
parent. The last level gives every item of a prefix its own anchor (items
matched the same way, by item minus prefix centroid), so SIDs are unique
without a collision post-step. Nothing is trained.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from bench.core.errors import ConfigError
from bench.sid.tokenizer import Tokenizer, group_means, members_by_group
from methods.tokenizers.clustering import _kmeans_plusplus, item_matrix

log = logging.getLogger(__name__)


ANCHOR_KINDS = ("random", "pca")  # random: ReSID's QR of a random matrix; pca: the residuals' main directions


SEEDING_SAMPLE_PER_CLUSTER = 64  # k-means++ seeds from at most this many points per cluster (speed on 500k items)


def _balanced_assign(d2: np.ndarray) -> np.ndarray:
    """Labels ``[n]`` for costs ``d2 [n, k]`` with every cluster holding floor(n/k) or ceil(n/k) points.

    Greedy rounds, vectorised: every unplaced point proposes to its cheapest
    open cluster; a cluster keeps the proposals with the largest regret (cost
    of the second-cheapest open cluster minus the cheapest) up to its room, and
    the rest propose again next round. A cluster is open below floor(n/k), or
    at floor(n/k) while some of the ``n mod k`` ceil-sized slots are unclaimed.
    Every round fills a cluster or places everyone, so there are at most k+1.
    """
    n, k = d2.shape
    q, extras_left = divmod(n, k)
    labels = np.full(n, -1, dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    todo = np.arange(n)
    while len(todo):
        open_idx = np.flatnonzero((sizes < q) | ((sizes == q) & (extras_left > 0)))
        cost = d2 if len(todo) == n and len(open_idx) == k else d2[np.ix_(todo, open_idx)]
        rows = np.arange(len(todo))
        best = cost.argmin(1)
        best_cost = cost[rows, best]
        if cost.shape[1] == 1:
            regret = np.zeros(len(todo), dtype=cost.dtype)
        else:  # second-cheapest: hide the cheapest for a moment (argmin + min beat argpartition several times)
            cost[rows, best] = np.inf
            regret = cost.min(1) - best_cost
            cost[rows, best] = best_cost
        target = open_idx[best]
        order = np.lexsort((todo, -regret, target))  # by cluster, then regret (largest first), then index
        points, target, regret = todo[order], target[order], regret[order]
        rank = np.arange(len(points)) - np.searchsorted(target, target, side="left")
        room = q - sizes[target]
        accept = rank < room
        if extras_left > 0:
            candidates = np.flatnonzero(rank == room)  # the first proposal beyond floor(n/k)
            if len(candidates) > extras_left:
                candidates = candidates[np.lexsort((points[candidates], -regret[candidates]))[:extras_left]]
            accept[candidates] = True
            extras_left -= len(candidates)
        labels[points[accept]] = target[accept]
        sizes += np.bincount(target[accept], minlength=k)
        todo = np.sort(points[~accept])
    return labels


def balanced_kmeans(x: np.ndarray, k: int, seed: int = 0, n_iter: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Balanced k-means of ``x [n, d]``: returns ``(labels [n], centroids [k', d])``, cluster sizes within one.

    k-means++ seeding (from a subsample of at most 64 points per cluster),
    then up to ``n_iter`` Lloyd iterations whose assignment step is the
    capacity-constrained greedy of ``_balanced_assign``; centroids are the
    cluster means. With ``k >= n`` every point is its own cluster (``k' = n``).
    Deterministic given ``seed``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if k < 1:
        raise ConfigError(f"balanced_kmeans: k must be a positive int, found {k}")
    if n <= k:
        return np.arange(n, dtype=np.int64), x.copy()
    if k == 1:
        return np.zeros(n, dtype=np.int64), x.mean(0, keepdims=True)
    rng = np.random.default_rng(seed)
    sample = x
    if n > SEEDING_SAMPLE_PER_CLUSTER * k:
        sample = x[np.sort(rng.choice(n, SEEDING_SAMPLE_PER_CLUSTER * k, replace=False))]
    centroids = _kmeans_plusplus(sample, k, rng)
    if len(centroids) < k:  # fewer distinct points than clusters: duplicate centres still get their share
        centroids = np.concatenate([centroids, x[rng.choice(n, k - len(centroids), replace=False)]])
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(max(1, n_iter)):
        cost = x @ centroids.T  # squared distances less the per-point |x|^2, which changes no assignment
        cost *= -2.0
        cost += (centroids * centroids).sum(1)
        new_labels = _balanced_assign(cost)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        centroids = group_means(labels, k, x)[0]
    return labels, centroids


def make_anchors(n_anchors: int, dim: int, seed: int) -> np.ndarray:
    """``n_anchors`` unit directions ``[g, d]``: orthonormal when ``g <= d`` (QR of a seeded Gaussian matrix).

    When ``g > d`` no ``g`` orthogonal directions exist; the anchors are then
    ``ceil(g/d)`` independent random orthonormal bases stacked (the first ``d``
    exactly orthogonal, each later block a fresh random rotation), which keeps
    every anchor a unit vector and spreads them evenly.
    """
    rng = np.random.default_rng(seed)
    blocks, left = [], n_anchors
    while left > 0:
        width = min(left, dim)
        q, r = np.linalg.qr(rng.standard_normal((dim, width)))
        blocks.append((q * np.sign(np.diag(r))).T)  # sign fix: the QR of a Gaussian is then Haar-distributed
        left -= width
    return np.concatenate(blocks).astype(np.float32)


def pca_anchors(residuals: np.ndarray, n_anchors: int, seed: int) -> np.ndarray:
    """``n_anchors`` unit directions ``[g, d]``: plus and minus the top principal directions of ``residuals``.

    The residuals (children minus their parent, pooled over every parent of a
    level) are taken about zero, not their mean: a direction is "away from
    the parent". Where the residuals span fewer than ``ceil(g/2)`` directions,
    the rest are random (``make_anchors``), orthogonalised against the found ones.
    """
    half = (n_anchors + 1) // 2
    _, singular, vt = np.linalg.svd(np.asarray(residuals, dtype=np.float64), full_matrices=False)
    found = vt[:min(half, int((singular > 1e-9 * max(singular.max(initial=0.0), 1e-30)).sum()))]
    if len(found) < half:
        extra = make_anchors(half - len(found), vt.shape[1], seed).astype(np.float64)
        q, _ = np.linalg.qr((extra - (extra @ found.T) @ found).T)
        found = np.concatenate([found, q.T])
    return np.concatenate([found, -found])[:n_anchors].astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero (cosine 0 with every anchor)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _match_to_anchors(residuals: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Anchor index per residual row, one-to-one, maximising total cosine (Hungarian)."""
    cosine = _unit_rows(residuals) @ anchors.T
    rows, cols = linear_sum_assignment(cosine, maximize=True)
    out = np.empty(len(residuals), dtype=np.int64)
    out[rows] = cols
    return out


class GAOQ(Tokenizer):
    """ReSID's GAOQ: balanced hierarchical k-means with codes matched to shared anchor directions.

    ``branching`` holds ``n_levels`` factors ``(b_1, ..., b_L)``; the last is a
    floor for the last codebook, which grows to the largest group under one
    prefix. Empty means automatic: ``b_1 = ... = b_{L-1} = round((N / leaf_size)
    ** (1 / (L-1)))`` (at least 2), i.e. about ``leaf_size`` items per last-level
    group, as ReSID's rule b1*b2 ~ N/10..N/20 for 3 levels.

    ``anchors``: ``"random"`` (ReSID's: QR of a seeded random matrix, one set
    per level) or ``"pca"`` (plus and minus the main directions of the level's
    child residuals pooled over all parents), an option to test how much
    data-driven anchors tie a code's meaning across parents.

    After ``fit``: ``codes_``, ``codebook_sizes``; ``anchors_[l]`` ``[g_l, d]``
    for levels ``l >= 1`` (``anchors_[0]`` is None: level-1 codes are cluster
    indices); ``centroids_[l]`` ``[n_prefixes, d]`` and ``prefixes_[l]``
    ``[n_prefixes, l+1]``, row-aligned, for the levels above the last (the
    last level's "centroids" are the items); ``fit_info_``.
    """

    def __init__(self, branching: tuple = (), n_levels: int = 3, seed: int = 0, n_iter: int = 20,
                 leaf_size: int = 15, anchors: str = "random"):
        self.branching = branching
        self.n_levels = n_levels
        self.seed = seed
        self.n_iter = n_iter
        self.leaf_size = leaf_size
        self.anchors = anchors

    def _anchors(self, residuals: np.ndarray, n_anchors: int, level: int) -> np.ndarray:
        seed = self.seed * 1009 + level
        if self.anchors == "pca":
            return pca_anchors(residuals, n_anchors, seed)
        return make_anchors(n_anchors, residuals.shape[1], seed)

    def _branching(self, n_items: int) -> list[int]:
        levels = int(self.n_levels)
        if levels < 2:
            raise ConfigError(f"gaoq: n_levels must be >= 2 (the last level separates the items of a prefix), "
                              f"found {self.n_levels}")
        if self.branching:
            branching = [int(b) for b in self.branching]
            if len(branching) != levels or min(branching) < 1:
                raise ConfigError(f"gaoq: branching must hold n_levels={levels} positive ints (the last is a floor "
                                  f"for the last codebook), found {self.branching!r}; or leave it empty for automatic")
            return branching
        if self.leaf_size < 1:
            raise ConfigError(f"gaoq: leaf_size must be >= 1, found {self.leaf_size}")
        b = max(2, round((n_items / self.leaf_size) ** (1.0 / (levels - 1))))
        return [min(b, max(n_items, 1))] * (levels - 1) + [1]

    def _split_parents(self, vectors: np.ndarray, codes: np.ndarray, level: int, n_children: int,
                       order: np.ndarray, bounds: np.ndarray, centroids: np.ndarray,
                       prefixes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Split every parent's items into children, code them by matched anchor (writes ``codes[:, level]``).

        Returns the items' new group ids, the children's centroids and their
        prefixes (row-aligned), and the level's anchors.
        """
        splits = []
        for parent in range(len(centroids)):
            members = order[bounds[parent]:bounds[parent + 1]]
            labels, children = balanced_kmeans(vectors[members], n_children,
                                               seed=self.seed * 1_000_003 + level * 100_003 + parent,
                                               n_iter=self.n_iter)
            splits.append((members, labels, children))
        residuals = np.concatenate([children - centroids[parent] for parent, (_, _, children) in enumerate(splits)])
        anchors = self._anchors(residuals, n_children, level)
        group_id = np.empty(len(vectors), dtype=np.int64)
        child_prefixes, n_done = [], 0
        for parent, (members, labels, children) in enumerate(splits):
            child_code = _match_to_anchors(children - centroids[parent], anchors)
            codes[members, level] = child_code[labels]
            group_id[members] = n_done + labels
            n_done += len(children)
            child_prefixes.append(np.column_stack([np.repeat(prefixes[parent][None], len(children), 0), child_code]))
        return (group_id, np.concatenate([children for _, _, children in splits]), np.concatenate(child_prefixes),
                anchors)

    def fit(self, item_vectors: np.ndarray, dataset: Any = None) -> GAOQ:
        if self.anchors not in ANCHOR_KINDS:
            raise ConfigError(f"gaoq: anchors must be one of {', '.join(ANCHOR_KINDS)}, found {self.anchors!r}")
        # One BLAS thread: the products are small or memory-bound, and threaded BLAS on many small products
        # spends its time in syncs (measured 30x slower per product on a busy 2-core machine).
        with threadpool_limits(1):
            return self._fit(item_matrix(item_vectors, "gaoq"))

    def _fit(self, vectors: np.ndarray) -> GAOQ:
        n_items = len(vectors)
        branching = self._branching(n_items)
        levels = len(branching)
        codes = np.zeros((n_items, levels), dtype=np.int64)
        self.anchors_: list[np.ndarray | None] = [None]
        self.centroids_: list[np.ndarray] = []
        self.prefixes_: list[np.ndarray] = []
        seconds, group_sizes = [], []

        start = time.perf_counter()
        group_id, centroids = balanced_kmeans(vectors, branching[0], seed=self.seed, n_iter=self.n_iter)
        codes[:, 0] = group_id
        prefixes = np.arange(len(centroids), dtype=np.int64)[:, None]
        self.centroids_.append(centroids)
        self.prefixes_.append(prefixes)
        seconds.append(time.perf_counter() - start)

        for level in range(1, levels - 1):  # middle levels: balanced k-means under each parent + anchors
            start = time.perf_counter()
            order, bounds = members_by_group(group_id, len(centroids))
            group_sizes.append(np.diff(bounds))
            group_id, centroids, prefixes, anchors = self._split_parents(vectors, codes, level, branching[level],
                                                                         order, bounds, centroids, prefixes)
            self.anchors_.append(anchors)
            self.centroids_.append(centroids)
            self.prefixes_.append(prefixes)
            seconds.append(time.perf_counter() - start)

        # last level: every item of a prefix is its own child, matched by (item - prefix centroid)
        start = time.perf_counter()
        order, bounds = members_by_group(group_id, len(centroids))
        sizes = np.diff(bounds)
        group_sizes.append(sizes)
        n_last = max(branching[-1], int(sizes.max()))
        residuals = vectors - centroids[group_id]
        anchors = self._anchors(residuals, n_last, levels - 1)
        cosine = _unit_rows(residuals) @ anchors.T
        for group in range(len(centroids)):
            members = order[bounds[group]:bounds[group + 1]]
            rows, cols = linear_sum_assignment(cosine[members], maximize=True)
            codes[members[rows], -1] = cols
        self.anchors_.append(anchors)
        seconds.append(time.perf_counter() - start)

        branching[-1] = n_last
        if len(np.unique(codes, axis=0)) != n_items:
            raise AssertionError("gaoq: SIDs collide; the last level must separate the items of every prefix")
        self.codes_ = codes
        self.codebook_sizes = branching
        self.fit_info_ = {
            "branching": list(branching),
            "automatic_branching": not self.branching,
            "anchors": self.anchors,
            "seconds_per_level": [round(s, 4) for s in seconds],
            "group_sizes": [{"prefix_len": level + 1, "n_groups": len(s), "min": int(s.min()), "max": int(s.max()),
                             "mean": float(s.mean())} for level, s in enumerate(group_sizes)],
        }
        log.info("gaoq: %d items, branching %s, %.2fs", n_items, branching, sum(seconds))
        return self
