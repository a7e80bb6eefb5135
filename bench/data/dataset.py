"""Processed datasets: chronological user sequences plus a typed item table.

A reader turns a recipe's source files into ``RawData`` (raw ids and raw item
metadata); ``build_dataset`` turns that into a ``Dataset`` with 0-based item
indices, categorical item fields (0 = missing), attribute bags, item text and
statistics. Processed datasets are cached under ``SIDBENCH_CACHE/processed``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import registry
from bench.core.errors import ConfigError, DataError
from bench.core.io import code_digest
from bench.core.options import parse_options
from bench.data.fetch import cache_dir, fetch
from bench.data.recipes import ITEM_OPTIONS, Recipe, RecipeError, discover

log = logging.getLogger(__name__)


PROCESSING_VERSION = 1


MISSING = "<missing>"


CATEGORY_FIELDS = ("cat1", "cat2", "cat3")


@dataclass
class RawItem:
    title: str | None = None
    brand: str | None = None
    categories: list[str] = field(default_factory=list)  # coarse to fine
    price: float | None = None
    attributes: list[str] = field(default_factory=list)


@dataclass
class RawData:
    """What a reader returns: raw ids, chronological sequences and item metadata."""

    sequences: dict[str, list[str]]
    items: dict[str, RawItem]
    item_order: list[str] | None = None  # canonical item order; sorted naturally if None


@dataclass
class Dataset:
    name: str
    sequences: list[np.ndarray]  # per user, 0-based item indices, chronological
    user_ids: list[str]
    item_ids: list[str]
    fields: dict[str, np.ndarray]  # single-valued categorical fields, int64 [n_items], 0 = missing
    bags: dict[str, np.ndarray]  # multi-valued fields, int64 [n_items, width], 0 = padding
    vocabs: dict[str, list[str]]  # per field or bag; index 0 is MISSING
    text: list[str]  # title, brand, categories, price (as TIGER)
    stats: dict[str, Any]
    checksum: str
    protocol_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    def field_names(self) -> list[str]:
        return list(self.fields) + list(self.bags)


def _natural_key(raw_id: str) -> tuple:
    return (0, int(raw_id), "") if raw_id.isdigit() else (1, 0, raw_id)


def _vocab_codes(values: list[str | None]) -> tuple[np.ndarray, list[str]]:
    vocab = [MISSING] + sorted({v for v in values if v})
    index = {v: i for i, v in enumerate(vocab)}
    return np.array([index[v] if v else 0 for v in values], dtype=np.int64), vocab


def _price_buckets(prices: list[float | None], n_buckets: int) -> tuple[np.ndarray, list[str]]:
    known = np.array([p for p in prices if p is not None and p > 0], dtype=np.float64)
    if len(known) == 0:
        return np.zeros(len(prices), dtype=np.int64), [MISSING]
    edges = np.unique(np.quantile(known, np.linspace(0, 1, n_buckets + 1)))
    labels = [MISSING] + [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(edges[:-1], edges[1:])]
    inner = edges[1:-1]
    codes = np.array(
        [0 if p is None or p <= 0 else int(np.searchsorted(inner, p, side="right")) + 1 for p in prices],
        dtype=np.int64,
    )
    return codes, labels


def item_text(item: RawItem) -> str:
    """The item's text as TIGER builds it: title, brand, categories, price."""
    parts = []
    if item.title:
        parts.append(f"Title: {item.title}")
    if item.brand:
        parts.append(f"Brand: {item.brand}")
    if item.categories:
        parts.append(f"Categories: {', '.join(item.categories)}")
    if item.price is not None and item.price > 0:
        parts.append(f"Price: {item.price:.2f}")
    return ". ".join(parts)


def build_dataset(name: str, raw: RawData, options: dict[str, Any] | None = None) -> Dataset:
    """Filter short users, index items, and derive fields, vocabularies, text and statistics.

    ``options`` are a recipe's ``[items]`` table (see ``ITEM_OPTIONS``).
    """
    options = {**ITEM_OPTIONS, **parse_options(options or {}, ITEM_OPTIONS, f"dataset {name} items.")}
    min_len = options["min_interactions"]
    kept_users, short_users = [], 0
    for user, seq in raw.sequences.items():
        if len(seq) >= min_len:
            kept_users.append(user)
        else:
            short_users += 1
    if not kept_users:
        raise DataError(f"dataset {name}: no user has at least {min_len} interactions")
    used = {item for u in kept_users for item in raw.sequences[u]}
    order = raw.item_order if raw.item_order is not None else sorted(used, key=_natural_key)
    item_ids = [i for i in order if i in used]
    index = {raw_id: k for k, raw_id in enumerate(item_ids)}
    sequences = [np.array([index[i] for i in raw.sequences[u]], dtype=np.int64) for u in kept_users]
    items = [raw.items.get(i, RawItem()) for i in item_ids]

    categories = [list(it.categories) for it in items]
    if options["drop_root_category"]:
        roots = {c[0] for c in categories if c}
        if len(roots) == 1:
            categories = [c[1:] if c else c for c in categories]
    wanted = options["fields"]
    fields: dict[str, np.ndarray] = {}
    vocabs: dict[str, list[str]] = {}
    for fname in wanted:
        if fname == "brand":
            codes, vocab = _vocab_codes([it.brand for it in items])
        elif fname in CATEGORY_FIELDS:
            level = CATEGORY_FIELDS.index(fname)
            codes, vocab = _vocab_codes(
                [" > ".join(c[: level + 1]) if len(c) > level else None for c in categories]
            )
        elif fname == "price":
            codes, vocab = _price_buckets([it.price for it in items], options["price_buckets"])
        else:
            raise DataError(f"dataset {name}: unknown item field {fname!r}; expected brand, cat1-3 or price")
        fields[fname], vocabs[fname] = codes, vocab
    bags: dict[str, np.ndarray] = {}
    if any(it.attributes for it in items):
        vocab = [MISSING] + sorted({a for it in items for a in it.attributes}, key=_natural_key)
        aindex = {a: k for k, a in enumerate(vocab)}
        width = max(len(it.attributes) for it in items)
        bag = np.zeros((len(items), width), dtype=np.int64)
        for k, it in enumerate(items):
            bag[k, : len(it.attributes)] = [aindex[a] for a in it.attributes]
        bags["attributes"], vocabs["attributes"] = bag, vocab
    for it, cats in zip(items, categories):
        it.categories = cats
    text = [item_text(it) for it in items]

    lengths = np.array([len(s) for s in sequences])
    stats = {
        "users": len(sequences),
        "items": len(item_ids),
        "interactions": int(lengths.sum()),
        "dropped_short_users": short_users,
        "min_interactions": min_len,
        "mean_sequence_length": round(float(lengths.mean()), 3),
        "density": round(float(lengths.sum()) / (len(sequences) * len(item_ids)), 6),
        "items_with_title": sum(1 for it in items if it.title),
        "items_with_brand": sum(1 for it in items if it.brand),
        "items_with_categories": sum(1 for it in items if it.categories),
        "items_with_price": sum(1 for it in items if it.price is not None and it.price > 0),
        "vocab_sizes": {k: len(v) - 1 for k, v in vocabs.items()},
    }
    digest = hashlib.sha256()
    for arr in sequences:
        digest.update(arr.tobytes())
        digest.update(b"|")
    for key in sorted(fields):
        digest.update(key.encode() + fields[key].tobytes())
    for key in sorted(bags):
        digest.update(key.encode() + bags[key].tobytes())
    digest.update("\n".join(text).encode())
    return Dataset(
        name=name, sequences=sequences, user_ids=kept_users, item_ids=item_ids, fields=fields,
        bags=bags, vocabs=vocabs, text=text, stats=stats, checksum=digest.hexdigest(),
    )


def save_dataset(ds: Dataset, folder: Path) -> None:
    """Write ``ds`` into ``folder`` atomically (a temporary folder renamed into place)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
    try:
        offsets = np.cumsum([0] + [len(s) for s in ds.sequences])
        arrays = {"seq_items": np.concatenate(ds.sequences), "seq_offsets": offsets}
        arrays.update({f"field__{k}": v for k, v in ds.fields.items()})
        arrays.update({f"bag__{k}": v for k, v in ds.bags.items()})
        np.savez(tmp / "arrays.npz", **arrays)
        meta = {
            "name": ds.name, "user_ids": ds.user_ids, "item_ids": ds.item_ids, "vocabs": ds.vocabs,
            "text": ds.text, "stats": ds.stats, "checksum": ds.checksum,
            "protocol_defaults": ds.protocol_defaults,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_saved(folder: Path) -> Dataset:
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "arrays.npz") as arrays:
        flat, offsets = arrays["seq_items"], arrays["seq_offsets"]
        fields = {k[7:]: arrays[k] for k in arrays.files if k.startswith("field__")}
        bags = {k[5:]: arrays[k] for k in arrays.files if k.startswith("bag__")}
    sequences = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return Dataset(
        name=meta["name"], sequences=sequences, user_ids=meta["user_ids"], item_ids=meta["item_ids"],
        fields=fields, bags=bags, vocabs=meta["vocabs"], text=meta["text"], stats=meta["stats"],
        checksum=meta["checksum"], protocol_defaults=meta["protocol_defaults"],
    )


def get_recipe(name: str) -> Recipe:
    """The recipe ``name``; a broken recipe file of that name raises its error (never another recipe stands in)."""
    broken: list[RecipeError] = []
    recipes = discover(broken)
    for exc in broken:
        if name in exc.names:
            raise exc
    if name not in recipes:
        raise registry.unknown_name_error("dataset", name, sorted(recipes))
    return recipes[name]


def _cache_key(recipe: Recipe) -> str:
    reader = registry.get("reader", recipe.reader)
    payload = json.dumps(
        [PROCESSING_VERSION, recipe.reader, recipe.reader_options, recipe.items,
         {k: v.sha256 for k, v in recipe.files.items()}, code_digest(reader, build_dataset)],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_expected(ds: Dataset, recipe: Recipe) -> None:
    for key, want in recipe.expected.items():
        got = ds.stats.get(key)
        if got != want:
            raise DataError(
                f"dataset {recipe.name}: expected {key} = {want} (recipe {recipe.path}), found {got}. "
                f"The source files or the reader changed; check the recipe."
            )


def load_dataset(name: str, *, rebuild: bool = False) -> Dataset:
    """Fetch, process and cache the dataset ``name``; later calls read the cache."""
    recipe = get_recipe(name)
    folder = cache_dir() / "processed" / f"{recipe.name}-{_cache_key(recipe)}"
    if folder.exists() and not rebuild:
        return load_saved(folder)
    paths = {role: fetch(src) for role, src in recipe.files.items()}
    reader = registry.get("reader", recipe.reader)
    try:
        raw = reader(paths, recipe.reader_options)
    except ConfigError as exc:  # the reader's options are the recipe's [reader_options]
        raise ConfigError(f"recipe {recipe.path}: reader_options: {exc}") from None
    ds = build_dataset(recipe.name, raw, recipe.items)
    ds.protocol_defaults = dict(recipe.protocol)
    _check_expected(ds, recipe)
    save_dataset(ds, folder)
    log.info("processed %s into %s", name, folder)
    return ds
