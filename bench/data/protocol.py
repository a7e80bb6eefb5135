"""The evaluation protocol, one implementation for every method.

Leave-one-out: each user's last item is the test target, the second last the
validation target, the rest is training. Histories are the last
``history_len`` items, left-padded with ``pad = n_items`` so the most recent
item is always in the last column. Training examples come from every prefix
of the training sequence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.core.errors import ConfigError
from bench.core.options import check_positive, parse_options

if TYPE_CHECKING:  # recipes check their [protocol] table here, so this module must not import the dataset's
    from bench.data.dataset import Dataset

TIES = ("expected",)  # how metrics treat tied scores: their expectation under random tie-breaking


@dataclass(frozen=True)
class Protocol:
    history_len: int = 20
    # True: the items of the history the model reads (the last history_len) are not ranked, the
    # target excepted. False (the papers' description): every item is ranked.
    exclude_history: bool = False
    ks: tuple[int, ...] = (5, 10, 20)
    select_metric: str = "ndcg@10"  # validation metric that picks the checkpoint
    ties: str = "expected"  # metrics are their expectation under random tie-breaking

    def __post_init__(self) -> None:
        if isinstance(self.history_len, bool) or not isinstance(self.history_len, int) or self.history_len < 1:
            raise ConfigError(f"protocol history_len: expected an integer >= 1, found {self.history_len!r}")
        check_positive({"ks": self.ks}, "protocol ")
        metric, at, k = self.select_metric.partition("@")
        if not (self.select_metric == "mrr" or (metric in ("recall", "ndcg") and at and k.isdigit() and int(k) > 0)):
            raise ConfigError(f"protocol select_metric: expected recall@K, ndcg@K or mrr, found {self.select_metric!r}")
        if self.ties not in TIES:
            raise ConfigError(f"protocol ties: expected one of {', '.join(TIES)}, found {self.ties!r}")

    @classmethod
    def from_options(cls, defaults: dict[str, Any], overrides: dict[str, Any], prefix: str = "--protocol ",
                     defaults_prefix: str = "protocol default ") -> "Protocol":
        """The protocol from a dataset's defaults and the user's overrides (text or typed), each checked and typed."""
        base = {f.name: f.default for f in fields(cls)}
        choices = {"ties": TIES}
        return cls(**{**parse_options(defaults, base, defaults_prefix, choices),
                      **parse_options(overrides, base, prefix, choices)})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ks"] = list(self.ks)
        out["split"] = "leave-one-out (last: test, second last: validation)"
        out["ranking"] = "full catalogue"
        return out


def left_pad(seqs: list[np.ndarray], length: int, pad: int) -> np.ndarray:
    """The last ``length`` items of each sequence, right-aligned, padded on the left with ``pad``."""
    out = np.full((len(seqs), length), pad, dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = seq[-length:]
        if len(tail):
            out[row, length - len(tail):] = tail
    return out


class Split:
    """Leave-one-out split of a dataset under a protocol."""

    def __init__(self, dataset: Dataset, protocol: Protocol):
        too_short = [u for u, s in enumerate(dataset.sequences) if len(s) < 3]
        if too_short:
            raise ConfigError(
                f"leave-one-out needs >= 3 items per user; {len(too_short)} users of {dataset.name} have fewer"
            )
        self.dataset = dataset
        self.protocol = protocol
        self.n_items = dataset.n_items
        self.pad = dataset.n_items
        self.train_seqs = [s[:-2] for s in dataset.sequences]
        self.valid_targets = np.array([s[-2] for s in dataset.sequences], dtype=np.int64)
        self.test_targets = np.array([s[-1] for s in dataset.sequences], dtype=np.int64)

    @property
    def n_users(self) -> int:
        return len(self.train_seqs)

    def eval_inputs(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        """(histories [users, history_len], targets [users]) for ``valid`` or ``test``."""
        if stage == "valid":
            return left_pad(self.train_seqs, self.protocol.history_len, self.pad), self.valid_targets
        if stage == "test":
            seqs = [s[:-1] for s in self.dataset.sequences]
            return left_pad(seqs, self.protocol.history_len, self.pad), self.test_targets
        raise ValueError(f"stage must be 'valid' or 'test', found {stage!r}")

    def train_examples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every prefix of every training sequence: (histories [M, L], targets [M], users [M])."""
        hist, targets, users = [], [], []
        for user, seq in enumerate(self.train_seqs):
            for t in range(1, len(seq)):
                hist.append(seq[:t])
                targets.append(seq[t])
                users.append(user)
        return (
            left_pad(hist, self.protocol.history_len, self.pad),
            np.array(targets, dtype=np.int64),
            np.array(users, dtype=np.int64),
        )

    def train_windows(self, length: int, min_items: int = 2) -> np.ndarray:
        """Training sequences cut into windows of ``length + 1`` items, left-padded with ``pad``.

        Read with a causal model (inputs ``w[:, :-1]``, targets ``w[:, 1:]``), the
        windows hold every prefix example of ``train_examples`` exactly once: the
        last window ends at the last training item, earlier ones step back by
        ``length`` items. ``min_items=1`` keeps one-item sequences too (a cloze
        task can mask their single item).
        """
        windows = []
        for seq in self.train_seqs:
            if len(seq) < min_items:
                continue
            end = len(seq)
            while True:
                windows.append(seq[max(0, end - length - 1):end])
                if end <= length + 1:
                    break
                end -= length
        return left_pad(windows, length + 1, self.pad)

    def item_counts(self) -> np.ndarray:
        """How often each item occurs in the training sequences."""
        return np.bincount(np.concatenate(self.train_seqs), minlength=self.n_items)
