"""fp32 against tf32 for the methods run both ways on Beauty (reports/beauty/sid and reports/beauty/sid-tf32).

`bench report` tests methods against each other inside one table; it cannot put one
method's fp32 and tf32 records side by side, since both carry the same method name.
This script does that for every method with records under both folders and the
same seeds, and prints a Markdown table:

    python reports/beauty/compare_precision.py > reports/beauty/precision.md

Two tests per method, on test NDCG@10:
- over seeds: Welch's t-test on the per-seed means (the training runs are the units);
- over users: the paired t-test and Wilcoxon signed-rank test on per-user NDCG@10,
  each user's value averaged over the seeds (as `bench report` pairs methods).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from bench.report import stats
from bench.report.load import collect_runs, per_user_mean
from bench.report.sections import TEST_METRIC, make_tables

HERE = Path(__file__).resolve().parent
FOLDERS = {"fp32": HERE / "sid", "tf32": HERE / "sid-tf32"}


def main_table(folder: Path):
    runs, _ = collect_runs([folder])
    return next(t for t in make_tables(runs) if t.group == "loo-full")


def main() -> int:
    tables = {name: main_table(folder) for name, folder in FOLDERS.items()}
    fp32, tf32 = tables["fp32"], tables["tf32"]
    print(f"Test {TEST_METRIC}, fp32 (`sid/`) against tf32 (`sid-tf32/`), seeds both have.\n")
    print("| method | seeds | fp32 per seed | tf32 per seed | fp32 mean | tf32 mean | tf32 vs fp32 "
          "| Welch p (seeds) | paired t p (users) | Wilcoxon p (users) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method in sorted(set(fp32.methods) & set(tf32.methods)):
        a = {r.seed: r for r in fp32.ok_runs(method)}
        b = {r.seed: r for r in tf32.ok_runs(method)}
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        va = np.array([a[s].test(TEST_METRIC) for s in seeds])
        vb = np.array([b[s].test(TEST_METRIC) for s in seeds])
        welch = scipy_stats.ttest_ind(vb, va, equal_var=False).pvalue if len(seeds) > 1 else float("nan")
        users_a, mean_a = per_user_mean([a[s] for s in seeds], TEST_METRIC)
        users_b, mean_b = per_user_mean([b[s] for s in seeds], TEST_METRIC)
        if not np.array_equal(users_a, users_b):
            print(f"{method}: the two folders rank different users", file=sys.stderr)
            return 1
        _, p_t = stats.paired_ttest(mean_b, mean_a)
        _, p_w = stats.wilcoxon_test(mean_b, mean_a)
        change = 100 * (vb.mean() - va.mean()) / va.mean()
        print(f"| `{method}` | {', '.join(map(str, seeds))} | {' / '.join(f'{v:.4f}' for v in va)} "
              f"| {' / '.join(f'{v:.4f}' for v in vb)} | {va.mean():.4f} ± {va.std(ddof=1):.4f} "
              f"| {vb.mean():.4f} ± {vb.std(ddof=1):.4f} | {change:+.1f}% | {welch:.2f} | {p_t:.2g} | {p_w:.2g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
