"""Result records: one folder per run, written atomically, carrying everything needed to re-run it.

``OUT/DATASET/METHOD/seedK/result.json`` plus ``per_user.npz`` (test metrics per
user, for significance tests). ``result.json`` is written last, so a folder
without it holds no result. A failed run writes ``failure.json`` instead.

Storage rules: a run's *variant* (the budget, options, protocol options,
precision and compile setting it was asked for) picks its folder. The first
variant of a method and seed takes ``seedK``; another variant never replaces
it but goes to ``seedK~VARIANT``. A re-run of the same variant (e.g. after
the code changed) replaces the result in place, but first moves the old one
aside (``*.replaced``), so an interrupted re-run leaves no stale result that
looks current. A ``.claim`` file, made atomically, keeps two processes from
writing one folder at once.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.core.io import atomic_write_json, atomic_write_npz

RESULT = "result.json"


FAILURE = "failure.json"


PER_USER = "per_user.npz"


PACKAGES = ("sidbench", "torch", "numpy", "scipy", "pandas", "scikit-learn", "sentence-transformers")


CLAIM = ".claim"


REPLACED = ".replaced"  # suffix of a result moved aside while a re-run replaces it


def run_dir(out: Path, dataset: str, method: str, seed: int) -> Path:
    safe = method.replace("/", "_").replace(":", "-").replace("+", "_")
    return Path(out) / dataset / safe / f"seed{seed}"


def _variant_of(folder: Path) -> str | None:
    """The variant id of what ``folder`` holds (a record or a claim); None if empty or recorded before variants."""
    for name in (RESULT, FAILURE, CLAIM):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            variant = data.get("variant")
            return variant.get("id") if isinstance(variant, dict) else data.get("variant_id")
    return None


def variant_dir(out: Path, dataset: str, method: str, seed: int, variant: str) -> Path:
    """The folder for a run of ``variant``: ``seedK`` unless it holds another variant's run, then ``seedK~VARIANT``."""
    plain = run_dir(out, dataset, method, seed)
    held = _variant_of(plain)
    if held is None or held == variant:
        return plain
    return plain.with_name(f"{plain.name}~{variant}")


class Claim:
    """An exclusive claim on a run folder while a process writes it (``with Claim(folder, variant):``).

    Made with ``O_EXCL``, so of two processes only one gets it; the other gets
    a ``ConfigError`` naming the holder. A claim whose process is gone (same
    host) is taken over.
    """

    def __init__(self, folder: Path, variant: str):
        self.path = Path(folder) / CLAIM
        self.variant = variant

    def __enter__(self) -> "Claim":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"pid": os.getpid(), "host": platform.node(), "variant_id": self.variant,
                           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None:
                    raise ConfigError(f"{self.path.parent} is being written by process {holder['pid']} on "
                                      f"{holder['host']} (since {holder.get('started')}); wait for it, or use another "
                                      f"--out (remove {self.path} if that process is gone)") from None
                self.path.unlink(missing_ok=True)  # its process is gone: take the folder over
                continue
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            return self
        raise ConfigError(f"could not claim {self.path.parent}: another process keeps claiming it")

    def _holder(self) -> dict[str, Any] | None:
        """The live process holding the claim, or None when the claim is stale."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if holder.get("host") != platform.node():
            return holder  # another machine's process: assume it is alive
        try:
            os.kill(int(holder["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError):
            return None
        except PermissionError:
            return holder
        return holder

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def set_aside(folder: Path) -> list[Path]:
    """Move an earlier result out of the way of a re-run (``result.json.replaced``...), so that an interrupted
    re-run leaves no result that looks current; returns where they went."""
    moved = []
    for name in (RESULT, PER_USER, FAILURE):
        path = folder / name
        if path.is_file():
            target = path.with_name(name + REPLACED)
            os.replace(path, target)
            moved.append(target)
    return moved


def drop_replaced(folder: Path) -> None:
    for name in (RESULT, PER_USER, FAILURE):
        (folder / (name + REPLACED)).unlink(missing_ok=True)


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


class GpuNeighbourWatch:
    """The most other processes seen on the GPU while a run lasts: :func:`gpu_other_processes` asked at the start,
    every ``interval`` seconds from a daemon thread, and at the end (``stop``).

    Asking only at the end missed neighbours that had finished by then, so a run that shared its GPU for most of
    its time could read as alone. ``stop`` returns None when no answer was known.
    """

    def __init__(self, interval: float = 30.0):
        self.interval = interval
        self.seen: list[int] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gpu-neighbours", daemon=True)

    def _ask(self) -> None:
        if (count := gpu_other_processes()) is not None:
            self.seen.append(count)

    def _poll(self) -> None:
        while not self._done.wait(self.interval):
            self._ask()

    def start(self) -> GpuNeighbourWatch:
        self._ask()
        self._thread.start()
        return self

    def stop(self) -> int | None:
        self._done.set()
        self._thread.join()
        self._ask()
        return max(self.seen) if self.seen else None


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
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); it is not a result sidbench wrote whole: "
                              f"move it away, or re-run that method and seed") from None
        record["_folder"] = str(path.parent)
        records.append(record)
    return records
