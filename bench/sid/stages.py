"""The SID pipeline's first two stages, shared by every SID method: encode items, tokenize, fix collisions.

``encode_items`` (E) and ``tokenize_items`` (Q) run a registered encoder and
tokenizer through the stage cache; ``resolve_collisions`` is the one
collision post-step every tokenizer goes through; ``sid_diagnostics``
describes a code table (per-level usage, entropy, conditional entropy,
collisions). The generator (G) lives in ``bench.generator``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.core import registry
from bench.core.device import current_precision
from bench.core.errors import ConfigError
from bench.core.io import code_digest
from bench.core.plugin import plugin_defaults
from bench.data.protocol import Split
from bench.eval.proxy import vector_proxies
from bench.sid import cache as stages
from bench.sid.collisions import COLLISION_METHODS, resolve_collisions
from bench.sid.diagnostics import cross_parent_consistency, sid_diagnostics
from bench.sid.encoder import check_vectors
from bench.sid.tokenizer import MAIN_VIEW, ItemViews, validate_codes


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


@dataclass
class SIDTable:
    """Unique semantic IDs for every item, with how they were made; what the Q-stage hands the generator."""

    codes: np.ndarray  # int64 [n_items, L], unique rows
    codebook_sizes: list[int]
    raw_codes: np.ndarray  # the tokenizer's codes before the collision post-step
    raw_codebook_sizes: list[int]
    collisions: dict[str, Any]
    diagnostics: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)  # fit time, device, cache key
    state: dict[str, np.ndarray] | None = None  # a torch tokenizer's learned state (``get_state()``), cached with the codes


def _check_params(cls: type, params: dict[str, Any], kind: str, name: str) -> None:
    known = cls.param_names() if hasattr(cls, "param_names") else []
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"{kind} {name} has no parameter(s) {unknown}; its parameters: {', '.join(known) or '(none)'}")


def tokenizer_spec(name: str, params: dict[str, Any], views: ItemViews | str, device: str = "cpu",
                   split: Split | None = None) -> dict[str, Any]:
    """What determines a tokenizer's codes: its parameters, its views' keys, its code, the content of any
    file it reads (``input_digest()``, e.g. ``precomputed path=``: a rewritten file is a new entry), TF32,
    and for a tokenizer that reads the training sequences, the protocol."""
    cls = registry.get("tokenizer", name)
    encoder_key = views if isinstance(views, str) else views.key()
    spec = {"tokenizer": name, "params": params, "encoder_key": encoder_key, "code": code_digest(cls)}
    if not isinstance(views, str) and len(views.entries) > 1:  # named only then: one-view keys stay as they were
        spec["views"] = {view: entry["cache_key"] for view, entry in sorted(views.entries.items()) if view != MAIN_VIEW}
    if getattr(cls, "reads_sequences", False) and split is not None:
        spec.update(protocol=split.protocol.to_dict(), dataset=split.dataset.checksum)
    if current_precision(device) == "tf32":  # named only then, as in run keys
        spec["precision"] = "tf32"
    digest = getattr(cls(**params), "input_digest", None)
    if callable(digest) and (content := digest()) is not None:
        spec["inputs"] = content
    return spec


STATE_PREFIX = "state."  # a tokenizer's state arrays sit in the cache entry's npz under this prefix


def fit_inputs(cls: type, views: ItemViews, split: Split) -> dict[str, Any]:
    """The keyword inputs ``fit`` takes besides the main vectors and the dataset: the extra views a
    tokenizer names in ``views``, the training split if it ``reads_sequences``."""
    inputs: dict[str, Any] = {}
    if getattr(cls, "views", None):
        inputs["views"] = views
    if getattr(cls, "reads_sequences", False):
        inputs["split"] = split
    return inputs


def tokenize_items(name: str, params: dict[str, Any], views: ItemViews | np.ndarray, encoder_key: str | None,
                   split: Split, device: str = "cpu", collisions: str = "extra-level",
                   quiet: bool = True) -> SIDTable:
    """Fit tokenizer ``name`` on the item views (cached by their keys and the parameters), then make SIDs unique.

    ``views`` may be a bare vector array (one view, keyed by ``encoder_key``). ``device`` and ``quiet`` (no
    progress bars; pass the run's ``ctx.quiet``) are set on the tokenizer as attributes, not parameters: neither
    changes its codes, so neither is in the cache key."""
    if collisions not in COLLISION_METHODS:
        raise ConfigError(f"collisions must be one of {COLLISION_METHODS}, found {collisions!r}")
    if not isinstance(views, ItemViews):
        views = ItemViews({MAIN_VIEW: views}, {MAIN_VIEW: {"cache_key": encoder_key}})
    vectors = views.main
    cls = registry.get("tokenizer", name)
    _check_params(cls, params, "tokenizer", name)
    params = {**plugin_defaults(cls, "tokenizer"), **params}
    missing = sorted(set(getattr(cls, "views", None) or {}) - set(views.vectors))
    if missing:
        raise ConfigError(f"tokenizer {name} reads the item views {sorted(cls.views)}, but {missing} were not "
                          f"given (found {sorted(views.vectors)}); a SID method encodes them from its view_* options")

    def compute():
        tokenizer = cls(**params)
        tokenizer.device = device
        tokenizer.quiet = quiet
        start = time.perf_counter()
        tokenizer.fit(vectors, split.dataset, **fit_inputs(cls, views, split))
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
        state = tokenizer.get_state() if callable(getattr(tokenizer, "get_state", None)) else None
        for key, value in (state or {}).items():
            arrays[STATE_PREFIX + key] = np.asarray(value)
        meta = {"fit_seconds": seconds, "device": device, "precision": current_precision(device),
                "fit_info": getattr(tokenizer, "fit_info_", {})}
        return arrays, meta

    arrays, meta = stages.cached("tokenize", tokenizer_spec(name, params, views, device, split), compute)
    raw, raw_sizes = arrays["codes"], [int(s) for s in arrays["codebook_sizes"]]
    diagnostics = sid_diagnostics(raw, raw_sizes)
    diagnostics["fit_seconds"] = meta["fit_seconds"]
    if vectors.shape[1]:
        diagnostics["cross_parent_consistency"] = cross_parent_consistency(raw, vectors)
    codes, sizes, report = resolve_collisions(raw, raw_sizes, collisions, arrays.get("last_costs"))
    state = {k[len(STATE_PREFIX):]: v for k, v in arrays.items() if k.startswith(STATE_PREFIX)} or None
    return SIDTable(codes, sizes, raw, raw_sizes, report, diagnostics,
                    {k: meta[k] for k in ("fit_seconds", "device", "precision", "fit_info", "cache_key", "cache_hit")
                     if k in meta}, state)
