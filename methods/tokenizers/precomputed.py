"""SIDs read from an LC-Rec style index file (named published indexes or a JSON path)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import ConfigError, DataError
from bench.data.fetch import SourceFile, fetch
from bench.sid.tokenizer import Tokenizer

log = logging.getLogger(__name__)


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
