"""A markdown summary of result records: mean ± std over seeds, the published number and the delta.

The published numbers are data (``bench/report/references.csv``: source, dataset,
protocol, method, metric, value), so new references need no code.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bench.report.load import Run
from bench.report.stats import delta_percent
from bench.run.records import load_records

METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20")


def load_references() -> list[dict[str, Any]]:
    with resources.files("bench.report").joinpath("references.csv").open(encoding="utf-8") as fh:
        return [{**row, "value": float(row["value"])} for row in csv.DictReader(fh)]


def protocol_label(protocol: dict[str, Any]) -> str:
    excluded = ", history items excluded" if protocol.get("exclude_history") else ""
    return f"history {protocol['history_len']}{excluded}"


def summarize(runs: Path) -> str:
    """Markdown tables of every result under ``runs``, one per dataset, protocol and budget (never mixed)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    failures = []
    for record in load_records(runs):
        if record.get("status") != "ok":
            failures.append(record)
            continue
        run = Run(record, Path(runs), Path(record.pop("_folder")), "")
        budget = "" if run.budget == "default" else f", budget {run.budget}"
        groups[(f"{run.dataset} ({protocol_label(record['protocol'])}{budget})", run.method)].append(record)
    refs = {(r["dataset"], r["method"], r["metric"]): r for r in load_references()}
    lines: list[str] = []
    for table in sorted({t for t, _ in groups}):
        lines += [f"### {table}", "",
                  "| method | seeds | " + " | ".join(METRICS) + " | fit s (mean) | best epoch |",
                  "|---|---|" + "---|" * len(METRICS) + "---|---|"]
        deltas = []
        for (name, method), recs in sorted(groups.items()):
            if name != table:
                continue
            ds = recs[0]["dataset"]["name"]
            cells = []
            for metric in METRICS:
                values = np.array([r["metrics"]["test"][metric] for r in recs])
                cell = f"{values.mean():.4f}" + (f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else "")
                ref = refs.get((ds, method, metric))
                if ref:
                    deltas.append(f"| {method} | {metric} | {values.mean():.4f} | {ref['value']:.4f} | "
                                  f"{delta_percent(values.mean(), ref['value']):+.1f}% | "
                                  f"{protocol_label(recs[0]['protocol'])} | {ref['source']}: {ref['protocol']} |")
                cells.append(cell)
            fit = np.mean([r["timings"].get("fit", 0.0) for r in recs])
            best = ",".join(str(r.get("extra", {}).get("train", {}).get("best_epoch", "-")) for r in recs)
            lines.append(f"| {method} | {len(recs)} | " + " | ".join(cells) + f" | {fit:.1f} | {best} |")
        if deltas:
            lines += ["", "| method | metric | ours | published | delta | our protocol | published: source and protocol |",
                      "|---|---|---|---|---|---|---|", *deltas]
        lines.append("")
    for record in failures:
        lines.append(f"- FAILED: {record['method']} seed {record['seed']} on {record['dataset']['name']}: {record['error']}")
    return "\n".join(lines) + "\n"
