"""FAMAE (ReSID, Liang et al. 2026): a field-aware masked auto-encoder whose field embeddings are the item vectors.

An item is a set of fields: its id plus the dataset's single-valued side
fields (Beauty: brand, cat1-3, price bucket; value 0 = missing has its own
row). A dataset with no single-valued fields uses its attribute bags instead
(a bag's embedding is the mean of its attributes' rows, row 0 if empty). Each
position's token is the sum of its item's field embeddings; the shared
bidirectional ``SequenceEncoder`` adds learned positions and reads the
history plus one target position. Only the target is masked: K ~ U{1..J}
of its J fields are replaced by per-field mask tokens, the others stay
visible. The loss sums, over the masked fields, alpha_f times the
cross-entropy of ``sqrt(d) * cos(W_f h, e)`` over field f's vocabulary
(``h`` the target position's output, ``W_f`` an optional per-field
projection); a bag's target is uniform over its attributes.

The item vector handed to the Q-stage is the concatenation of the item's
field embeddings (J x d_model; 6 x 128 = 768 on Beauty), not a contextual
state. Two proxy metrics of embedding quality pick the checkpoint and are
recorded (``proxy_metrics``): Recall@k of the target id with all its fields
masked, and with only its id masked.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from bench.core.method import FitContext
from bench.data.protocol import Split
from bench.eval.metrics import metrics_from_ranks, target_rank_counts
from bench.nn.blocks import SequenceEncoder
from bench.nn.train import TrainConfig, Trainer
from bench.sid.encoder import Encoder

ITEM = "item"  # the id field, always field 0


class FAMAEModel(nn.Module):
    """Field embeddings, per-field mask tokens, a bidirectional encoder and per-field cosine heads.

    ``fields``: name -> int64 [n_items] codes (0 = missing, a class of its own);
    ``bags``: name -> int64 [n_items, width] codes (0 = padding). Field 0 is
    the item id; row ``n_items`` of its table is the history padding.
    """

    def __init__(self, n_items: int, fields: dict[str, np.ndarray] | None = None,
                 bags: dict[str, np.ndarray] | None = None, vocab_sizes: dict[str, int] | None = None,
                 d_model: int = 128, n_layers: int = 2, n_heads: int = 4, d_ff: int = 512, history_len: int = 20,
                 dropout: float = 0.1, field_proj: bool = True, init_std: float = 0.02):
        super().__init__()
        fields, bags, vocab_sizes = fields or {}, bags or {}, vocab_sizes or {}
        self.n_items = n_items
        self.d_model = d_model
        self.field_names = [ITEM, *fields, *bags]
        self.is_bag = [False] * (1 + len(fields)) + [True] * len(bags)
        rows = [n_items + 1]
        for name, codes in {**fields, **bags}.items():
            rows.append(int(vocab_sizes.get(name, int(np.max(codes, initial=0)))) + 1)
        self.rows = rows  # rows per field table; the id field's last row is padding, never a class
        self.n_classes = [n_items] + rows[1:]
        single = np.zeros((n_items + 1, 1 + len(fields)), dtype=np.int64)
        single[:, 0] = np.arange(n_items + 1)
        for j, codes in enumerate(fields.values(), start=1):
            single[:n_items, j] = codes
        self.register_buffer("single_codes", torch.from_numpy(single), persistent=False)
        for name, codes in bags.items():
            padded = np.zeros((n_items + 1, codes.shape[1]), dtype=np.int64)
            padded[:n_items] = codes
            self.register_buffer(f"bag_{name}", torch.from_numpy(padded), persistent=False)
        self.tables = nn.ModuleList(nn.Embedding(r, d_model) for r in rows)
        for table in self.tables:
            nn.init.normal_(table.weight, std=init_std)
        self.mask_tokens = nn.Parameter(torch.randn(len(rows), d_model) * init_std)
        self.proj = nn.ModuleList(nn.Linear(d_model, d_model) for _ in rows) if field_proj else None
        self.encoder = SequenceEncoder(d_model, n_layers, n_heads, d_ff, history_len + 1, dropout,
                                       causal=False, init_std=init_std)

    @property
    def n_fields(self) -> int:
        return len(self.field_names)

    def bag_codes(self, j: int) -> torch.Tensor:
        return getattr(self, f"bag_{self.field_names[j]}")

    def field_embedding(self, j: int, items: torch.Tensor) -> torch.Tensor:
        """Field ``j``'s embedding [..., d] of ``items`` (indices up to ``n_items``, the padding row)."""
        table = self.tables[j]
        if not self.is_bag[j]:
            return table(self.single_codes[items, j])
        codes = self.bag_codes(j)[items]
        present = (codes > 0).float()
        mean = (table(codes) * present[..., None]).sum(-2) / present.sum(-1, keepdim=True).clamp(min=1)
        empty = present.sum(-1, keepdim=True) == 0
        return torch.where(empty, table.weight[0], mean)  # an empty bag is the "missing" row

    def field_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        """All fields' embeddings [..., J, d] of ``items``."""
        return torch.stack([self.field_embedding(j, items) for j in range(self.n_fields)], -2)

    def tokens(self, histories: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Input tokens [B, L+1, d]: the history's items, then the target with ``masked`` [B, J] fields replaced."""
        every_item = torch.arange(self.n_items + 1, device=histories.device)
        history = F.embedding(histories, self.field_embeddings(every_item).sum(-2))
        target = torch.where(masked[..., None], self.mask_tokens, self.field_embeddings(targets)).sum(1)
        return torch.cat([history, target[:, None]], 1)

    def forward(self, histories: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """The target position's output h [B, d] for left-padded ``histories`` [B, L] and ``targets`` [B]."""
        is_pad = torch.cat([histories == self.n_items, torch.zeros_like(targets[:, None], dtype=torch.bool)], 1)
        return self.encoder(self.tokens(histories, targets, masked), is_pad)[:, -1]

    def head(self, j: int, h: torch.Tensor) -> torch.Tensor:
        """``h`` as field ``j``'s query, unit length."""
        return F.normalize((self.proj[j](h) if self.proj is not None else h).float(), dim=-1)

    def field_scores(self, j: int, h: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """sqrt(d) * cos(W_j h, e) [B, C] over field ``j``'s vocabulary, or over ``classes`` [C] of it."""
        weight = self.tables[j].weight[: self.n_classes[j]] if classes is None else self.tables[j](classes)
        return math.sqrt(self.d_model) * self.head(j, h) @ F.normalize(weight.float(), dim=-1).T

    @torch.no_grad()
    def item_vectors(self) -> torch.Tensor:
        """Concatenated field embeddings [n_items, J * d] (field order: id, then ``field_names[1:]``)."""
        items = torch.arange(self.n_items, device=self.single_codes.device)
        return self.field_embeddings(items).flatten(1)


def draw_field_mask(n: int, n_fields: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Which target fields to mask [n, J]: K ~ U{1..J} per row, then K fields chosen uniformly at random."""
    k = torch.randint(1, n_fields + 1, (n, 1), device=device)
    order = torch.rand(n, n_fields, device=device).argsort(1).argsort(1)  # a random permutation's ranks
    return order < k


def famae_loss(model: FAMAEModel, histories: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor,
               alpha: list[float] | None = None, negatives: int = 0, negatives_above: int = 0) -> torch.Tensor:
    """Mean over examples of the sum over masked fields of alpha_f x cross-entropy of the field's value.

    Fields with more than ``negatives_above`` classes use a sampled softmax when
    ``negatives`` > 0: the target against ``negatives`` uniform classes shared by
    the batch (accidental hits removed).

    Every field is scored for every row and the unmasked rows are weighted 0, so
    the shapes depend on the batch size alone: no host sync and one compiled graph.
    Selecting the masked rows gave every batch new shapes, the likely reason a
    whole run under ``--compile reduce-overhead`` was slower than eager
    (reports/beauty/sid-tf32/compile-run.txt).
    """
    h = model(histories, targets, masked)
    total = h.new_zeros((), dtype=torch.float32)
    for j in range(model.n_fields):
        weight = masked[:, j].float() * (1.0 if alpha is None else alpha[j])
        if model.is_bag[j]:
            codes = model.bag_codes(j)[targets]
            dist = torch.zeros(len(targets), model.n_classes[j], device=h.device)
            dist.scatter_add_(1, codes, (codes > 0).float())
            dist[:, 0] = dist[:, 0] + (dist.sum(1) == 0).float()  # an empty bag's class is "missing"
            dist = dist / dist.sum(1, keepdim=True)
            logp = F.log_softmax(model.field_scores(j, h), -1)
            total = total + (weight * -(dist * logp).sum(1)).sum()
            continue
        labels = model.single_codes[targets, j]
        if negatives > 0 and model.n_classes[j] > negatives_above:
            sampled = torch.randint(0, model.n_classes[j], (negatives,), device=h.device)
            positive = (model.head(j, h) * F.normalize(model.tables[j](labels).float(), dim=-1)).sum(-1)
            negative = model.field_scores(j, h, sampled).masked_fill(sampled[None] == labels[:, None], -math.inf)
            logits = torch.cat([math.sqrt(model.d_model) * positive[:, None], negative], 1)
            labels = torch.zeros_like(labels)
        else:
            logits = model.field_scores(j, h)
        total = total + (weight * F.cross_entropy(logits.float(), labels, reduction="none")).sum()
    return total / len(targets)


@torch.no_grad()
def proxy_metrics(model: FAMAEModel, histories: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray,
                  k: int = 10, batch_size: int = 1024) -> dict[str, float]:
    """ReSID's two proxy metrics: Recall@k of the target's id among all items, by the id field's scores.

    ``proxy_item_recall@k``: every field of the target masked (predict the item
    from its context alone). ``proxy_id_recall@k``: only the id masked, the
    target's side fields visible. Ties count as their expectation under random
    tie-breaking, like the main evaluator. Run in eval mode (no dropout).
    """
    was_training = model.training
    model.eval()
    device = model.single_codes.device
    histories, targets = torch.as_tensor(histories), torch.as_tensor(targets)
    sums = {"proxy_item_recall": 0.0, "proxy_id_recall": 0.0}
    for start in range(0, len(targets), batch_size):
        hist = histories[start:start + batch_size].to(device)
        target = targets[start:start + batch_size].to(device)
        every = torch.ones(len(target), model.n_fields, dtype=torch.bool, device=device)
        id_only = torch.zeros_like(every)
        id_only[:, 0] = True
        for name, masked in (("proxy_item_recall", every), ("proxy_id_recall", id_only)):
            scores = model.field_scores(0, model(hist, target, masked))
            sums[name] += float(metrics_from_ranks(*target_rank_counts(scores, target), (k,))[f"recall@{k}"].sum())
    model.train(was_training)
    return {f"{name}@{k}": value / max(1, len(targets)) for name, value in sums.items()}


def holdout_split(split: Split) -> Split:
    """A split of the training sequences alone: each user's last training item is the validation (and test) target.

    Users with a single training item have no (history, target) pair and are
    left out. Nothing in the result reaches the original validation or test items.
    """
    keep = [s for s in split.train_seqs if len(s) >= 2]
    inner = Split.__new__(Split)
    inner.__dict__.update(split.__dict__)
    inner.dataset = dataclasses.replace(split.dataset, sequences=keep, user_ids=[str(u) for u in range(len(keep))])
    inner.train_seqs = [s[:-1] for s in keep]
    inner.valid_targets = np.array([s[-1] for s in keep], dtype=np.int64)
    inner.test_targets = inner.valid_targets  # eval_inputs("test") reads s[:-1] of ``keep``: the same examples
    return inner


def cpu_context(seed: int = 0) -> FitContext:
    """A quiet CPU context for fitting without a run (tests, notebooks)."""
    return FitContext(device=torch.device("cpu"), seed=seed, valid=None)


def _parse_weights(text: str, names: list[str]) -> list[float]:
    """``"item=1,brand=0.5"`` -> one weight per field (1 where not given)."""
    weights = dict.fromkeys(names, 1.0)
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = pair.partition("=")
        if not eq or key.strip() not in weights:
            raise ConfigError(f"famae: alpha expects name=weight pairs with names in {names}, found {pair!r}")
        weights[key.strip()] = float(value)
    return [weights[n] for n in names]


class FAMAE(Encoder):
    """ReSID's field-aware masked auto-encoder; item vector = concatenated field embeddings [n_items, J * d_model]."""

    reads_sequences = True
    smoke_params = {"d_model": 32, "d_ff": 64, "n_heads": 2, "epochs": 2}  # the smoke budget (tests)

    def __init__(self, d_model: int = 128, n_layers: int = 2, n_heads: int = 4, d_ff: int = 512,
                 dropout: float = 0.1, fields: str = "", alpha: str = "", field_proj: bool = True,
                 negatives: int = 0, negatives_above: int = 20000, epochs: int = 200, batch_size: int = 2048,
                 lr: float = 1e-3, weight_decay: float = 1e-5, warmup_steps: int = 0, patience: int = 10,
                 eval_every: int = 1, select_on: str = "valid", init_std: float = 0.02):
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.d_ff = d_ff
        self.dropout = dropout
        self.fields = fields  # "": all single-valued fields, or the bags if there are none; else "brand,cat1,..."
        self.alpha = alpha  # per-field loss weights "item=1,brand=0.5"; unnamed fields weigh 1
        self.field_proj = field_proj  # a per-field linear map of h before the cosine
        self.negatives = negatives  # > 0: sampled softmax with this many negatives ...
        self.negatives_above = negatives_above  # ... for fields with more classes than this
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.patience = patience
        self.eval_every = eval_every
        self.select_on = select_on  # "valid": the split's validation targets; "holdout": last training items
        self.init_std = init_std

    def side_fields(self, dataset: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The (single-valued fields, bags) FAMAE reads from ``dataset``."""
        if not self.fields:
            return (dict(dataset.fields), {}) if dataset.fields else ({}, dict(dataset.bags))
        fields, bags = {}, {}
        for name in (n.strip() for n in self.fields.split(",") if n.strip()):
            if name in dataset.fields:
                fields[name] = dataset.fields[name]
            elif name in dataset.bags:
                bags[name] = dataset.bags[name]
            else:
                raise ConfigError(f"famae: dataset {dataset.name} has no field {name!r}; "
                                  f"its fields: {dataset.field_names()}")
        return fields, bags

    def build(self, split: Split) -> FAMAEModel:
        fields, bags = self.side_fields(split.dataset)
        vocab_sizes = {k: len(v) - 1 for k, v in split.dataset.vocabs.items()}
        return FAMAEModel(split.n_items, fields, bags, vocab_sizes, self.d_model, self.n_layers, self.n_heads,
                          self.d_ff, split.protocol.history_len, self.dropout, self.field_proj, self.init_std)

    def fit(self, split: Split, ctx: FitContext | None = None) -> FAMAE:
        if self.select_on not in ("valid", "holdout"):
            raise ConfigError(f"famae: select_on must be 'valid' or 'holdout', found {self.select_on!r}")
        ctx = ctx or cpu_context()
        start = time.perf_counter()
        torch.manual_seed(ctx.seed)
        model = self.build(split).to(ctx.device)
        alpha = _parse_weights(self.alpha, model.field_names)
        data = split if self.select_on == "valid" else holdout_split(split)
        histories, targets, _ = data.train_examples()
        valid_hist, valid_targets = (torch.from_numpy(a) for a in data.eval_inputs("valid"))

        def loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            hist, target = batch
            masked = draw_field_mask(len(target), model.n_fields, target.device)
            return famae_loss(model, hist, target, masked, alpha, self.negatives, self.negatives_above)

        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                          schedule="cosine", warmup_steps=self.warmup_steps, patience=self.patience,
                          eval_every=self.eval_every)
        Trainer(cfg, ctx, "famae").fit(model, (torch.from_numpy(histories), torch.from_numpy(targets)), loss,
                                       validate=lambda: proxy_metrics(model, valid_hist, valid_targets),
                                       select="proxy_item_recall@10")
        proxy = {"valid" if self.select_on == "valid" else "holdout": proxy_metrics(model, valid_hist, valid_targets)}
        if self.select_on == "valid":  # one more pass over the users: cheap, and reported only
            proxy["test"] = proxy_metrics(model, *split.eval_inputs("test"))
        self.model_ = model
        self.item_vectors_ = model.item_vectors().float().cpu().numpy()
        trained = ctx.extra.get("famae", {})
        self.fit_info_ = {
            "proxy": proxy, "epochs": trained.get("epochs_run"), "best_epoch": trained.get("best_epoch"),
            "seconds": round(time.perf_counter() - start, 3), "fields": model.field_names,
            "seconds_per_epoch": trained.get("seconds_per_epoch"), "train_examples": len(targets),
        }
        return self
