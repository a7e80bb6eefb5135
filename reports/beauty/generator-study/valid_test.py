"""Validation against test N@10 and R@10 per Beauty method (means over the seeds of each folder's records).

The checkpoint of every method is chosen on validation, whose histories are the training sequences the model was
trained on; the test histories add the validation item, never seen as history. A method whose test falls further
below its validation than the ID baselines' does is fitted more closely to the training sequences.

    python reports/beauty/generator-study/valid_test.py > reports/beauty/generator-study/valid_test.md
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

BEAUTY = Path(__file__).resolve().parent.parent
FOLDERS = ["id-baselines", "sid", "sid-tf32", "letter", "etegrec", "unified", "knn", "generator-study"]


def main() -> None:
    rows = defaultdict(list)
    for folder in FOLDERS:
        for path in sorted((BEAUTY / folder / "loo-full" / "beauty").glob("*/seed*/result.json")):
            record = json.loads(path.read_text())
            metrics = record.get("metrics") or {}
            if record.get("status") != "ok" or "valid" not in metrics or (record.get("protocol") or {}).get(
                    "history_len", 20) != 20:
                continue
            overrides = (record.get("variant") or {}).get("overrides") or {}
            name = record["method"] + (f" [{', '.join(f'{k}={v}' for k, v in sorted(overrides.items()))}]"
                                       if overrides else "")
            rows[(folder, name)].append(metrics)
    print("| folder | method | seeds | valid N@10 | test N@10 | test / valid | valid R@10 | test R@10 | test / valid |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (folder, name), runs in sorted(rows.items(), key=lambda kv: (kv[0][0] != "id-baselines", kv[0])):
        cells = []
        for metric in ("ndcg@10", "recall@10"):
            valid = statistics.mean(r["valid"][metric] for r in runs)
            test = statistics.mean(r["test"][metric] for r in runs)
            cells += [f"{valid:.4f}", f"{test:.4f}", f"{test / valid:.2f}" if valid else "-"]
        print(f"| {folder} | `{name}` | {len(runs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
