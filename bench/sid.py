"""The SID pipeline's first two stages, shared by every SID method: encode items, tokenize, fix collisions.

``encode_items`` (E) and ``tokenize_items`` (Q) run a registered encoder and
tokenizer through the stage cache; ``resolve_collisions`` is the one
collision post-step every tokenizer goes through; ``sid_diagnostics``
describes a code table (per-level usage, entropy, conditional entropy,
collisions). The generator (G) lives in ``bench.generator``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from bench import registry, stages
from bench.dataset import code_digest
from bench.encoder import check_vectors
from bench.errors import ConfigError
from bench.evaluate import mask_history, metrics_from_ranks, target_rank_counts
from bench.plugin import plugin_defaults
from bench.protocol import Split
from bench.records import current_precision
from bench.tokenizer import group_means, validate_codes

log = logging.getLogger(__name__)

COLLISION_METHODS = ("extra-level", "hungarian")


# ----------------------------------------------------------------------------- E-stage

def encoder_spec(name: str, params: dict[str, Any], split: Split, seed: int, ctx: Any = None) -> dict[str, Any]:
    """What determines an encoder's vectors: content encoders depend on the items only (like the device,
    TF32 changes their vectors by rounding alone, so text vectors computed once serve every run); trained
    ones also on the protocol, the seed, TF32 and ``--compile`` (each named only when not the default, as
    in run keys), which change the fit they come from."""
    cls = registry.get("encoder", name)
    spec = {"encoder": name, "params": params, "dataset": split.dataset.checksum, "code": code_digest(cls)}
    if getattr(cls, "reads_sequences", False):
        spec.update(protocol=split.protocol.to_dict(), seed=seed)
        if ctx is not None and ctx.compile:
            spec["compile"] = ctx.compile
        if ctx is not None and current_precision(ctx.device) == "tf32":
            spec["precision"] = "tf32"
    return spec


def encode_items(name: str, params: dict[str, Any], split: Split, ctx: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Item vectors ``[n_items, dim]`` from encoder ``name`` (cached), and facts about them."""
    cls = registry.get("encoder", name)
    _check_params(cls, params, "encoder", name)
    params = {**plugin_defaults(cls, "encoder"), **params}
    seed = ctx.seed if ctx is not None else 0
    device = ctx.device if ctx is not None else "cpu"

    def compute():
        start = time.perf_counter()
        encoder = cls(**params).fit(split, ctx)
        vectors = check_vectors(encoder.item_vectors_, split.n_items, f"encoder {name}")
        seconds = round(time.perf_counter() - start, 3)
        meta = {"fit_seconds": seconds, "dim": int(vectors.shape[1]), "device": str(device),
                "precision": current_precision(device), "fit_info": getattr(encoder, "fit_info_", {}),
                "vector_proxy": vector_proxies(vectors, split, device)}
        return {"item_vectors": vectors}, meta

    arrays, meta = stages.cached("encode", encoder_spec(name, params, split, seed, ctx), compute)
    if "vector_proxy" not in meta:  # an entry cached before the vector proxy existed: computed once, stored
        meta["vector_proxy"] = vector_proxies(arrays["item_vectors"], split, device)
        stages.add_meta("encode", meta["cache_key"], {"vector_proxy": meta["vector_proxy"]})
    if split.protocol.exclude_history:  # the cached value ranks every item; this protocol's is computed per run
        meta = {**meta, "vector_proxy": vector_proxies(arrays["item_vectors"], split, device, exclude_history=True)}
    return arrays["item_vectors"], meta


def vector_proxies(vectors: np.ndarray, split: Split, device: Any = "cpu", k: int = 10,
                   exclude_history: bool = False) -> dict[str, dict[str, float]]:
    """``{stage: {"vector_recall@k": value}}`` for valid and test: the model-free proxy any encoder gets.

    With ``exclude_history=False`` (what the stage cache stores, whatever the run's protocol) every item is
    ranked; ``True`` leaves the history items out, as the ``exclude_history`` protocol does."""
    return {stage: {f"vector_recall@{k}": vector_proxy_recall(vectors, split, k, stage, device, exclude_history)}
            for stage in ("valid", "test")}


def last_item_scores(unit: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Cosine scores ``[B, n_items]`` of unit item vectors against each row's last item, that item itself -inf."""
    scores = unit[last] @ unit.T
    scores[torch.arange(len(last), device=scores.device), last] = -math.inf
    return scores


@torch.no_grad()
def vector_proxy_recall(item_vectors: np.ndarray, split: Split, k: int = 10, stage: str = "valid",
                        device: torch.device | str = "cpu", exclude_history: bool = False,
                        batch_size: int = 1024) -> float:
    """Item-to-item Recall@k of any item vectors: does the next item sit among the last item's k nearest neighbours?

    For each user, all items except the user's last history item are ranked by
    cosine similarity to that item's vector; the value is the mean Recall@k of
    the ``stage`` target (``valid``: last training item -> validation target).
    A repeat of the last item counts as a miss; ties count as their expectation,
    so vectors of width 0 score chance, k / (n_items - 1). It measures how much
    next-item signal the raw vectors carry, with no model on top.
    ``exclude_history``: the other history items are not ranked either.
    """
    hist, targets = split.eval_inputs(stage)
    unit = F.normalize(torch.as_tensor(np.asarray(item_vectors), dtype=torch.float32, device=device), dim=-1)
    hist = torch.as_tensor(hist, device=device)
    targets = torch.as_tensor(targets, device=device)
    total = 0.0
    for start in range(0, len(targets), batch_size):
        rows, target = hist[start:start + batch_size], targets[start:start + batch_size]
        scores = last_item_scores(unit, rows[:, -1])
        if exclude_history:
            scores = mask_history(scores, rows, target)
        total += float(metrics_from_ranks(*target_rank_counts(scores, target), (k,))[f"recall@{k}"].sum())
    return total / max(1, len(targets))


# ----------------------------------------------------------------------------- Q-stage

@dataclass
class SIDs:
    """Unique semantic IDs for every item, with how they were made."""

    codes: np.ndarray  # int64 [n_items, L], unique rows
    codebook_sizes: list[int]
    raw_codes: np.ndarray  # the tokenizer's codes before the collision post-step
    raw_codebook_sizes: list[int]
    collisions: dict[str, Any]
    diagnostics: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)  # fit time, device, cache key


def _check_params(cls: type, params: dict[str, Any], kind: str, name: str) -> None:
    known = cls.param_names() if hasattr(cls, "param_names") else []
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"{kind} {name} has no parameter(s) {unknown}; its parameters: {', '.join(known) or '(none)'}")


def tokenizer_spec(name: str, params: dict[str, Any], encoder_key: str, device: str = "cpu") -> dict[str, Any]:
    """What determines a tokenizer's codes: its parameters, the vectors' key, its code, and the content of
    any file it reads (``input_digest()``, e.g. ``precomputed path=``: a rewritten file is a new entry), and TF32."""
    cls = registry.get("tokenizer", name)
    spec = {"tokenizer": name, "params": params, "encoder_key": encoder_key, "code": code_digest(cls)}
    if current_precision(device) == "tf32":  # named only then, as in run keys
        spec["precision"] = "tf32"
    digest = getattr(cls(**params), "input_digest", None)
    if callable(digest) and (content := digest()) is not None:
        spec["inputs"] = content
    return spec


def tokenize_items(name: str, params: dict[str, Any], vectors: np.ndarray, encoder_key: str, split: Split,
                   device: str = "cpu", collisions: str = "extra-level") -> SIDs:
    """Fit tokenizer ``name`` on ``vectors`` (cached by the encoder's key and the parameters), then make SIDs unique."""
    if collisions not in COLLISION_METHODS:
        raise ConfigError(f"collisions must be one of {COLLISION_METHODS}, found {collisions!r}")
    cls = registry.get("tokenizer", name)
    _check_params(cls, params, "tokenizer", name)
    params = {**plugin_defaults(cls, "tokenizer"), **params}

    def compute():
        tokenizer = cls(**params)
        tokenizer.device = device
        start = time.perf_counter()
        tokenizer.fit(vectors, split.dataset)
        seconds = round(time.perf_counter() - start, 3)
        codes = validate_codes(tokenizer.codes_, tokenizer.codebook_sizes, split.n_items, f"tokenizer {name}")
        arrays = {"codes": codes, "codebook_sizes": np.asarray(tokenizer.codebook_sizes, dtype=np.int64)}
        costs = getattr(tokenizer, "last_costs_", None)
        if costs is not None:
            costs = np.asarray(costs, dtype=np.float32)
            expected = (split.n_items, int(tokenizer.codebook_sizes[-1]))
            if costs.shape != expected:
                raise ConfigError(f"tokenizer {name}: last_costs_ must be [n_items, last codebook size] = "
                                  f"{list(expected)}, found {list(costs.shape)}; fix the plugin's last_costs_ "
                                  f"or leave it out (the Hungarian step then treats every move as cost 1)")
            arrays["last_costs"] = costs
        meta = {"fit_seconds": seconds, "device": device, "precision": current_precision(device), "fit_info": getattr(tokenizer, "fit_info_", {})}
        return arrays, meta

    arrays, meta = stages.cached("tokenize", tokenizer_spec(name, params, encoder_key, device), compute)
    raw, raw_sizes = arrays["codes"], [int(s) for s in arrays["codebook_sizes"]]
    diagnostics = sid_diagnostics(raw, raw_sizes)
    diagnostics["fit_seconds"] = meta["fit_seconds"]
    if vectors.shape[1]:
        diagnostics["cross_parent_consistency"] = cross_parent_consistency(raw, vectors)
    codes, sizes, report = resolve_collisions(raw, raw_sizes, collisions, arrays.get("last_costs"))
    return SIDs(codes, sizes, raw, raw_sizes, report, diagnostics,
                {k: meta[k] for k in ("fit_seconds", "device", "precision", "fit_info", "cache_key", "cache_hit") if k in meta})


# ----------------------------------------------------------------------------- collisions

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


# ----------------------------------------------------------------------------- diagnostics

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
