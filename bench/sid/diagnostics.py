"""SID diagnostics: per-level codebook usage and entropy, collisions, and cross-parent code consistency."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.sid.collisions import _groups
from bench.sid.tokenizer import group_means


def cross_parent_consistency(codes: np.ndarray, vectors: np.ndarray) -> list[dict[str, Any]]:
    """Per level >= 1: mean cosine between the residual centroids that carry the same code under different parents.

    A child's residual centroid is the mean of its items' vectors minus the
    mean of its parent's (computed in the item-vector space, the same for
    every tokenizer). For each code, all pairs of its residuals under
    different parents are compared; the level's value is the mean cosine
    over all those pairs. Globally aligned codes (GAOQ, residual
    quantisation) score well above 0; local child indices (hierarchical
    k-means) score near 0. Children equal to their parent (zero residual) are
    left out.
    """
    codes = np.asarray(codes, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float64)
    out = []
    for level in range(1, codes.shape[1]):
        parent_inv, parent_counts = _groups(codes[:, :level])
        parent_mean = group_means(parent_inv, len(parent_counts), vectors)[0]
        child_inv, child_counts = _groups(np.column_stack([parent_inv, codes[:, level]]))
        child_mean = group_means(child_inv, len(child_counts), vectors)[0]
        first_member = np.zeros(len(child_counts), dtype=np.int64)
        first_member[child_inv[::-1]] = np.arange(len(child_inv))[::-1]
        residual = child_mean - parent_mean[parent_inv[first_member]]
        norms = np.linalg.norm(residual, axis=1)
        keep = norms > 1e-9
        unit = residual[keep] / norms[keep, None]
        code_inv = np.unique(codes[first_member[keep], level], return_inverse=True)[1].reshape(-1)
        n_per_code = np.bincount(code_inv)
        sums = np.zeros((len(n_per_code), unit.shape[1]))
        np.add.at(sums, code_inv, unit)
        # the sum of cosines over all pairs of unit vectors u_i sharing a code is (|sum u|^2 - n) / 2
        pairs = (n_per_code * (n_per_code - 1) / 2).sum()
        total = ((sums ** 2).sum(1) - n_per_code).sum() / 2
        out.append({"level": level, "mean_cosine": round(float(total / pairs), 6) if pairs else None,
                    "pairs": int(pairs)})
    return out


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def sid_diagnostics(codes: np.ndarray, codebook_sizes: list[int]) -> dict[str, Any]:
    """How a code table uses its codebooks, measured before the collision post-step.

    Per level: codes used, usage (used / size), entropy in bits, normalised
    entropy (entropy / log2 size), perplexity (2^entropy) and the conditional
    entropy H(c_l | c_<l) in bits. Then collisions: collision rate
    (1 - distinct SIDs / items), the largest group of items sharing a SID, the
    share of items whose SID is unique, and items per leaf (per distinct SID).
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_items, n_levels = codes.shape
    levels = []
    for level in range(n_levels):
        size = int(codebook_sizes[level])
        counts = np.bincount(codes[:, level], minlength=size)
        entropy = _entropy_bits(counts)
        # H(c_l | c_<l) = H(c_<=l) - H(c_<l)
        joint = _entropy_bits(_groups(codes[:, : level + 1])[1])
        before = _entropy_bits(_groups(codes[:, :level])[1]) if level else 0.0
        levels.append({
            "level": level,
            "codebook_size": size,
            "codes_used": int((counts > 0).sum()),
            "usage": round(float((counts > 0).sum()) / size, 6),
            "entropy_bits": round(entropy, 6),
            "normalized_entropy": round(entropy / np.log2(size), 6) if size > 1 else 0.0,
            "perplexity": round(float(2.0 ** entropy), 4),
            "conditional_entropy_bits": round(joint - before, 6),
        })
    inverse, counts = _groups(codes)
    return {
        "n_items": n_items,
        "n_levels": n_levels,
        "levels": levels,
        "distinct_sids": int(len(counts)),
        "collision_rate": round(1.0 - len(counts) / n_items, 6),
        "max_collision_group": int(counts.max()),
        "unique_share": round(float((counts[inverse] == 1).mean()), 6),
        "items_per_leaf_mean": round(float(counts.mean()), 6),
        "items_per_leaf_max": int(counts.max()),
    }
