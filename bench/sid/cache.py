"""The stage cache: each SID stage's output stored under a key made from its inputs and config.

``SIDBENCH_CACHE/stages/STAGE/KEY/`` holds ``arrays.npz`` and ``meta.json``
(what was computed, how long it took, on which device). Swapping the
tokenizer reuses the encoder's item vectors; a second run of the same
composition reuses both. Entries are written through a temporary folder and
a rename, so an interrupted stage leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.core.io import _jsonable, atomic_write_json, run_key
from bench.data.fetch import cache_dir

log = logging.getLogger(__name__)


def stage_key(spec: dict[str, Any]) -> str:
    """A short hash of everything that determines a stage's output (the same hash as a run's key)."""
    return run_key(spec)


def _folder(stage: str, key: str) -> Path:
    return cache_dir() / "stages" / stage / key


def load(stage: str, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    folder = _folder(stage, key)
    if not (folder / "meta.json").is_file():
        return None
    with np.load(folder / "arrays.npz") as arrays:
        data = {name: arrays[name] for name in arrays.files}
    return data, json.loads((folder / "meta.json").read_text())


def save(stage: str, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    folder = _folder(stage, key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
    try:
        np.savez(tmp / "arrays.npz", **arrays)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=_jsonable))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            # a concurrent run stored the same key first: its entry is equivalent, keep it
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def add_meta(stage: str, key: str, extra: dict[str, Any]) -> None:
    """Merge ``extra`` into a stored entry's meta (facts added after the entry was written), atomically."""
    path = _folder(stage, key) / "meta.json"
    atomic_write_json(path, {**json.loads(path.read_text()), **extra})


def cached(stage: str, spec: dict[str, Any],
           compute: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The stage's arrays and meta for ``spec``: from the cache, or computed once and stored.

    The returned meta carries ``cache_key`` and ``cache_hit``; ``spec`` is stored
    in the meta so a cache entry says what it is.
    """
    key = stage_key(spec)
    found = load(stage, key)
    if found is not None:
        log.info("%s: reusing cached output %s", stage, key)
        arrays, meta = found
        return arrays, {**meta, "cache_key": key, "cache_hit": True}
    arrays, meta = compute()
    meta = {**meta, "spec": spec}
    save(stage, key, arrays, meta)
    return arrays, {**meta, "cache_key": key, "cache_hit": False}
