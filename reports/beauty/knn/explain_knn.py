"""Why a training-free last-item kNN is level with trained SID generators on Beauty (issue 19).

For every test user, the rank of the test target among the text neighbours of the user's last history item
(text-st vectors, cosine, the last item itself left out; a repeat of the last item counts as "no neighbour").
Users fall into buckets by that rank, and for each method with records here the script gives its test
Recall@10 per bucket (each user's value averaged over the method's seeds) and the share of its hits that come
from the first bucket, where `knn-last` hits by construction. A second section buckets the users by how often
the last history item occurs in the training sequences, at the test step and at the validation step, with each
method's test Recall@10 per bucket. Both tables end with the runs of issue 19's generator study (one row per run,
its seed and options in the label), to show whether a better generator moves its hits between buckets. Prints a
Markdown report:

    SIDBENCH_CACHE=.carry/cache SIDBENCH_MIRROR=../shared/data/mirror \
        python reports/beauty/knn/explain_knn.py > reports/beauty/knn/explain.md

(the text-st vectors come from the stage cache when it holds them; otherwise they are computed, minutes on a CPU).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench import builtins  # noqa: F401  (registers the encoders)
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from bench.report.load import collect_runs, per_user_mean
from bench.sid.stages import encode_items

BEAUTY = Path(__file__).resolve().parent.parent
STUDY = BEAUTY / "generator-study" / "loo-full"
FOLDERS = ["knn", "sid", "sid-tf32", "unified", "id-baselines", "letter", "etegrec"]
METHODS = ["knn-last", "tiger", "tiger-hybrid", "resid", "sid-famae_gaoq", "sid-text-st_gaoq", "random-t5",
           "letter", "letter-native", "letter-rank", "etegrec", "etegrec-two-stage", "etegrec-joint",
           "sasrec", "sasrec-star", "unified", "unified-id-only"]
BUCKETS = [(0, 10, "top 10"), (10, 100, "11 to 100"), (100, None, "beyond 100"),
           (None, None, "repeat of the last item")]
COUNT_BUCKETS = [(0, 1, "0"), (1, 5, "1 to 4"), (5, 20, "5 to 19"), (20, None, "20 or more")]  # training occurrences


def neighbour_ranks(split: Split, vectors: np.ndarray) -> np.ndarray:
    """0-based rank of each test target among the last item's cosine neighbours; -1 where it is the last item."""
    histories, targets = split.eval_inputs("test")
    last = torch.from_numpy(histories[:, -1].astype(np.int64))
    unit = F.normalize(torch.from_numpy(vectors).float(), dim=-1)
    targets_t = torch.from_numpy(targets.astype(np.int64))
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), 2048):
        rows = slice(start, start + 2048)
        scores = unit[last[rows]] @ unit.T
        scores[torch.arange(len(scores)), last[rows]] = -float("inf")
        target_scores = scores.gather(1, targets_t[rows, None])
        ranks[rows] = (scores > target_scores).sum(1).numpy()
    ranks[targets == histories[:, -1]] = -1
    return ranks


@functools.cache
def folder_runs(folder: Path) -> list:
    """The finished runs under a loo-full folder (none if it is absent)."""
    return [r for r in collect_runs([folder])[0] if r.ok] if folder.is_dir() else []


def user_recall(runs: list, n_users: int) -> np.ndarray:
    """Test Recall@10 per user (users indexed 0..n_users-1), averaged over the runs (seeds)."""
    users, values = per_user_mean(runs, "recall@10")
    recall = np.zeros(n_users)
    recall[users] = values
    return recall


def method_recall(name: str, n_users: int) -> tuple[np.ndarray, int] | None:
    """Test Recall@10 per user averaged over the method's seeds (records under FOLDERS), and the seed count."""
    for folder in FOLDERS:  # the first folder holding the method (tiger and resid: fp32 before tf32)
        runs = [r for r in folder_runs(BEAUTY / folder / "loo-full")
                if r.folder.parent.name == name and "~" not in r.folder.name]  # its default variant only
        if runs:
            return user_recall(runs, n_users), len(runs)
    return None


def method_rows(n_users: int) -> list[tuple[str, int, np.ndarray]]:
    """(label, seeds, test Recall@10 per user) for every method of METHODS with records, then for every finished
    run of the generator study under the default protocol (its options in the label)."""
    rows = []
    for name in METHODS:
        found = method_recall(name, n_users)
        if found is not None:
            rows.append((f"`{name}`", found[1], found[0]))
    for run in sorted((r for r in folder_runs(STUDY) if r.protocol == Protocol().to_dict()),
                      key=lambda r: (r.method, r.seed)):
        rows.append((f"study (s{run.seed}): `{run.method}`", 1, user_recall([run], n_users)))
    return rows


def count_masks(counts: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Users by how often their last history item occurs in the training sequences (empty buckets left out)."""
    masks = [(label, (counts >= low) & ((counts < high) if high else True)) for low, high, label in COUNT_BUCKETS]
    return [(label, mask) for label, mask in masks if mask.any()]


def main() -> None:
    split = Split(load_dataset("beauty"), Protocol())
    vectors, meta = encode_items("text-st", {}, split, None)
    ranks = neighbour_ranks(split, vectors)
    masks = []
    for low, high, label in BUCKETS:
        if low is None:
            mask = ranks < 0
        else:
            mask = (ranks >= low) & ((ranks < high) if high else True)
        if mask.any():  # Beauty's test targets never repeat the last item: that bucket is left out there
            masks.append((label, mask))
    out = sys.stdout
    out.write("# Beauty: where `knn-last`'s hits come from, and where the trained methods' do\n\n")
    out.write(f"Test users: {len(ranks):,}. Text vectors: text-st (cache key `{meta.get('cache_key')}`). Rank of the "
              "test target among the cosine neighbours of the user's last history item (that item left out).\n\n")
    out.write("| target's neighbour rank | users | share |\n|---|---|---|\n")
    for label, mask in masks:
        out.write(f"| {label} | {int(mask.sum()):,} | {mask.mean():.4f} |\n")
    out.write("\nTest Recall@10 per bucket (each user averaged over the method's seeds), and the share of the "
              "method's hits whose target is a top-10 text neighbour of the last item:\n\n")
    header = " | ".join(label for label, _ in masks)
    out.write(f"| method | seeds | all | {header} | hits from the top-10 bucket |\n")
    out.write("|---|---|---|" + "---|" * len(masks) + "---|\n")
    rows = method_rows(len(ranks))
    for label, seeds, recall in rows:
        cells = " | ".join(f"{recall[mask].mean():.4f}" for _, mask in masks)
        top = masks[0][1]
        share = recall[top].sum() / recall.sum() if recall.sum() else float("nan")
        out.write(f"| {label} | {seeds} | {recall.mean():.4f} | {cells} | {share:.3f} |\n")
    write_count_section(out, split, rows)


def write_count_section(out, split: Split, rows: list[tuple[str, int, np.ndarray]]) -> None:
    """Test Recall@10 by how often the test history's last item (the validation target) occurs in training."""
    counts = split.item_counts()
    test_last = split.eval_inputs("test")[0][:, -1]
    valid_last = split.eval_inputs("valid")[0][:, -1]
    test_masks, valid_masks = count_masks(counts[test_last]), dict(count_masks(counts[valid_last]))
    # the validation step's count includes the user's own occurrence; the test step's never does
    out.write("\n## By how often the last history item occurs in training\n\n"
              "A test history ends on the validation target; a validation history ends on the last training "
              "item, which occurs in training at least once, for that user. Users per bucket of that item's "
              "training occurrences, at each step:\n\n")
    out.write("| occurrences in training | test users | share | validation users | share |\n|---|---|---|---|---|\n")
    n = len(test_last)
    for label, mask in test_masks:
        valid = valid_masks.get(label)
        valid_cells = f"{int(valid.sum()):,} | {valid.mean():.4f}" if valid is not None else "0 | 0"
        out.write(f"| {label} | {int(mask.sum()):,} | {mask.sum() / n:.4f} | {valid_cells} |\n")
    out.write("\nTest Recall@10 per bucket (each user averaged over the method's seeds):\n\n")
    out.write("| method | seeds | all | " + " | ".join(label for label, _ in test_masks) + " |\n")
    out.write("|---|---|---|" + "---|" * len(test_masks) + "\n")
    for label, seeds, recall in rows:
        cells = " | ".join(f"{recall[mask].mean():.4f}" for _, mask in test_masks)
        out.write(f"| {label} | {seeds} | {recall.mean():.4f} | {cells} |\n")


if __name__ == "__main__":
    main()
