"""SASRec (Kang & McAuley 2018): causal self-attention over the item sequence.

Two losses, chosen by ``loss`` and recorded with the result: ``ce`` (softmax
over all items, the strong variant) and ``bce`` (one sampled negative per
target, the paper). ``sasrec-star`` (SASRec* in ReSID's tables) adds the
embeddings of the item's structured fields to its ID embedding, at the input
and at the output. Training reads windows of the training sequences with a
next-item loss at every position: each prefix example once, in one causal pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from bench.core.method import FitContext, Method
from bench.core.registry import register
from bench.data.protocol import Split
from bench.nn.blocks import IGNORE, ItemEmbedding, SequenceEncoder, counted, masked_mean, scaled
from bench.nn.train import TrainConfig, Trainer


@dataclass
class SequenceModelConfig(TrainConfig):
    """The encoder options every model built on ``SASRecModel`` shares (SASRec, BERT4Rec, S3-Rec)."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.5
    attn_dropout: float = 0.5
    item_fields: bool = False  # SASRec*: add structured-field embeddings to the ID embedding
    init_std: float = 0.02  # std of item/position embedding init (0: items d^-0.5, positions N(0, 1))


@dataclass
class SASRecConfig(SequenceModelConfig):
    loss: str = "ce"  # "ce": softmax over all items; "bce": one sampled negative (the paper)


SMOKE = {"d_model": 32, "n_layers": 1, "d_ff": 64, "epochs": 10, "batch_size": 64, "lr": 3e-3,
         "patience": 3, "dropout": 0.2, "attn_dropout": 0.2}


# "default" on datasets under 5,000 users (synthetic, office): more, smaller steps per epoch
SMALL = {"batch_size": 64, "lr": 3e-3, "patience": 5}


class SASRecModel(nn.Module):
    def __init__(self, split: Split, cfg: SequenceModelConfig, causal: bool = True, extra_len: int = 0,
                 n_special: int = 1):
        super().__init__()
        ds = split.dataset
        fields = dict(ds.fields) if cfg.item_fields else None
        bags = dict(ds.bags) if cfg.item_fields else None
        if cfg.item_fields and not (fields or bags):
            raise ConfigError(f"item_fields=True needs item fields, but dataset {ds.name} has none")
        self.n_items = split.n_items
        self.items = ItemEmbedding(
            split.n_items, cfg.d_model, n_special=n_special, fields=fields, bags=bags,
            vocab_sizes={k: len(v) - 1 for k, v in ds.vocabs.items()}, init_std=cfg.init_std,
        )
        self.encoder = SequenceEncoder(
            cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, split.protocol.history_len + extra_len,
            cfg.dropout, cfg.attn_dropout, causal=causal, init_std=cfg.init_std,
        )

    def hidden(self, histories: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, d] of left-padded histories [B, L]."""
        table = self.items.table() if table is None else table
        return self.encoder(scaled(F.embedding(histories, table)), histories == self.n_items)

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        table = self.items.table()
        return self.hidden(histories, table)[:, -1] @ table[: self.n_items].T


class SASRec(Method):
    """SASRec with full-softmax cross-entropy over all items (the strong, common variant)."""

    Config = SASRecConfig
    budgets = {"default": {}, "small": SMALL, "smoke": SMOKE}

    def build(self, split: Split) -> SASRecModel:
        return SASRecModel(split, self.config)

    def check_config(self) -> None:
        if self.config.loss not in ("ce", "bce"):
            raise ConfigError(f"loss must be 'ce' or 'bce', found {self.config.loss!r}")

    def fit(self, split: Split, ctx: FitContext, validate: bool = True, stage: str = "train") -> "SASRec":
        """Train on ``split``'s training windows; ``validate=False`` runs every epoch with no early stopping."""
        self.check_config()
        self.model_ = self.build(split).to(ctx.device)
        self.finetune(split, ctx, validate, stage)
        return self

    def finetune(self, split: Split, ctx: FitContext, validate: bool = True, stage: str = "train") -> None:
        windows = split.train_windows(split.protocol.history_len)
        Trainer(self.config, ctx, stage).fit(
            self.model_, (torch.from_numpy(windows),), self.loss,
            validate=(lambda: ctx.valid.evaluate(self).means) if validate else None,
        )

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Next-item loss at every position of a batch of windows (each position is one prefix example); the
        padded positions take no part (``counted``: left out when eager, masked out when compiled)."""
        (windows,) = batch
        model = self.model_
        inputs, targets = windows[:, :-1], windows[:, 1:]
        table = model.items.table()
        real = inputs != model.n_items  # a position with an item has a next item to predict
        hidden, targets, real = counted(real, model.hidden(inputs, table), targets)
        if self.config.loss == "ce":
            return F.cross_entropy(hidden @ table[: model.n_items].T, targets.masked_fill(~real, IGNORE))
        negatives = torch.randint(0, model.n_items - 1, targets.shape, device=targets.device)
        negatives = negatives + (negatives >= targets).long()  # uniform over items other than the target
        pos = (hidden * F.embedding(targets, table)).sum(-1)  # F.embedding: a deterministic backward on CPU
        neg = (hidden * F.embedding(negatives, table)).sum(-1)
        return masked_mean(F.softplus(-pos) + F.softplus(neg), real)

    @torch.no_grad()
    def score(self, histories: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return self.model_.score(histories)


@dataclass
class SASRecBCEConfig(SASRecConfig):
    loss: str = "bce"
    lr: float = 3e-3  # one negative per target learns slowly: a larger step and more patience (Beauty sweep)
    patience: int = 25


class SASRecBCE(SASRec):
    """SASRec as in the paper: binary cross-entropy with one sampled negative per target."""

    Config = SASRecBCEConfig


@dataclass
class SASRecStarConfig(SASRecConfig):
    item_fields: bool = True


class SASRecStar(SASRec):
    """SASRec*: item vector = ID embedding + embeddings of brand, category levels, price, attributes."""

    Config = SASRecStarConfig


register("method", "sasrec")(SASRec)


register("method", "sasrec-bce")(SASRecBCE)


register("method", "sasrec-star")(SASRecStar)
