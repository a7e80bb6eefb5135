"""Validation against test N@10 and R@10 per Beauty method (means over the seeds of each folder's records).

The checkpoint of every method is chosen on validation, whose histories are the training sequences the model was
trained on; the test histories add the validation item, never seen as history. A method whose test falls further
below its validation than the ID baselines' does is fitted more closely to the training sequences.

    python reports/beauty/generator-study/valid_test.py > reports/beauty/generator-study/valid_test.md
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from bench.report.load import collect_runs

BEAUTY = Path(__file__).resolve().parent.parent
FOLDERS = ["id-baselines", "sid", "sid-tf32", "letter", "etegrec", "unified", "knn", "generator-study"]


def main() -> None:
    rows = defaultdict(list)
    for folder in FOLDERS:
        runs, _ = collect_runs([BEAUTY / folder / "loo-full"])
        for run in runs:
            metrics = run.record.get("metrics") or {}
            if run.ok and "valid" in metrics and (run.protocol or {}).get("history_len", 20) == 20:
                rows[(folder, run.method)].append(metrics)
    print("| folder | method | seeds | valid N@10 | test N@10 | test / valid | valid R@10 | test R@10 | test / valid |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (folder, name), found in sorted(rows.items(), key=lambda kv: (kv[0][0] != "id-baselines", kv[0])):
        cells = []
        for metric in ("ndcg@10", "recall@10"):
            valid = statistics.mean(r["valid"][metric] for r in found)
            test = statistics.mean(r["test"][metric] for r in found)
            cells += [f"{valid:.4f}", f"{test:.4f}", f"{test / valid:.2f}" if valid else "-"]
        print(f"| {folder} | `{name}` | {len(found)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
