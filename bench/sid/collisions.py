"""The one collision post-step every tokenizer goes through: TIGER's extra level, or a Hungarian re-assignment."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.core.errors import ConfigError, SidbenchError

COLLISION_METHODS = ("extra-level", "hungarian")


def _groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each item, the index of its distinct code row, and the size of every distinct row's group."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def _extra_level(codes: np.ndarray) -> np.ndarray:
    """A column numbering the items inside each group of identical codes (0, 1, 2, ... in item order)."""
    inverse, _ = _groups(codes)
    order = np.argsort(inverse, kind="stable")
    sorted_groups = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    rank_sorted = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank.astype(np.int64)


def _hungarian_last_level(codes: np.ndarray, size: int, costs: np.ndarray | None) -> tuple[np.ndarray, int, int]:
    """Re-assign last-level codes inside each prefix with collisions, at minimum total cost.

    Returns the new codes, how many items changed code, and how many prefixes
    held more items than the last level has codes (those keep their collisions).
    """
    codes = codes.copy()
    prefix_inverse, _ = _groups(codes[:, :-1]) if codes.shape[1] > 1 else (np.zeros(len(codes), dtype=np.int64), None)
    full_inverse, full_counts = _groups(codes)
    colliding_prefixes = np.unique(prefix_inverse[full_counts[full_inverse] > 1])
    order = np.argsort(prefix_inverse, kind="stable")  # each prefix's items: one slice of ``order``
    bounds = np.searchsorted(prefix_inverse[order], np.arange(int(prefix_inverse.max(initial=0)) + 2))
    moved, too_full = 0, 0
    for prefix in colliding_prefixes:
        members = order[bounds[prefix]:bounds[prefix + 1]]
        if len(members) > size:
            too_full += 1
            continue
        if costs is not None:
            cost = costs[members].astype(np.float64)
        else:  # without costs, keeping an item's own code is free and any move costs 1
            cost = np.ones((len(members), size))
            cost[np.arange(len(members)), codes[members, -1]] = 0.0
        rows, cols = linear_sum_assignment(cost)
        new = np.empty(len(members), dtype=np.int64)
        new[rows] = cols
        moved += int((new != codes[members, -1]).sum())
        codes[members, -1] = new
    return codes, moved, too_full


def resolve_collisions(codes: np.ndarray, codebook_sizes: list[int], method: str = "extra-level",
                       last_costs: np.ndarray | None = None) -> tuple[np.ndarray, list[int], dict[str, Any]]:
    """Make every item's SID unique; the one post-step every tokenizer goes through.

    ``extra-level`` (TIGER): append a level numbering the items inside each
    collision group (only when there are collisions). ``hungarian``: re-assign
    the last level inside each prefix with collisions by a minimum-cost
    matching (``last_costs`` [n_items, K] if the tokenizer gives them); a
    prefix with more items than codes cannot be fixed that way, and the extra
    level then handles what is left.
    """
    if method not in COLLISION_METHODS:
        raise ConfigError(f"collisions must be one of {COLLISION_METHODS}, found {method!r}")
    codes = np.asarray(codes, dtype=np.int64)
    sizes = list(codebook_sizes)
    _, counts = _groups(codes)
    report: dict[str, Any] = {"method": method, "colliding_items_before": int(counts[counts > 1].sum()),
                              "items_moved": 0, "levels_added": 0}
    if method == "hungarian" and report["colliding_items_before"]:
        codes, report["items_moved"], report["prefixes_over_capacity"] = _hungarian_last_level(codes, sizes[-1], last_costs)
    _, counts = _groups(codes)
    if (counts > 1).any():
        extra = _extra_level(codes)
        codes = np.column_stack([codes, extra])
        sizes = sizes + [int(extra.max()) + 1]
        report["levels_added"] = 1
    report["n_levels"] = codes.shape[1]
    report["codebook_sizes"] = sizes
    return codes, sizes, report


def with_collision_token(codes: np.ndarray, capacity: int) -> tuple[np.ndarray, int]:
    """``codes`` [n, L] plus a last column numbering the items inside each group of identical codes (0 where an
    item's codes are its own), always present, so the width never changes while a tokenizer trained with the
    generator refreshes its codes (ETEGRec's 4th token); and the largest group. Raises when a group exceeds
    ``capacity``, the last level's size the generator was built with."""
    codes = np.asarray(codes, dtype=np.int64)
    extra = _extra_level(codes)
    largest = int(extra.max(initial=-1)) + 1
    if largest > capacity:
        raise SidbenchError(f"{largest} items share one code prefix, more than the collision token's {capacity} "
                            "values; the codes collapsed: raise the method's last_level_capacity or lower its "
                            "tokenizer learning rate")
    return np.column_stack([codes, extra]), largest
