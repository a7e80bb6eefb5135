"""Result records: one folder per run, written atomically, carrying everything needed to re-run it.

``OUT/DATASET/METHOD/seedK/result.json`` plus ``per_user.npz`` (test metrics per
user, for significance tests). ``result.json`` is written last, so a folder
without it holds no result. A failed run writes ``failure.json`` instead.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.io import atomic_write_json, atomic_write_npz

RESULT = "result.json"


FAILURE = "failure.json"


PER_USER = "per_user.npz"


PACKAGES = ("sidbench", "torch", "numpy", "scipy", "pandas", "scikit-learn", "sentence-transformers")


def run_dir(out: Path, dataset: str, method: str, seed: int) -> Path:
    safe = method.replace("/", "_").replace(":", "-").replace("+", "_")
    return Path(out) / dataset / safe / f"seed{seed}"


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
    root = Path(__file__).resolve().parents[2]
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
