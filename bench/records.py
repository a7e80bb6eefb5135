"""Result records: one folder per run, written atomically, carrying everything needed to re-run it.

``OUT/DATASET/METHOD/seedK/result.json`` plus ``per_user.npz`` (test metrics per
user, for significance tests). ``result.json`` is written last, so a folder
without it holds no result. A failed run writes ``failure.json`` instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RESULT = "result.json"
FAILURE = "failure.json"
PER_USER = "per_user.npz"
PACKAGES = ("sidbench", "torch", "numpy", "scipy", "pandas", "scikit-learn", "sentence-transformers")


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


def run_dir(out: Path, dataset: str, method: str, seed: int) -> Path:
    safe = method.replace("/", "_").replace(":", "-").replace("+", "_")
    return Path(out) / dataset / safe / f"seed{seed}"


def run_key(spec: dict[str, Any]) -> str:
    """A hash of what determines a run (method, config, dataset checksum, protocol, seed), or of any spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=_jsonable).encode()).hexdigest()[:20]


def finished(folder: Path, key: str) -> dict[str, Any] | None:
    """The stored result if ``folder`` holds a finished run with this key."""
    path = folder / RESULT
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return record if record.get("run_key") == key and (folder / PER_USER).is_file() else None


def write_result(folder: Path, record: dict[str, Any], per_user: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FAILURE).unlink(missing_ok=True)
    atomic_write_npz(folder / PER_USER, per_user)
    atomic_write_json(folder / RESULT, record)


def write_failure(folder: Path, record: dict[str, Any]) -> None:
    atomic_write_json(folder / FAILURE, record)


def git_commit() -> dict[str, Any]:
    """``SIDBENCH_GIT_COMMIT`` if set (a copied tree may carry a stale ``.git``), else the checkout's commit."""
    fallback = {"commit": os.environ.get("SIDBENCH_GIT_COMMIT"), "dirty": None}
    if fallback["commit"]:
        return fallback
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return fallback
    if commit.returncode != 0:
        return fallback
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def gpu_other_processes() -> int | None:
    """How many other processes hold a GPU of this machine right now (``nvidia-smi``), or None if unknown.

    Asked when a run has finished (it then holds a CUDA context itself): a run that
    shared its GPU ran slower, so its times are not comparable. Processes on the
    machine's other GPUs count too.
    """
    try:
        found = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if found.returncode != 0:
        return None
    pids = {line.strip() for line in found.stdout.splitlines() if line.strip()}
    if not pids:
        # this process holds the GPU itself, so an empty list means processes are hidden (a container's
        # PID namespace): unknown, not alone
        return None
    return len(pids - {str(os.getpid())})


def current_precision(device: Any) -> str:
    """The float32 matmul precision in effect for work on ``device`` (stage caches record it)."""
    import torch

    return "tf32" if torch.device(device).type == "cuda" and torch.backends.cuda.matmul.allow_tf32 else "fp32"


def environment(device: str) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "git": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
    }


def load_records(out: Path) -> list[dict[str, Any]]:
    """Every result and failure record under ``out``, with the folder it came from."""
    records = []
    for path in sorted(Path(out).rglob("*.json")):
        if path.name not in (RESULT, FAILURE):
            continue
        record = json.loads(path.read_text())
        record["_folder"] = str(path.parent)
        records.append(record)
    return records
