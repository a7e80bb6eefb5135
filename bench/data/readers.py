"""Readers: turn a recipe's source files into ``RawData``.

Each reader is ``reader(paths, options) -> RawData`` where ``paths`` maps the
recipe's file roles to verified local files. Errors name the file and line.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path
from typing import Any

from bench.core.errors import DataError
from bench.data.dataset import RawData, RawItem


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


def _require(paths: dict[str, Path], role: str, reader: str) -> Path:
    if role not in paths:
        raise DataError(f"the {reader} reader needs a file with role {role!r}; the recipe gives {sorted(paths)}")
    return paths[role]


def read_s3rec_sequences(path: Path) -> dict[str, list[str]]:
    """S3-Rec ``user item item ...`` lines, items in chronological order."""
    sequences: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            tokens = line.split()
            if not tokens:
                continue
            if not all(t.isdigit() for t in tokens) or len(tokens) < 2:
                raise DataError(
                    f"{path}, line {lineno}: expected 'user_id item_id item_id ...' as integers, "
                    f"found {line.strip()[:80]!r}"
                )
            if tokens[0] in sequences:
                raise DataError(f"{path}, line {lineno}: user {tokens[0]} appears twice")
            sequences[tokens[0]] = tokens[1:]
    return sequences


def _parse_categories(text: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(f"[{text}]")
        return [str(v).strip() for v in value if str(v).strip()]
    except (ValueError, SyntaxError):
        return [part.strip(" '\"") for part in text.split(",") if part.strip(" '\"")]


def _float_or_none(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


def read_item_descriptions(path: Path, datamaps: Path) -> dict[str, RawItem]:
    """Join ``item_description.csv`` to S3-Rec ids: row k is the k-th ASIN of sorted(item2id)."""
    item2id = _load_json(datamaps)["item2id"]
    asins = sorted(item2id)
    items: dict[str, RawItem] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh, delimiter="\t")
        header = next(rows, None)
        if not header or not header[0].startswith("item_id"):
            raise DataError(f"{path}: expected a tab-separated header starting with item_id, found {header!r}")
        for lineno, row in enumerate(rows, 2):
            if len(row) != len(header) or not row[0].isdigit() or not 1 <= int(row[0]) <= len(asins):
                raise DataError(f"{path}, row {lineno}: expected {len(header)} fields with item_id in 1..{len(asins)}, found {row[:2]!r}")
            col = dict(zip((h.split(":")[0] for h in header), row))
            s3rec_id = str(item2id[asins[int(row[0]) - 1]])
            items[s3rec_id] = RawItem(
                title=col.get("title") or None,
                brand=col.get("brand") or None,
                categories=_parse_categories(col.get("categories", "")),
                price=_float_or_none(col.get("price", "")),
            )
    return items


def _lcrec_item(meta: dict, category_key: str = "categories") -> RawItem:
    cats = meta.get(category_key) or ""
    categories = [c.strip() for c in cats.split(",") if c.strip()] if isinstance(cats, str) else list(cats)
    return RawItem(title=meta.get("title") or None, brand=meta.get("brand") or None, categories=categories)


def read_s3rec(paths: dict[str, Path], options: dict[str, Any]) -> RawData:
    """S3-Rec format: sequences + item2attributes, optionally joined to item text.

    Text comes from ``descriptions`` + ``datamaps`` (Beauty) or from an LC-Rec
    item file ``lcrec_items`` whose id i is S3-Rec item i + ``lcrec_item_offset``.
    """
    sequences = read_s3rec_sequences(_require(paths, "sequences", "s3rec"))
    items: dict[str, RawItem] = {}
    if "descriptions" in paths:
        items = read_item_descriptions(paths["descriptions"], _require(paths, "datamaps", "s3rec"))
    elif "lcrec_items" in paths:
        offset = int(options.get("lcrec_item_offset", 1))
        key = options.get("lcrec_category_key", "categories")
        items = {str(int(k) + offset): _lcrec_item(v, key) for k, v in _load_json(paths["lcrec_items"]).items()}
    if "item2attributes" in paths:
        for item_id, attrs in _load_json(paths["item2attributes"]).items():
            items.setdefault(str(item_id), RawItem()).attributes = [str(a) for a in attrs]
    return RawData(sequences=sequences, items=items)


def read_lcrec(paths: dict[str, Path], options: dict[str, Any]) -> RawData:
    """LC-Rec JSON format: ``X.inter.json`` {user: [items]} and ``X.item.json`` {item: {...}}."""
    inter = _load_json(_require(paths, "interactions", "lcrec"))
    if not isinstance(inter, dict):
        raise DataError(f"{paths['interactions']}: expected an object {{user: [items]}}, found {type(inter).__name__}")
    sequences = {str(u): [str(i) for i in seq] for u, seq in inter.items()}
    items = {}
    if "items" in paths:
        items = {str(k): _lcrec_item(v) for k, v in _load_json(paths["items"]).items()}
    return RawData(sequences=sequences, items=items)
