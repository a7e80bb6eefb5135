"""The tokenizer (Q-stage) contract, and ``check_tokenizer`` for plugin authors.

A tokenizer turns item vectors into semantic IDs, in the scikit-learn
spirit: every hyperparameter is a constructor argument with a default,
stored under the same name, and nothing else happens in ``__init__``;
``fit(item_vectors, dataset=None)`` learns and returns ``self``; learned
state ends in an underscore. After ``fit``:

- ``codes_``: int64 ``[n_items, n_levels]``, codes of level ``l`` in
  ``[0, codebook_sizes[l])``;
- ``codebook_sizes``: one size per level (a list of ints).

Optional: ``last_costs_`` float ``[n_items, codebook_sizes[-1]]``, the cost
of giving each item each last-level code (the Hungarian collision post-step
uses it; without it, moving an item off its code costs 1).

Tokenizers that read a file named by a parameter define ``input_digest()``
(a hash of the file's content, or None): the stage cache keys on it.

Torch tokenizers take a ``device`` attribute (not a hyperparameter: the
pipeline sets it), and a ``quiet`` one, likewise set from the run's
``--quiet``: a long fit shows a progress bar (``bench.core.progress``)
unless it is true. Stochastic tokenizers take ``seed``.

Tokenizers that learn with more than one kind of item vector, or from the
training sequences, say so in class attributes, and ``fit`` then receives them
as keyword arguments: ``views`` (``{view name: default encoder}``, e.g.
LETTER's ``{"collab": "sasrec-emb:d_model=32"}``) gives ``fit(..., views=ItemViews)``
(the main vectors are ``views.main``), ``reads_sequences = True`` gives
``fit(..., split=Split)``. A tokenizer with learned weights exposes them as
``get_state() -> {name: array}`` and takes them back with ``set_state``; the
stage cache stores that state next to the codes, so a joint method can
warm-start from a cache hit. ``check_params(params, views)`` (a classmethod)
rejects bad values before anything trains.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import sparse

from bench.core.errors import ConfigError
from bench.core.plugin import Plugin, plugin_defaults

MAIN_VIEW = "main"  # the view made by the method's own encoder


@dataclass(frozen=True)
class ItemViews:
    """The item vectors a tokenizer reads, by view name (``main``: the method's encoder; others as the
    tokenizer's ``views`` asks, e.g. LETTER's ``collab``), with each view's record entry and cache key."""

    vectors: dict[str, np.ndarray]
    entries: dict[str, dict[str, Any]]  # the record's encoder entry per view (name, params, E-stage facts)

    @property
    def main(self) -> np.ndarray:
        return self.vectors[MAIN_VIEW]

    def key(self, view: str = "main") -> str:
        return self.entries[view]["cache_key"]


class Tokenizer(Plugin):
    """Base class for tokenizers: parameter introspection and ``encode``."""

    device: str = "cpu"
    quiet: bool = True  # no progress bars (the pipeline sets it from the run's --quiet, like device)
    views: ClassVar[dict[str, str]] = {}  # extra item views fit reads: {name: "ENCODER[:key=value;...]"}
    reads_sequences: ClassVar[bool] = False  # whether fit reads the training split

    def fit(self, item_vectors: np.ndarray, dataset: Any = None, **inputs: Any) -> "Tokenizer":
        raise NotImplementedError

    @classmethod
    def check_params(cls, params: dict[str, Any], views: dict[str, tuple[str, dict[str, Any]]]) -> None:
        """Reject parameter values the types allow but the tokenizer does not, before any work (raise
        ``ConfigError``); ``views`` gives each extra view's encoder name and the options set for it."""

    def get_state(self) -> dict[str, np.ndarray] | None:
        """Learned weights as named arrays (None: nothing beyond the codes is learned)."""
        return None

    def set_state(self, state: dict[str, np.ndarray]) -> "Tokenizer":
        raise NotImplementedError(f"{type(self).__name__} keeps no state beyond its codes")

    def encode(self) -> np.ndarray:
        """The learned codes ``[n_items, n_levels]``."""
        return self.codes_


def validate_codes(codes: Any, codebook_sizes: Any, n_items: int, who: str) -> np.ndarray:
    """``codes`` as int64 ``[n_items, n_levels]`` within ``codebook_sizes``, or a clear error."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != n_items:
        raise ConfigError(f"{who}: codes_ must be [n_items={n_items}, n_levels], found shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ConfigError(f"{who}: codes_ must hold integers, found dtype {codes.dtype}")
    sizes = list(codebook_sizes)
    if len(sizes) != codes.shape[1]:
        raise ConfigError(f"{who}: {codes.shape[1]} code levels but {len(sizes)} codebook sizes ({sizes})")
    for level, size in enumerate(sizes):
        column = codes[:, level]
        if len(column) and (column.min() < 0 or column.max() >= size):
            raise ConfigError(
                f"{who}: level {level} codes must lie in [0, {size}), found [{column.min()}, {column.max()}]"
            )
    return codes.astype(np.int64)


def group_means(labels: np.ndarray, k: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(means [k, d], counts [k])`` of the rows of ``x`` in each group ``labels`` names (``0 <= label < k``),
    in ``x``'s dtype, via a sparse one-hot product; an empty group's mean is zero."""
    n = len(labels)
    one_hot = sparse.csr_matrix((np.ones(n, dtype=x.dtype), (labels, np.arange(n))), shape=(k, n))
    counts = np.bincount(labels, minlength=k)
    return (np.asarray(one_hot @ x) / np.maximum(counts, 1)[:, None]).astype(x.dtype, copy=False), counts


def members_by_group(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Items sorted by group, and the group boundaries: group ``g`` is ``order[bounds[g]:bounds[g + 1]]``."""
    order = np.argsort(labels, kind="stable")
    return order, np.searchsorted(labels[order], np.arange(k + 1))


def _tiny_vectors(n_items: int, dim: int, seed: int) -> np.ndarray:
    """Clustered vectors: 8 well-separated groups, so every tokenizer has structure to find."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim)) * 4
    return (centres[rng.integers(0, 8, n_items)] + rng.normal(size=(n_items, dim))).astype(np.float32)


def check_tokenizer(cls: type, n_items: int = 300, dim: int = 16, dataset: Any = None, split: Any = None,
                    **params: Any) -> dict[str, Any]:
    """Check a tokenizer class against the contract; raise ``AssertionError`` with the broken rule.

    Checks: every constructor argument has a default and is stored under its
    name; ``fit`` returns ``self``; ``codes_`` has shape ``[n_items, L]``
    within ``codebook_sizes``; a second fit with the same seed gives the same
    codes; it works on a tiny dataset (20 items). ``params`` are passed to the
    constructor (use small settings so the check is fast); ``dataset``, for
    tokenizers that read one, is a callable ``n_items -> dataset`` passed to
    ``fit``; ``split`` likewise for tokenizers that read sequences. Extra views
    are tiny random vectors. Returns facts about the fit (levels, sizes, fit seconds) for the
    caller's own asserts.
    """
    defaults = plugin_defaults(cls, "tokenizer")
    unknown = set(params) - set(defaults)
    assert not unknown, f"{cls.__name__} has no parameters {sorted(unknown)}; it has {sorted(defaults)}"
    tok = cls(**params)
    for name in defaults:
        assert hasattr(tok, name), f"{cls.__name__}.__init__ must store parameter {name!r} as self.{name}"
    assert tok.get_params() == {**defaults, **params}, f"{cls.__name__}: get_params() must return the constructor arguments"

    vectors = _tiny_vectors(n_items, dim, seed=0)
    start = time.perf_counter()
    make = dataset or (lambda n: None)

    def inputs(x: np.ndarray) -> dict[str, Any]:
        """A tokenizer's extra views as tiny vectors of their own; ``split`` for one that reads sequences."""
        out: dict[str, Any] = {}
        if cls.views:
            extra = {view: _tiny_vectors(len(x), 8, seed=2 + i) for i, view in enumerate(sorted(cls.views))}
            out["views"] = ItemViews({MAIN_VIEW: x, **extra}, {view: {} for view in [MAIN_VIEW, *extra]})
        if cls.reads_sequences:
            assert split is not None, f"{cls.__name__} reads sequences: pass split=(n_items -> Split)"
            out["split"] = split(len(x))
        return out

    fitted = tok.fit(vectors, make(n_items), **inputs(vectors))
    seconds = time.perf_counter() - start
    assert fitted is tok, f"{cls.__name__}.fit must return self"
    assert hasattr(tok, "codes_"), f"{cls.__name__}.fit must set codes_"
    assert hasattr(tok, "codebook_sizes"), f"{cls.__name__} must expose codebook_sizes after fit"
    assert np.issubdtype(np.asarray(tok.codes_).dtype, np.integer), f"{cls.__name__}.codes_ must hold integers"
    try:
        codes = validate_codes(tok.codes_, tok.codebook_sizes, n_items, cls.__name__)
    except ConfigError as exc:
        raise AssertionError(str(exc)) from None
    assert np.array_equal(tok.encode(), codes), f"{cls.__name__}.encode() must return codes_"
    assert all(int(s) > 0 for s in tok.codebook_sizes), f"{cls.__name__}: codebook sizes must be positive"
    if getattr(tok, "last_costs_", None) is not None:
        costs = np.asarray(tok.last_costs_)
        assert costs.shape == (n_items, tok.codebook_sizes[-1]), (
            f"{cls.__name__}.last_costs_ must be [n_items, codebook_sizes[-1]], found {costs.shape}"
        )
        assert np.isfinite(costs).all(), f"{cls.__name__}.last_costs_ must be finite (the Hungarian step needs it)"

    again = cls(**params).fit(vectors, make(n_items), **inputs(vectors))
    assert np.array_equal(np.asarray(again.codes_), codes), (
        f"{cls.__name__}: two fits with the same parameters (and seed) gave different codes"
    )

    tiny_vectors = _tiny_vectors(20, dim, seed=1)
    tiny = cls(**params).fit(tiny_vectors, make(20), **inputs(tiny_vectors))
    try:
        validate_codes(tiny.codes_, tiny.codebook_sizes, 20, f"{cls.__name__} on 20 items")
    except ConfigError as exc:
        raise AssertionError(str(exc)) from None
    return {"n_levels": codes.shape[1], "codebook_sizes": list(tok.codebook_sizes), "fit_seconds": seconds,
            "codes": codes}
