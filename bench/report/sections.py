"""The page's content as plain data: tables of runs, significance tests, main rows, and the diagnostics, proxy,
cost, environment and failure sections, with the number formats they share.

Every function returns dicts and lists that the HTML template and the LaTeX writer read; nothing here draws or writes.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.report import stats
from bench.report.load import Run, paired_per_user, protocol_key
from bench.report.summary import METRICS, protocol_label
from bench.run.records import PER_USER

ALPHA = 0.05


TEST_METRIC = "ndcg@10"  # the paired tests, the default baseline and the plots use this metric


STAGE_ORDER = ("prepare_data", "encode", "tokenize", "pretrain", "generator", "fit", "evaluate_valid", "evaluate_test",
               "total")


def short_metric(metric: str) -> str:
    return metric.replace("recall", "R").replace("ndcg", "N")


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
    """One table per dataset, runs group, protocol and budget: runs of other protocols or budgets never share one."""
    grouped: dict[tuple[str, str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        grouped[(run.dataset, run.group, protocol_key(run.protocol), run.budget)].append(run)
    labels = _protocol_labels({key: json.loads(key) for _, _, key, _ in grouped})

    def label(key: str, budget: str) -> str:
        return labels[key] if budget == "default" else f"{labels[key]}, budget {budget}"

    tables = [Table(ds, group, json.loads(key), label(key, budget), sorted(rs, key=lambda r: (r.method, r.seed)))
              for (ds, group, key, budget), rs in grouped.items()]
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


def significance(table: Table, baseline: str | None, metric: str = TEST_METRIC) -> list[dict[str, Any]]:
    """Paired t-test and Wilcoxon signed-rank of every method against the baseline on per-user ``metric``.

    Users are paired on their index; a multi-seed method is the per-user mean over
    the seeds both it and the baseline have. Holm's correction runs across the
    comparisons of the table, once per test. With two or more seeds in common,
    ``p_seeds`` is Welch's t-test on the two methods' per-seed test values: the
    training runs as the sample, unpaired, since two methods' runs of one seed
    share nothing but the number (not Holm-adjusted; it sets no mark).
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
        paired = paired_per_user([runs[s] for s in seeds], [base_runs[s] for s in seeds], metric)
        if paired is None:
            row["note"] = f"{PER_USER} missing"
            continue
        a, b = paired
        if len(a) < 2:
            row["note"] = "fewer than 2 users in common"
            continue
        t, p_t = stats.paired_ttest(a, b)
        w, p_w = stats.wilcoxon_test(a, b)
        row.update(users=len(a), mean=float(a.mean()), base_mean=float(b.mean()), diff=float((a - b).mean()),
                   t=t, p_t=p_t, w=w, p_w=p_w)
        if len(seeds) >= 2:  # the training runs as the sample: the spread the per-user tests leave out
            row["p_seeds"] = stats.welch_ttest([runs[s].test(metric) for s in seeds],
                                               [base_runs[s].test(metric) for s in seeds])[1]
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
            "compiled": sum(1 for r in runs if r.compiled),
            "compile_modes": ", ".join(sorted({str(r.compiled) for r in runs if r.compiled})),
        })
    names = {"prepare_data": "prepare", "evaluate_valid": "eval valid", "evaluate_test": "eval test"}
    devices = sorted({r["device"] for r in rows})
    return {"stages": [names.get(s, s) for s in stages], "rows": rows,
            "tokenizer": any(r["tokenizer"]["text"] != "–" for r in rows),
            "shared": any(r["shared"] for r in rows),
            "compiled": any(r["compiled"] for r in rows),
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
             # the version the code reports, else the installed package's (a record may hold both: one row)
             ("sidbench", distinct(r.record.get("sidbench_version") or (e.get("packages") or {}).get("sidbench")
                                   for r, e in zip(table.runs, envs, strict=True))),
             ("python", distinct(e.get("python") for e in envs)),
             ("platform", distinct(e.get("platform") for e in envs)),
             ("device", distinct(e.get("device") for e in envs)),
             # records from before run --precision ran at the fp32 default
             ("float32 matmul precision", _setting_by_method(table, "precision", "fp32 (default, not recorded)")),
             ("torch.compile", _setting_by_method(table, "compile", "off"))]
    packages = [name for name in _ordered_keys(e.get("packages") or {} for e in envs) if name != "sidbench"]
    items += [(name, distinct((e.get("packages") or {}).get(name) for e in envs)) for name in sorted(packages)]
    dataset = sorted({(r.record.get("dataset") or {}).get("checksum") or "" for r in table.runs} - {""})
    items.append(("dataset checksum", ", ".join(c[:16] for c in dataset) or "not recorded"))
    return items


def failure_rows(runs: list[Run]) -> list[dict[str, Any]]:
    return [{"dataset": r.dataset, "group": r.group, "protocol": protocol_text(r.protocol), "method": r.method,
             "seed": r.seed, "status": r.record.get("status") or "failed",
             "error": str(r.record.get("error") or "no error message recorded"),
             "traceback": str(r.record.get("traceback") or ""), "folder": str(r.folder)}
            for r in sorted(runs, key=lambda r: (r.dataset, r.group, r.method, r.seed, str(r.folder)))
            if not r.ok]
