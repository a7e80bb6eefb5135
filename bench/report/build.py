"""A report of result records: one self-contained ``index.html``, ``tables.tex``, ``results.csv`` and plots.

``build_report(runs_dirs, out)`` reads every ``result.json`` and ``failure.json``
under the given folders and writes, into ``out``:

- ``index.html``: tables, plots (embedded PNG), failed runs, protocol and environment;
  no external CSS, JS or fonts, viewable offline;
- ``tables.tex`` (booktabs fragment) and ``tables-document.tex`` (a wrapper that compiles it);
- ``results.csv``: one row per dataset / runs group / protocol / method / seed / split / metric;
- ``plots/*.png`` and ``plots/*.svg``.

Runs are grouped into one table per (dataset, runs group, protocol): protocols are
never mixed, and the runs group (the folders between a RUNS_DIR and
``DATASET/METHOD/seedK``, e.g. ``loo-full`` or ``timing-alone``) keeps repeated
runs of one setting apart. The same runs give byte-identical files.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.core.errors import ConfigError
from bench.core.io import atomic_write_bytes
from bench.report import stats
from bench.report.summary import METRICS, load_references, protocol_label
from bench.run.records import FAILURE, PER_USER, RESULT, load_records

ALPHA = 0.05


TEST_METRIC = "ndcg@10"  # the paired tests, the default baseline and the plots use this metric


SPLITS = ("test", "valid")


STAGE_ORDER = ("prepare_data", "encode", "tokenize", "pretrain", "generator", "fit", "evaluate_valid", "evaluate_test",
               "total")


SVG_SALT = "sidbench"


def short_metric(metric: str) -> str:
    return metric.replace("recall", "R").replace("ndcg", "N")


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
        return str(self.record.get("method") or self.folder.parent.name)

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
        """A SID method: its record names a tokenizer (``knn-last`` records only its encoder)."""
        sid = self.extra.get("sid")
        return isinstance(sid, dict) and "tokenizer" in sid

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
        key = (run.group, run.dataset, _protocol_key(run.protocol), run.method, run.seed)
        if key not in used:
            used[key] = run
        elif run.ok and not used[key].ok:
            duplicates.append(used[key])
            used[key] = run
        else:
            duplicates.append(run)
    return list(used.values()), duplicates


def _protocol_key(protocol: dict[str, Any] | None) -> str:
    return json.dumps(protocol, sort_keys=True)


def protocol_text(protocol: dict[str, Any] | None) -> str:
    if not protocol:
        return "protocol not recorded"
    try:
        return protocol_label(protocol)
    except KeyError:
        return ", ".join(f"{k}={v}" for k, v in sorted(protocol.items()))


@dataclass
class Table:
    """The runs of one dataset, runs group and protocol: one main table of the report."""

    dataset: str
    group: str
    protocol: dict[str, Any] | None
    label: str
    runs: list[Run]
    id: str = ""

    @property
    def title(self) -> str:
        return " · ".join(part for part in (self.dataset, self.group, self.label) if part)

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.runs})

    def ok_runs(self, method: str) -> list[Run]:
        return sorted((r for r in self.runs if r.method == method and r.ok), key=lambda r: r.seed)

    @property
    def methods(self) -> list[str]:
        """ID-based methods first, then semantic-ID methods, alphabetical within each."""
        names = {r.method for r in self.runs}
        sid = {r.method for r in self.runs if r.ok and r.sid}
        return sorted(names, key=lambda m: (m in sid, m))

    def is_sid(self, method: str) -> bool:
        return any(r.sid for r in self.ok_runs(method))

    def mean(self, method: str, metric: str) -> float | None:
        values = [v for r in self.ok_runs(method) if (v := r.test(metric)) is not None]
        return float(np.mean(values)) if values else None


def make_tables(runs: list[Run]) -> list[Table]:
    grouped: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        grouped[(run.dataset, run.group, _protocol_key(run.protocol))].append(run)
    labels = _protocol_labels({key: json.loads(key) for _, _, key in grouped})
    tables = [Table(ds, group, json.loads(key), labels[key], sorted(rs, key=lambda r: (r.method, r.seed)))
              for (ds, group, key), rs in grouped.items()]
    tables.sort(key=lambda t: (t.dataset, t.group, t.label))
    used: set[str] = set()
    for table in tables:
        base = re.sub(r"[^a-z0-9]+", "-", f"{table.dataset} {table.group} {table.label}".lower()).strip("-")
        table.id, n = base, 1
        while table.id in used:
            n += 1
            table.id = f"{base}-{n}"
        used.add(table.id)
    return tables


def _protocol_labels(protocols: dict[str, dict[str, Any] | None]) -> dict[str, str]:
    """Short labels; distinct protocols that share one get the keys that tell them apart."""
    labels = {key: protocol_text(p) for key, p in protocols.items()}
    by_label: dict[str, list[str]] = defaultdict(list)
    for key, label in labels.items():
        by_label[label].append(key)
    for label, keys in by_label.items():
        if len(keys) < 2:
            continue
        dicts = [protocols[k] or {} for k in keys]
        differing = sorted({k for d in dicts for k in d if len({json.dumps(x.get(k)) for x in dicts}) > 1})
        for key, d in zip(keys, dicts, strict=True):
            labels[key] = f"{label} ({', '.join(f'{k}={d.get(k)}' for k in differing)})"
    return labels


def choose_baseline(table: Table, requested: str | None) -> tuple[str | None, str]:
    """The method the others are tested against in ``table``, and a sentence saying why."""
    present = [m for m in table.methods if table.ok_runs(m)]
    if requested:
        if requested in present:
            return requested, f"baseline {requested} (--baseline)"
        return None, f"--baseline {requested} has no successful run in this table: no tests"
    candidates = [m for m in present if not table.is_sid(m)]
    if not candidates:
        return None, "no ID-based method in this table: no tests (pass --baseline METHOD)"
    best = max(candidates, key=lambda m: table.mean(m, TEST_METRIC) or -math.inf)  # ties: first by name
    return best, f"baseline {best}: the ID-based method with the best mean test {short_metric(TEST_METRIC)}"


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


def significance(table: Table, baseline: str | None, metric: str = TEST_METRIC) -> list[dict[str, Any]]:
    """Paired t-test and Wilcoxon signed-rank of every method against the baseline on per-user ``metric``.

    Users are paired on their index; a multi-seed method is the per-user mean over
    the seeds both it and the baseline have. Holm's correction runs across the
    comparisons of the table, once per test.
    """
    if baseline is None:
        return []
    base_runs = {r.seed: r for r in table.ok_runs(baseline)}
    rows = []
    for method in table.methods:
        if method == baseline:
            continue
        runs = {r.seed: r for r in table.ok_runs(method)}
        seeds = sorted(set(runs) & set(base_runs))
        row: dict[str, Any] = {"method": method, "seeds": seeds, "note": ""}
        rows.append(row)
        if not runs:
            row["note"] = "no successful run"
            continue
        if not seeds:
            row["note"] = "no seed in common with the baseline"
            continue
        ours = per_user_mean([runs[s] for s in seeds], metric)
        theirs = per_user_mean([base_runs[s] for s in seeds], metric)
        if ours is None or theirs is None:
            row["note"] = f"{PER_USER} missing"
            continue
        users = np.intersect1d(ours[0], theirs[0])
        a = ours[1][np.searchsorted(ours[0], users)]
        b = theirs[1][np.searchsorted(theirs[0], users)]
        if len(users) < 2:
            row["note"] = "fewer than 2 users in common"
            continue
        t, p_t = stats.paired_ttest(a, b)
        w, p_w = stats.wilcoxon_test(a, b)
        row.update(users=len(users), mean=float(a.mean()), base_mean=float(b.mean()), diff=float((a - b).mean()),
                   t=t, p_t=p_t, w=w, p_w=p_w)
    tested = [r for r in rows if "p_t" in r]
    for key in ("p_t", "p_w"):
        for row, adjusted in zip(tested, stats.holm([r[key] for r in tested]), strict=True):
            row[f"{key}_holm"] = adjusted
    for row in tested:
        row["marks"] = ("*" if row["p_t_holm"] < ALPHA else "") + ("†" if row["p_w_holm"] < ALPHA else "")
    return rows


def fmt(value: Any) -> str:
    """A number as the report shows it; anything else as text."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        if abs(value) >= 1:
            return f"{value:.3f}"
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def fmt_seconds(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 1 else f"{value:.3f}"


def _aggregate(values: list[Any], number: Any = fmt) -> dict[str, Any]:
    """Mean ± std of numbers over seeds (shown by ``number``), or the distinct values of anything else."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values):
        if all(isinstance(v, int) for v in numbers) and len(set(numbers)) == 1:
            return {"value": numbers[0], "text": fmt(numbers[0])}
        mean, std = stats.mean_std(numbers)
        text = number(mean) + (f" ± {number(std)}" if std else "")
        return {"value": mean, "std": std, "text": text}
    distinct = sorted({json.dumps(v, sort_keys=True) for v in values})
    return {"value": None, "text": " / ".join(fmt(json.loads(v)) for v in distinct)}


def _flatten(prefix: str, value: Any, scalars: dict[str, Any], lists: dict[str, list[dict[str, Any]]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, scalars, lists)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        lists[prefix] = value
    else:
        scalars[prefix] = value


def main_rows(table: Table, sig: list[dict[str, Any]], refs: dict[tuple[str, str], list[dict[str, Any]]]
              ) -> list[dict[str, Any]]:
    """One row per method: seed count, mean ± std per metric with best/second marks, published numbers."""
    marks = {m: stats.best_second([table.mean(meth, m) for meth in table.methods]) for m in METRICS}
    sig_marks = {row["method"]: row.get("marks", "") for row in sig}
    expected = table.seeds
    rows = []
    for i, method in enumerate(table.methods):
        ok = table.ok_runs(method)
        ok_seeds = [r.seed for r in ok]
        failed = sorted(r.seed for r in table.runs if r.method == method and not r.ok)
        missing = [s for s in expected if s not in ok_seeds and s not in failed]
        cells = []
        method_refs = refs.get((table.dataset, method), [])
        for metric in METRICS:
            values = [v for r in ok if (v := r.test(metric)) is not None]
            cell: dict[str, Any] = {"metric": metric, "mark": marks[metric][i], "sig": ""}
            if values:
                cell["mean"], cell["std"] = stats.mean_std(values)
                if metric == TEST_METRIC:
                    cell["sig"] = sig_marks.get(method, "")
            cell["refs"] = [{"value": ref["value"], "source": ref["source"],
                             "delta": stats.delta_percent(cell["mean"], ref["value"]) if values else None}
                            for ref in method_refs if ref["metric"] == metric]
            cells.append(cell)
        notes = ([f"seed {', '.join(map(str, failed))} failed"] if failed else []) + \
                ([f"seed {', '.join(map(str, missing))} missing"] if missing else [])
        sources = sorted({(ref["source"], ref["protocol"]) for ref in method_refs})
        rows.append({"method": method, "sid": table.is_sid(method), "n_ok": len(ok), "n_expected": len(expected),
                     "seeds": ok_seeds, "notes": notes, "cells": cells,
                     "published": [{"source": s, "protocol": p} for s, p in sources]})
    return rows


def diagnostics_section(table: Table) -> dict[str, Any] | None:
    """SID diagnostics (``extra.sid.diagnostics``): scalars per method, and one table per list of per-level dicts."""
    per_method: dict[str, list[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]] = {}
    for method in table.methods:
        found = []
        for run in table.ok_runs(method):
            diagnostics = run.extra.get("sid", {}).get("diagnostics")
            if isinstance(diagnostics, dict):
                scalars: dict[str, Any] = {}
                lists: dict[str, list[dict[str, Any]]] = {}
                _flatten("", diagnostics, scalars, lists)
                found.append((scalars, lists))
        if found:
            per_method[method] = found
    if not per_method:
        return None
    scalar_keys = _ordered_keys(s for found in per_method.values() for s, _ in found)
    scalar_rows = []
    for method, found in per_method.items():
        cells = {k: _aggregate([s[k] for s, _ in found if k in s]) for k in scalar_keys}
        scalar_rows.append({"method": method, "seeds": len(found),
                            "cells": [cells[k] if cells[k]["text"] else {"value": None, "text": "–"}
                                      for k in scalar_keys]})
    level_tables = []
    for name in _ordered_keys(ls for found in per_method.values() for _, ls in found):
        keys = _ordered_keys(level for found in per_method.values() for _, ls in found for level in ls.get(name, []))
        keys = [k for k in keys if k != "level"]  # a "level" entry numbers the row (else its position, from 0)
        rows = []
        for method, found in per_method.items():
            depth = max((len(ls.get(name, [])) for _, ls in found), default=0)
            for index in range(depth):
                entries = [ls[name][index] for _, ls in found if index < len(ls.get(name, []))]
                cells = []
                for k in keys:
                    values = [e[k] for e in entries if k in e]
                    cells.append(_aggregate(values) if values else {"value": None, "text": "–"})
                rows.append({"method": method, "level": entries[0].get("level", index), "cells": cells})
        level_tables.append({"name": name, "columns": keys, "rows": rows})
    return {"scalar_columns": scalar_keys, "scalar_rows": scalar_rows, "levels": level_tables}


def _ordered_keys(dicts: Any) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        for k in d:
            keys.setdefault(k, None)
    return list(keys)


def proxy_section(table: Table) -> dict[str, Any] | None:
    """FAMAE proxy metrics (``extra.proxy``), the test NDCG@10 beside them, and their rank correlation with it."""
    per_method: dict[str, list[dict[str, Any]]] = {}
    for method in table.methods:
        found = []
        for run in table.ok_runs(method):
            proxy = run.extra.get("proxy")
            if isinstance(proxy, dict):
                scalars: dict[str, Any] = {}
                _flatten("", proxy, scalars, {})
                found.append(scalars)
        if found:
            per_method[method] = found
    if not per_method:
        return None
    keys = _ordered_keys(per_method[m][i] for m in per_method for i in range(len(per_method[m])))
    rows = []
    for method, found in per_method.items():
        cells = [(_aggregate(vals) if (vals := [f[k] for f in found if k in f]) else {"value": None, "text": "–"})
                 for k in keys]
        quality = table.mean(method, TEST_METRIC)
        rows.append({"method": method, "seeds": len(found), "cells": cells, "quality": quality})
    correlations = []
    if len(rows) >= 3:
        from scipy.stats import spearmanr

        for j, key in enumerate(keys):
            pairs = [(r["cells"][j]["value"], r["quality"]) for r in rows
                     if isinstance(r["cells"][j]["value"], (int, float)) and r["quality"] is not None]
            if len(pairs) >= 3 and len({p for p, _ in pairs}) > 1:
                rho = spearmanr([p for p, _ in pairs], [q for _, q in pairs]).statistic
                correlations.append({"key": key, "rho": float(rho), "n": len(pairs)})
    return {"columns": keys, "rows": rows, "correlations": correlations}


def tokenizer_seconds(run: Run) -> float | None:
    """Tokenizer fit time: ``extra.sid.diagnostics.fit_seconds``, ``extra.sid.fit_seconds`` or a ``tokenize`` timing."""
    sid = run.extra.get("sid") or {}
    for source in (sid.get("diagnostics") or {}, sid):
        if isinstance(source.get("fit_seconds"), (int, float)):
            return float(source["fit_seconds"])
    timing = (run.record.get("timings") or {}).get("tokenize")
    return float(timing) if isinstance(timing, (int, float)) else None


def cost_section(table: Table) -> dict[str, Any]:
    """Wall time per stage (mean over seeds), tokenizer fit time, epochs and device per method."""
    stages = _ordered_keys(r.record.get("timings") or {} for r in table.runs if r.ok)
    stages = sorted(stages, key=lambda s: (STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER), s))
    rows = []
    for method in table.methods:
        runs = table.ok_runs(method)
        if not runs:
            continue
        timings = [r.record.get("timings") or {} for r in runs]
        cells = [_aggregate([t[s] for t in timings if s in t], fmt_seconds) if any(s in t for t in timings)
                 else {"value": None, "text": "–"} for s in stages]
        tok = [v for r in runs if (v := tokenizer_seconds(r)) is not None]
        # the trainer's record of the model that ranks: "train" (ID models) or "generator" (SID methods)
        train = [r.extra.get("train") or r.extra.get("generator") or {} for r in runs]
        rows.append({
            "method": method, "seeds": len(runs), "cells": cells,
            "tokenizer": _aggregate(tok, fmt_seconds) if tok else {"value": None, "text": "–"},
            "epochs": ", ".join(fmt(t.get("epochs_run")) for t in train),
            "best_epoch": ", ".join(fmt(t.get("best_epoch")) for t in train),
            "seconds_per_epoch": _aggregate([t["seconds_per_epoch"] for t in train if "seconds_per_epoch" in t],
                                            fmt_seconds)
            if any("seconds_per_epoch" in t for t in train) else {"value": None, "text": "–"},
            "device": " / ".join(sorted({str((r.record.get("environment") or {}).get("device")) for r in runs})),
            "shared": sum(1 for r in runs if ((r.record.get("environment") or {}).get("gpu_other_processes") or 0) > 0),
        })
    names = {"prepare_data": "prepare", "evaluate_valid": "eval valid", "evaluate_test": "eval test"}
    devices = sorted({r["device"] for r in rows})
    return {"stages": [names.get(s, s) for s in stages], "rows": rows,
            "tokenizer": any(r["tokenizer"]["text"] != "–" for r in rows),
            "shared": any(r["shared"] for r in rows),
            "device": devices[0] if len(devices) == 1 else None}  # one device: said once, under the table


def _setting_by_method(table: Table, key: str, unset: str) -> str:
    """``a: m1, m2; b: m3`` for an environment setting such as ``precision`` (``unset`` where a record lacks it)."""
    methods: dict[str, set[str]] = defaultdict(set)
    for run in table.runs:
        methods[str((run.record.get("environment") or {}).get(key) or unset)].add(run.method)
    if len(methods) == 1:
        return next(iter(methods))
    return "; ".join(f"{value}: {', '.join(sorted(ms))}" for value, ms in sorted(methods.items()))


def environment_section(table: Table) -> list[tuple[str, str]]:
    """Git commits, versions, python, platform and devices of the table's runs (every distinct value)."""
    envs = [r.record.get("environment") or {} for r in table.runs]

    def distinct(values: Any) -> str:
        found = sorted({str(v) for v in values if v not in (None, "")})
        return ", ".join(found) if found else "not recorded"

    def commit(env: dict[str, Any]) -> str | None:
        git = env.get("git") or {}
        if not git.get("commit"):
            return None
        return git["commit"][:12] + (" (uncommitted changes)" if git.get("dirty") else "")

    items = [("git commit", distinct(commit(e) for e in envs)),
             ("sidbench", distinct(r.record.get("sidbench_version") for r in table.runs)),
             ("python", distinct(e.get("python") for e in envs)),
             ("platform", distinct(e.get("platform") for e in envs)),
             ("device", distinct(e.get("device") for e in envs)),
             # records from before run --precision ran at the fp32 default
             ("float32 matmul precision", _setting_by_method(table, "precision", "fp32 (default, not recorded)")),
             ("torch.compile", _setting_by_method(table, "compile", "off"))]
    packages = _ordered_keys(e.get("packages") or {} for e in envs)
    items += [(name, distinct((e.get("packages") or {}).get(name) for e in envs)) for name in sorted(packages)]
    dataset = sorted({(r.record.get("dataset") or {}).get("checksum") or "" for r in table.runs} - {""})
    items.append(("dataset checksum", ", ".join(c[:16] for c in dataset) or "not recorded"))
    return items


class Plotter:
    """Matplotlib (Agg) figures saved as PNG and SVG with fixed metadata, so reruns are byte-identical."""

    def __init__(self, folder: Path, methods: list[str]):
        import seaborn as sns

        self.folder = folder
        palette = sns.color_palette("tab10" if len(methods) <= 10 else "husl", max(len(methods), 1))
        self.colors = {m: palette[i] for i, m in enumerate(methods)}

    def _rc(self) -> Any:
        import matplotlib

        return matplotlib.rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "path", "font.family": "DejaVu Sans",
                                      "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                                      "path.simplify": True})

    def _figure(self, width: float, height: float) -> Any:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        return figure

    def _save(self, figure: Any, name: str, title: str, caption: str) -> dict[str, str]:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=150, metadata={"Software": None})
        png = buffer.getvalue()
        svg = io.BytesIO()
        figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
        atomic_write_bytes(self.folder / f"{name}.png", png)
        atomic_write_bytes(self.folder / f"{name}.svg", svg.getvalue())
        return {"title": title, "caption": caption, "png": f"plots/{name}.png", "svg": f"plots/{name}.svg",
                "data": base64.b64encode(png).decode("ascii")}

    def metric_bars(self, table: Table) -> dict[str, str] | None:
        import pandas as pd
        import seaborn as sns

        rows = [{"method": r.method, "metric": short_metric(m), "value": r.test(m), "seed": r.seed}
                for method in table.methods for r in table.ok_runs(method) for m in METRICS
                if r.test(m) is not None]
        if not rows:
            return None
        frame = pd.DataFrame(rows)
        methods = [m for m in table.methods if m in set(frame["method"])]
        order = [short_metric(m) for m in METRICS]
        with self._rc():
            figure = self._figure(max(6.0, 1.0 + 0.35 * len(methods) * len(order) / 2), 3.4)
            ax = figure.subplots()
            sns.barplot(data=frame, x="metric", y="value", hue="method", order=order, hue_order=methods,
                        errorbar="sd", capsize=0.15, err_kws={"linewidth": 1}, palette=self.colors, ax=ax)
            if table.seeds and len(table.seeds) > 1:
                sns.stripplot(data=frame, x="metric", y="value", hue="method", order=order, hue_order=methods,
                              dodge=True, jitter=False, size=2.5, palette={m: "black" for m in methods},
                              legend=False, ax=ax)
            ax.set_xlabel("")
            ax.set_ylabel("test metric (mean, ±1 sd over seeds)")
            ax.legend(title=None, fontsize=8, ncols=min(len(methods), 4), loc="upper left", frameon=False)
            ax.set_ylim(0, frame["value"].max() * 1.25)
            return self._save(figure, f"{table.id}-metrics", "Test metrics",
                              "Mean over seeds; error bars ±1 sample sd, dots the single seeds.")

    def curves(self, table: Table) -> dict[str, str] | None:
        from matplotlib.ticker import MaxNLocator

        lines = []
        for method in table.methods:
            for run in table.ok_runs(method):
                by_stage: dict[str, list[tuple[int, float]]] = defaultdict(list)
                for entry in run.record.get("curve") or []:
                    if TEST_METRIC in entry and entry[TEST_METRIC] is not None:
                        by_stage[str(entry.get("stage", ""))].append((int(entry.get("epoch", 0)),
                                                                      float(entry[TEST_METRIC])))
                lines += [(method, run.seed, stage, sorted(points)) for stage, points in sorted(by_stage.items())]
        if not lines:
            return None
        multi_stage = {m for m, _, s, _ in lines if len({s2 for m2, _, s2, _ in lines if m2 == m}) > 1}
        styles = ["-", "--", ":", "-."]
        with self._rc():
            figure = self._figure(6.4, 3.4)
            ax = figure.subplots()
            labelled = set()
            for method, _seed, stage, points in lines:
                stages = sorted({s for m, _, s, _ in lines if m == method})
                label = f"{method} ({stage})" if method in multi_stage else method
                ax.plot([p[0] for p in points], [p[1] for p in points], color=self.colors[method],
                        linestyle=styles[stages.index(stage) % len(styles)], linewidth=1.1, alpha=0.85,
                        label=None if label in labelled else label)
                labelled.add(label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"validation {short_metric(TEST_METRIC)}")
            ax.legend(fontsize=8, frameon=False)
            return self._save(figure, f"{table.id}-curves", "Training curves",
                              f"Validation {short_metric(TEST_METRIC)} per epoch, one line per seed.")

    def levels(self, table: Table, diagnostics: dict[str, Any] | None) -> dict[str, str] | None:
        if not diagnostics or not diagnostics["levels"]:
            return None
        level_table = next((t for t in diagnostics["levels"] if t["name"].split(".")[-1] == "levels"),
                           diagnostics["levels"][0])
        columns = level_table["columns"]
        wanted = [next(c for c in columns if c.startswith(k)) for k in ("usage", "conditional_entropy")
                  if any(c.startswith(k) for c in columns)] or columns[:2]
        panels = []
        for key in wanted:
            j = level_table["columns"].index(key)
            points = defaultdict(list)
            for row in level_table["rows"]:
                value = row["cells"][j]["value"]
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    points[row["method"]].append((row["level"], float(value)))
            if points:
                panels.append((key, points))
        if not panels:
            return None
        with self._rc():
            figure = self._figure(3.3 * len(panels) + 0.6, 3.0)
            axes = figure.subplots(1, len(panels), squeeze=False)[0]
            for ax, (key, points) in zip(axes, panels, strict=True):
                for method, values in points.items():
                    ax.plot([v[0] for v in values], [v[1] for v in values], marker="o", color=self.colors[method],
                            label=method, linewidth=1.2)
                ax.set_xlabel("level")
                ax.set_ylabel(key.replace("_", " "))
                ax.set_xticks(sorted({v[0] for vs in points.values() for v in vs}))
            axes[0].legend(fontsize=8, frameon=False)
            return self._save(figure, f"{table.id}-levels", "Codebook levels",
                              f"Per-level {' and '.join(k.replace('_', ' ') for k, _ in panels)} per tokenizer "
                              f"({level_table['name']}, mean over seeds).")

    def quality_vs_time(self, table: Table) -> dict[str, str] | None:
        points = []
        for method in table.methods:
            runs = table.ok_runs(method)
            seconds = [v for r in runs if (v := tokenizer_seconds(r)) is not None]
            quality = [v for r in runs if (v := r.test(TEST_METRIC)) is not None]
            if seconds and quality:
                points.append((method, stats.mean_std(seconds), stats.mean_std(quality)))
        if not points:
            return None
        with self._rc():
            figure = self._figure(5.0, 3.4)
            ax = figure.subplots()
            for method, (sec, sec_sd), (q, q_sd) in points:
                ax.errorbar(sec, q, xerr=sec_sd or None, yerr=q_sd or None, fmt="o", color=self.colors[method],
                            capsize=2)
                ax.annotate(method, (sec, q), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xlabel("tokenizer fit time (s)")
            ax.set_ylabel(f"test {short_metric(TEST_METRIC)}")
            return self._save(figure, f"{table.id}-quality-vs-time", "Quality vs tokenization time",
                              "Mean over seeds, bars ±1 sd.")


def _html(context: dict[str, Any]) -> str:
    import jinja2

    source = resources.files("bench.report").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt
    env.filters["p"] = fmt_p
    env.filters["short"] = short_metric
    return env.from_string(source).render(**context)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "†": r"$\dagger$",
        "·": r"$\cdot$", "–": "--"}


def tex(text: Any) -> str:
    """``text`` with LaTeX's special characters escaped (±, †, · and – written as LaTeX)."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def _tex_tabular(columns: str, header: list[str], rows: list[list[str]], caption: str,
                 rules_after: frozenset[int] | set[int] = frozenset()) -> str:
    lines = [r"\begin{table}[htbp]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{3pt}",
             rf"\caption{{{caption}}}", rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    for i, row in enumerate(rows):
        lines.append(" & ".join(row) + r" \\")
        if i in rules_after and i < len(rows) - 1:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _tex_mark(text: str, mark: str) -> str:
    return rf"\textbf{{{text}}}" if mark == "best" else rf"\underline{{{text}}}" if mark == "second" else text


def render_tex(sections: list[dict[str, Any]]) -> str:
    """Booktabs tables of every section: main table, published numbers and deltas, SID diagnostics."""
    parts = ["% sidbench report tables; needs \\usepackage{booktabs}. Compile tables-document.tex to see them.", ""]
    for s in sections:
        title = tex(s["title"])
        header = ["Method", "Seeds"] + [tex(short_metric(m)) for m in METRICS]
        rows = []
        for row in s["rows"]:
            cells = [tex(row["method"]), f"{row['n_ok']}/{row['n_expected']}"]
            for cell in row["cells"]:
                if "mean" not in cell:
                    cells.append("--")
                    continue
                text = _tex_mark(f"{cell['mean']:.4f}", cell["mark"])
                if cell["std"] is not None:
                    text += rf" $\pm$ {cell['std']:.4f}"
                if cell["sig"]:
                    text += "$^{" + cell["sig"].replace("†", r"\dagger") + "}$"
                cells.append(text)
            rows.append(cells)
        caption = (f"{title}: test metrics, mean $\\pm$ sample std over seeds. Bold: best, underlined: second best "
                   f"(at 4 decimals; ties all marked). ")
        if s["baseline"]:
            caption += (f"$^{{*}}$/$^{{\\dagger}}$: {tex(short_metric(TEST_METRIC))} differs from {tex(s['baseline'])} "
                        f"(paired t-test / Wilcoxon signed-rank on per-user values, Holm-adjusted $p<{ALPHA}$).")
        parts.append(_tex_tabular("l" + "c" + "r" * len(METRICS), header, rows, caption))
        published = []
        breaks = set()
        for row in s["rows"]:
            for cell in row["cells"]:
                for ref in cell["refs"]:
                    published.append([tex(row["method"]), tex(short_metric(cell["metric"])),
                                      f"{cell['mean']:.4f}" if "mean" in cell else "--", f"{ref['value']:.4f}",
                                      f"{ref['delta']:+.1f}" if ref["delta"] is not None else "--",
                                      tex(ref["source"])])
            if published and row["published"]:
                breaks.add(len(published) - 1)
        if published:
            sources = "; ".join(f"{tex(p['source'])}: {tex(p['protocol'])}"
                                for p in _unique(p for row in s["rows"] for p in row["published"]))
            parts.append(_tex_tabular("llrrrl", ["Method", "Metric", "Ours", "Published", r"$\Delta$ (\%)", "Source"],
                                      published, f"{title}: our numbers ({tex(s['label'])}) against the published "
                                      f"ones. Published protocols: {sources}.", breaks))
        diag = s["diagnostics"]
        if diag and diag["scalar_columns"]:
            header = ["Method", "Seeds"] + [tex(c) for c in diag["scalar_columns"]]
            rows = [[tex(r["method"]), str(r["seeds"])] + [tex(c["text"]) for c in r["cells"]]
                    for r in diag["scalar_rows"]]
            parts.append(_tex_tabular("lc" + "r" * len(diag["scalar_columns"]), header, rows,
                                      f"{title}: SID diagnostics (mean over seeds)."))
        for level_table in (diag or {}).get("levels", []):
            header = ["Method", "Level"] + [tex(c) for c in level_table["columns"]]
            rows = [[tex(r["method"]), str(r["level"])] + [tex(c["text"]) for c in r["cells"]]
                    for r in level_table["rows"]]
            parts.append(_tex_tabular("lc" + "r" * len(level_table["columns"]), header, rows,
                                      f"{title}: SID diagnostics per level ({tex(level_table['name'])})."))
    return "\n".join(parts)


TEX_DOCUMENT = r"""\documentclass{article}
\usepackage{booktabs}
\setlength{\textwidth}{17cm}
\setlength{\oddsidemargin}{-0.5cm}
\begin{document}
\input{tables}
\end{document}
"""


def _unique(items: Any) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def render_csv(tables: list[Table]) -> str:
    """Tidy results: a row per dataset, runs group, protocol, method, seed, split and metric (a failed run: one)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "runs", "protocol", "method", "seed", "status", "split", "metric", "value"])
    for table in tables:
        for method in table.methods:
            for run in sorted((r for r in table.runs if r.method == method), key=lambda r: r.seed):
                head = [table.dataset, table.group, table.label, method, run.seed]
                if not run.ok:
                    writer.writerow(head + [run.record.get("status") or "failed", "", "", ""])
                    continue
                for split in SPLITS:
                    values = run.record["metrics"].get(split, {})
                    for metric in [m for m in METRICS if m in values] + sorted(set(values) - set(METRICS)):
                        writer.writerow(head + ["ok", split, metric, repr(float(values[metric]))])
    return buffer.getvalue()


def failure_rows(runs: list[Run]) -> list[dict[str, Any]]:
    return [{"dataset": r.dataset, "group": r.group, "protocol": protocol_text(r.protocol), "method": r.method,
             "seed": r.seed, "status": r.record.get("status") or "failed",
             "error": str(r.record.get("error") or "no error message recorded"),
             "traceback": str(r.record.get("traceback") or ""), "folder": str(r.folder)}
            for r in sorted(runs, key=lambda r: (r.dataset, r.group, r.method, r.seed, str(r.folder)))
            if not r.ok]


def build_report(runs_dirs: Sequence[Path], out: Path, baseline: str | None = None,
                 compare_to: Sequence[str] = ()) -> Path:
    """Write the report of every run under ``runs_dirs`` into ``out``; returns the path of ``index.html``.

    ``compare_to``: methods that each get a further significance table (HTML),
    next to the one against the table's baseline.
    """
    runs, duplicates = collect_runs(runs_dirs)
    tables = make_tables(runs)
    for option, method in [("--baseline", baseline)] + [("--compare-to", m) for m in compare_to]:
        if method and not any(table.ok_runs(method) for table in tables):
            found = sorted({r.method for r in runs if r.ok})
            raise ConfigError(f"{option} {method}: no successful run of {method!r} under "
                              f"{', '.join(map(str, runs_dirs))}; methods with results: {', '.join(found) or 'none'}. "
                              f"Pass one of them, or leave {option} out")
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for stale in sorted(plots.glob("*")):
        if stale.suffix in (".png", ".svg") and stale.is_file():
            stale.unlink()
    plotter = Plotter(plots, sorted({r.method for r in runs}))
    refs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for ref in load_references():
        refs[(ref["dataset"], ref["method"])].append(ref)
    sections = []
    for table in tables:
        chosen, baseline_note = choose_baseline(table, baseline)
        sig = significance(table, chosen)
        diagnostics = diagnostics_section(table)
        figures = [plotter.metric_bars(table), plotter.curves(table), plotter.levels(table, diagnostics),
                   plotter.quality_vs_time(table)]
        sections.append({
            "id": table.id, "title": table.title, "dataset": table.dataset, "group": table.group,
            "label": table.label, "protocol": sorted((table.protocol or {}).items()),
            "metrics": METRICS, "rows": main_rows(table, sig, refs), "baseline": chosen,
            "baseline_note": baseline_note, "significance": sig, "diagnostics": diagnostics,
            "also_significance": [{"baseline": m, "rows": significance(table, m)} for m in compare_to
                                  if m != chosen and table.ok_runs(m)],
            "proxy": proxy_section(table), "cost": cost_section(table), "environment": environment_section(table),
            "commands": sorted({c for r in table.runs if (c := r.record.get("command"))}),
            "plots": [f for f in figures if f], "n_ok": sum(r.ok for r in table.runs),
            "n_failed": sum(not r.ok for r in table.runs), "seeds": table.seeds,
        })
    context = {
        "roots": [str(p) for p in runs_dirs], "sections": sections, "failures": failure_rows(runs),
        "duplicates": [{"folder": str(r.folder), "method": r.method, "seed": r.seed, "group": r.group}
                       for r in sorted(duplicates, key=lambda r: str(r.folder))],
        "n_ok": sum(r.ok for r in runs), "n_failed": sum(not r.ok for r in runs), "alpha": ALPHA,
        "test_metric": TEST_METRIC, "metrics": METRICS,
    }
    atomic_write_bytes(out / "index.html", _html(context).encode("utf-8"))
    atomic_write_bytes(out / "tables.tex", render_tex(sections).encode("utf-8"))
    atomic_write_bytes(out / "tables-document.tex", TEX_DOCUMENT.encode("utf-8"))
    atomic_write_bytes(out / "results.csv", render_csv(tables).encode("utf-8"))
    return out / "index.html"
