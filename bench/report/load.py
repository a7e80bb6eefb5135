"""Result and failure records as runs: the ``Run`` view of one record, collecting runs from folders, per-user arrays.

The lowest module of the report: it reads files and knows nothing about tables or pages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.core.errors import ConfigError
from bench.run.records import FAILURE, PER_USER, RESULT, load_records


@dataclass
class Run:
    """One result or failure record, with the runs group and table it belongs to."""

    record: dict[str, Any]
    root: Path
    folder: Path
    group: str
    _per_user: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "ok" and "metrics" in self.record

    @property
    def method(self) -> str:
        """The method's name, with the options the run was asked for (``tiger [epochs=50]``): runs of one method
        with other options are other rows."""
        name = str(self.record.get("method") or self.folder.parent.name)
        overrides = (self.record.get("variant") or {}).get("overrides") or {}
        return f"{name} [{', '.join(f'{k}={v}' for k, v in sorted(overrides.items()))}]" if overrides else name

    @property
    def precision(self) -> str:
        """How its numbers were computed: the float32 matmul precision (records older than the field ran at
        fp32), and the ``torch.compile`` setting when one was used (``tf32, compile reduce-overhead``)."""
        environment = self.record.get("environment") or {}
        precision = str(self.record.get("precision") or environment.get("precision") or "fp32")
        return f"{precision}, compile {self.compiled}" if self.compiled else precision

    @property
    def compiled(self) -> str | None:
        """The ``torch.compile`` backend or mode its trainers ran through (``run --compile``), None when eager."""
        return self.record.get("compile") or (self.record.get("environment") or {}).get("compile")

    @property
    def budget(self) -> str:
        """The budget asked for (``default`` covers the ``small`` one it picks on small datasets): runs of other
        budgets never share a table or a test."""
        variant = self.record.get("variant")
        if isinstance(variant, dict) and variant.get("budget"):
            return str(variant["budget"])
        budget = str(self.record.get("budget") or "default")
        return "default" if budget == "small" else budget

    @property
    def seed(self) -> int:
        seed = self.record.get("seed")
        if seed is None:
            match = re.fullmatch(r"seed(-?\d+)", self.folder.name)
            seed = int(match.group(1)) if match else -1
        return int(seed)

    @property
    def dataset(self) -> str:
        dataset = self.record.get("dataset")
        name = dataset.get("name") if isinstance(dataset, dict) else dataset
        return str(name or self.folder.parent.parent.name)

    @property
    def protocol(self) -> dict[str, Any] | None:
        return self.record.get("protocol")

    @property
    def sid(self) -> bool:
        """A method built on semantic IDs: the record's SID section says its kind (two-stage, joint,
        unified; ``vectors`` for ``knn-last``, which only encodes); records older than the kind name a
        tokenizer when they are one."""
        sid = self.extra.get("sid")
        if not isinstance(sid, dict):
            return False
        return sid.get("kind", "two-stage" if "tokenizer" in sid else "vectors") != "vectors"

    @property
    def extra(self) -> dict[str, Any]:
        return self.record.get("extra") or {}

    def test(self, metric: str) -> float | None:
        value = self.record.get("metrics", {}).get("test", {}).get(metric)
        return None if value is None else float(value)

    def per_user(self) -> dict[str, np.ndarray] | None:
        """Per-user test metrics (``user`` index and one array per metric), or None without the file."""
        if self._per_user is None:
            path = self.folder / PER_USER
            if not path.is_file():
                return None
            with np.load(path) as data:
                self._per_user = {key: data[key] for key in data.files}
        return self._per_user


def collect_runs(roots: Sequence[Path]) -> tuple[list[Run], list[Run]]:
    """Every record under ``roots`` (used runs, duplicates left out).

    A duplicate is a second record of one (runs group, dataset, protocol, method,
    seed); the successful one is kept, else the first in (RUNS_DIR, path) order.
    """
    found: list[Run] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise ConfigError(f"expected a folder of runs (written by `python -m bench run --out DIR`), "
                              f"found no folder at {root}")
        records = load_records(root)
        if not records:
            raise ConfigError(f"expected {RESULT} or {FAILURE} files under {root} (as `python -m bench run --out "
                              f"{root}` writes them), found none; run some methods first or pass the folder given "
                              f"to `run --out`")
        for record in records:
            folder = Path(record.pop("_folder"))
            parts = folder.relative_to(root).parts
            found.append(Run(record, root, folder, "/".join(parts[:-3])))
    used: dict[tuple, Run] = {}
    duplicates: list[Run] = []
    for run in found:
        key = (run.group, run.dataset, protocol_key(run.protocol), run.budget, run.method, run.seed)
        if key in used and used[key].precision != run.precision:
            first = used[key]
            raise ConfigError(
                f"expected one precision (and compile setting) per method and seed in a report, found "
                f"{run.method} seed {run.seed} in {first.precision} ({first.folder}) and {run.precision} "
                f"({run.folder}); keeping either would silently drop the other: pass the folders of one setting, "
                f"or put them in separate runs groups")
        if key not in used:
            used[key] = run
        elif run.ok and not used[key].ok:
            duplicates.append(used[key])
            used[key] = run
        else:
            duplicates.append(run)
    return list(used.values()), duplicates


def protocol_key(protocol: dict[str, Any] | None) -> str:
    """The protocol as text that is equal for equal protocols: runs share a table only under one key."""
    return json.dumps(protocol, sort_keys=True)


def per_user_mean(runs: list[Run], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Users present in every run, and the metric averaged over the runs (seeds) per user."""
    arrays = [r.per_user() for r in runs]
    if not arrays or any(a is None or metric not in a for a in arrays):
        return None
    users = arrays[0]["user"]
    for a in arrays[1:]:
        users = np.intersect1d(users, a["user"])
    users = np.unique(users)
    values = []
    for a in arrays:
        order = np.argsort(a["user"], kind="stable")
        index = order[np.searchsorted(a["user"], users, sorter=order)]
        values.append(a[metric][index].astype(np.float64))
    return users, np.mean(values, axis=0)


def paired_per_user(ours: list[Run], theirs: list[Run], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The metric per user for two groups of runs (each averaged over its runs), on the users both have, in
    one order: the two samples of a paired test. None when a run lacks its per-user file or the metric."""
    a, b = per_user_mean(ours, metric), per_user_mean(theirs, metric)
    if a is None or b is None:
        return None
    users = np.intersect1d(a[0], b[0])
    return a[1][np.searchsorted(a[0], users)], b[1][np.searchsorted(b[0], users)]
