"""Atomic file writes and content hashing (run keys, stage keys, code digests)."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def atomic_write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.ndarray, tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a result record")


def run_key(spec: dict[str, Any]) -> str:
    """A hash of what determines a run (method, config, dataset checksum, protocol, seed), or of any spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=_jsonable).encode()).hexdigest()[:20]


def code_digest(*objects: Any) -> str:
    """A hash of the source files defining ``objects``, so changed code invalidates what it cached."""
    digest = hashlib.sha256()
    for obj in objects:
        try:
            path = inspect.getsourcefile(obj)
        except TypeError:  # defined without a source file (exec'd code, a notebook): only its name counts
            path = None
        digest.update(Path(path).read_bytes() if path and Path(path).is_file() else repr(obj).encode())
    return digest.hexdigest()
