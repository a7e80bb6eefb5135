"""The simple tokenizers: residual k-means, hierarchical k-means, LSH, random IDs and precomputed SIDs.

All follow ``bench.tokenizer``: hyperparameters in the constructor, ``fit``
sets ``codes_`` and ``codebook_sizes``. None removes collisions except
``random`` (unique by construction); the shared post-step in ``bench.sid``
does that. ``kmeans`` is the small seeded k-means they (and ``rqvae``'s
codebook initialisation) share: k-means++ seeding and Lloyd iterations on
BLAS matrix products, which on 12k x 384 is several times faster than
scikit-learn's greedy k-means++ for 256 clusters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ConfigError, DataError
from bench.fetch import SourceFile, fetch
from bench.tokenizer import Tokenizer, group_means, members_by_group

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- shared k-means

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


# ----------------------------------------------------------------------------- rqkmeans

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


# ----------------------------------------------------------------------------- hkmeans

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


# ----------------------------------------------------------------------------- lsh

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


# ----------------------------------------------------------------------------- random

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


# ----------------------------------------------------------------------------- precomputed

_COLLISION_GEN_REC = ("https://raw.githubusercontent.com/Nishikata97/CollisionGenRec/"
                      "505d5be3166f7c38ae67957daf8a3b7ec7092577/data/Beauty/indexes")
NAMED_INDEXES: dict[str, tuple[str, SourceFile]] = {  # name -> (dataset it indexes, file)
    "rqvae_native": ("beauty", SourceFile(f"{_COLLISION_GEN_REC}/rqvae_native/Beauty.index.json",
                                          "583765a50f8e3059e2e6e2958ee86a4320720ecd991397692a70a3d8965e1b9c")),
    "letter_native": ("beauty", SourceFile(f"{_COLLISION_GEN_REC}/letter_native/Beauty.index.json",
                                           "7e871ebd84c0ec09d2b41cf9abf2fd19afc39f342359e3946b2f542ec0ad035b")),
    "rkmeans_native": ("beauty", SourceFile(f"{_COLLISION_GEN_REC}/rkmeans_native/Beauty.index.json",
                                            "e56c5d5e86082020dba42e3d5ba1afa9099bc35609b48198162faadda0ee56b7")),
}
_TOKEN = re.compile(r"<([a-z])_(\d+)>")


def parse_index(index: dict[str, list[str]], source: str) -> dict[str, list[int]]:
    """LC-Rec index tokens (``<a_114>``, ``<b_32>``, ...) as codes per key; the letter must match the level."""
    parsed: dict[str, list[int]] = {}
    n_levels = None
    for key, tokens in index.items():
        if not isinstance(tokens, list) or not tokens:
            raise DataError(f"{source}: key {key!r} should map to a list of tokens like ['<a_1>', '<b_2>'], "
                            f"found {tokens!r}")
        if n_levels is None:
            n_levels = len(tokens)
        elif len(tokens) != n_levels:
            raise DataError(f"{source}: every item needs {n_levels} tokens (as the first one), key {key!r} has "
                            f"{len(tokens)}: {tokens}")
        row = []
        for level, token in enumerate(tokens):
            match = _TOKEN.fullmatch(str(token))
            expected_letter = chr(ord("a") + level)
            if match is None or match.group(1) != expected_letter:
                raise DataError(f"{source}: key {key!r}, level {level}: expected a token like "
                                f"'<{expected_letter}_N>', found {token!r}")
            row.append(int(match.group(2)))
        parsed[str(key)] = row
    return parsed


class Precomputed(Tokenizer):
    """Bring your own SIDs: codes read from an LC-Rec style index (a named one, or a local JSON file).

    The item with raw id ``r`` has key ``str(int(r) + key_offset)`` in the index
    (LC-Rec numbers items from 0, S3-Rec from 1: hence the default -1). The
    item vectors are ignored; the dataset is required.
    """

    def __init__(self, index: str = "", path: str = "", key_offset: int = -1):
        self.index = index
        self.path = path
        self.key_offset = key_offset

    def input_digest(self) -> str | None:
        """The sha256 of the ``path`` file (the stage cache keys on it); named indexes are pinned by checksum."""
        file = Path(self.path).expanduser() if self.path else None
        return hashlib.sha256(file.read_bytes()).hexdigest() if file is not None and file.is_file() else None

    def _load(self, dataset: Any) -> tuple[dict[str, Any], str]:
        if bool(self.index) == bool(self.path):
            raise ConfigError(f"precomputed needs exactly one of index (a named index: {', '.join(NAMED_INDEXES)}) "
                              f"or path (a local JSON file); found index={self.index!r}, path={self.path!r}")
        if self.index:
            if self.index not in NAMED_INDEXES:
                raise ConfigError(f"precomputed: unknown index {self.index!r}; known indexes: "
                                  f"{', '.join(NAMED_INDEXES)} (or give path= a local JSON file)")
            for_dataset, source = NAMED_INDEXES[self.index]
            name = getattr(dataset, "name", None)
            if name is not None and str(name).lower() != for_dataset:
                raise ConfigError(f"precomputed: index {self.index!r} is for dataset {for_dataset!r}, "
                                  f"but the dataset is {name!r}")
            file = fetch(source)
        else:
            file = Path(self.path).expanduser()
            if not file.is_file():
                raise ConfigError(f"precomputed: index file {file} not found; give path= an existing JSON file")
        try:
            return json.loads(file.read_text()), str(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"precomputed: {file} is not valid JSON ({exc})") from None

    def fit(self, item_vectors: np.ndarray, dataset: Any = None) -> Precomputed:
        if dataset is None or not hasattr(dataset, "item_ids"):
            raise ConfigError("precomputed needs the dataset (its item_ids map items to index keys): "
                              "call fit(item_vectors, dataset)")
        raw_index, source = self._load(dataset)
        if not isinstance(raw_index, dict) or not raw_index:
            raise DataError(f"{source}: expected a JSON object mapping item keys to token lists, "
                            f"found {type(raw_index).__name__}")
        index = parse_index(raw_index, source)
        keys = []
        for raw_id in dataset.item_ids:
            try:
                keys.append(str(int(raw_id) + self.key_offset))
            except ValueError:
                raise ConfigError(f"precomputed: item id {raw_id!r} is not an integer, so key_offset cannot map "
                                  f"it to an index key") from None
        missing = [k for k in keys if k not in index]
        if missing:
            raise DataError(
                f"precomputed: {len(missing)} of {len(keys)} items are missing from {source} (e.g. item key "
                f"{missing[0]!r} with key_offset={self.key_offset}; the index keys run "
                f"{min(index, key=_key_order)}..{max(index, key=_key_order)}). Check key_offset "
                f"(LC-Rec keys = S3-Rec ids - 1) and that the index is for this dataset.")
        codes = np.array([index[k] for k in keys], dtype=np.int64)
        if len(index) > len(keys):
            log.info("precomputed: %d index entries belong to no item of the dataset", len(index) - len(keys))
        self.codes_ = codes
        self.codebook_sizes = [int(m) + 1 for m in codes.max(0)]
        return self


def _key_order(key: str) -> tuple:
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)
