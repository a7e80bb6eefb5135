"""BERT4Rec (Sun et al. 2019): a bidirectional encoder trained with a cloze task.

Training windows are the last ``history_len + 1`` items of each user's
training sequence, plus older windows sliding back with a stride of
``history_len`` so long sequences are used in full. Every step masks each
real item of a window with probability ``mask_prob`` (at least one per
window), or, with probability ``last_mask_prob``, only the last item (the
test-time task); the loss is full-softmax cross-entropy at the masked
positions. At evaluation a [MASK] is appended to the history and all items are
scored at that position. The encoder is SASRec's, made bidirectional, with
one more position and a [MASK] row (index ``n_items + 1``) in the item table;
the output head is the paper's: GELU projection, then the tied item
embeddings plus a per-item bias.
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
from bench.nn.blocks import IGNORE, counted
from bench.nn.train import Trainer
from methods.id.sasrec import SASRecModel, SequenceModelConfig


@dataclass
class BERT4RecConfig(SequenceModelConfig):
    epochs: int = 400  # the cloze task needs long training
    patience: int = 20
    attn_dropout: float = 0.2
    init_std: float = 0.0  # items d^-0.5, positions N(0, 1): the setting BERT4Rec was measured with
    mask_prob: float = 0.6  # official setting for Beauty
    last_mask_prob: float = 0.1  # share of windows where only the last item is masked (the test-time task)


SMOKE = {"d_model": 64, "n_layers": 1, "d_ff": 128, "dropout": 0.1, "attn_dropout": 0.1, "epochs": 40,
         "patience": 5, "batch_size": 512, "lr": 1e-2, "mask_prob": 0.3, "last_mask_prob": 0.2}


def cloze_mask(windows: torch.Tensor, pad: int, mask_token: int, mask_prob: float,
               last_mask_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a batch of windows [B, L] on its device: (inputs with [MASK] tokens, labels with IGNORE elsewhere).

    Each real item is masked with probability ``mask_prob``, at least one per
    window; with probability ``last_mask_prob`` a window has only its last item
    masked instead.
    """
    real = windows != pad
    noise = torch.rand(windows.shape, device=windows.device)
    masked = (noise < mask_prob) & real
    # windows where nothing was drawn: mask one real position chosen uniformly at random
    pick = F.one_hot(noise.masked_fill(~real, -1.0).argmax(1), windows.shape[1]).bool() & real
    masked |= pick & ~masked.any(1, keepdim=True)
    last_only = torch.rand(len(windows), 1, device=windows.device) < last_mask_prob
    last = torch.zeros_like(masked)
    last[:, -1] = True
    masked = torch.where(last_only, last & real, masked)
    inputs = windows.masked_fill(masked, mask_token)
    labels = windows.masked_fill(~masked, IGNORE)
    return inputs, labels


class BERT4RecModel(SASRecModel):
    """SASRec's encoder made bidirectional, with a [MASK] token and the paper's output head."""

    def __init__(self, split: Split, cfg: BERT4RecConfig):
        super().__init__(split, cfg, causal=False, extra_len=1, n_special=2)
        self.pad = split.pad
        self.mask_token = split.n_items + 1
        self.head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(), nn.LayerNorm(cfg.d_model))
        self.bias = nn.Parameter(torch.zeros(split.n_items))

    def logits(self, hidden: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Scores over all items [..., n_items] of hidden states [..., d]."""
        return self.head(hidden) @ table[: self.n_items].T + self.bias

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] of the item after left-padded histories [B, history_len]: predict an appended [MASK]."""
        table = self.items.table()
        mask = torch.full_like(histories[:, :1], self.mask_token)
        return self.logits(self.hidden(torch.cat([histories, mask], 1), table)[:, -1], table)


class BERT4Rec(Method):
    """BERT4Rec: bidirectional Transformer, cloze training, predicts an appended [MASK]."""

    Config = BERT4RecConfig
    budgets = {"default": {}, "smoke": SMOKE}

    def fit(self, split: Split, ctx: FitContext, validate: bool = True, stage: str = "train") -> "BERT4Rec":
        """Train on ``split``'s training windows; ``validate=False`` runs every epoch with no early stopping."""
        cfg = self.config
        if not 0 < cfg.mask_prob <= 1:
            raise ConfigError(f"mask_prob must be in (0, 1], found {cfg.mask_prob}")
        if not 0 <= cfg.last_mask_prob <= 1:
            raise ConfigError(f"last_mask_prob must be in [0, 1], found {cfg.last_mask_prob}")
        self.model_ = BERT4RecModel(split, cfg).to(ctx.device)
        windows = split.train_windows(split.protocol.history_len, min_items=1)
        ctx.extra["windows"] = len(windows)
        Trainer(cfg, ctx, stage).fit(
            self.model_, (torch.from_numpy(windows),), self.loss,
            validate=(lambda: ctx.valid.evaluate(self).means) if validate else None,
        )
        return self

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Cloze loss of a batch of windows, masked afresh: cross-entropy over all items at the masked positions
        (``counted``: the others left out when eager, ``IGNORE``-labelled when compiled)."""
        (windows,) = batch
        model, cfg = self.model_, self.config
        inputs, labels = cloze_mask(windows, model.pad, model.mask_token, cfg.mask_prob, cfg.last_mask_prob)
        table = model.items.table()
        hidden, labels, _ = counted(labels != IGNORE, model.hidden(inputs, table), labels)
        return F.cross_entropy(model.logits(hidden, table), labels)

    @torch.no_grad()
    def score(self, histories: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return self.model_.score(histories)


register("method", "bert4rec")(BERT4Rec)
