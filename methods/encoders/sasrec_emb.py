"""``sasrec-emb`` and ``bert4rec-emb``: item vectors = the item-embedding table of an ID model trained on the
training sequences.

``sasrec-emb`` (a full-softmax SASRec) is the E-stage of ReSID's "SASRec embedding + GAOQ" ablation and of
ETEGRec (d_model 256); ``bert4rec-emb`` (a cloze-trained BERT4Rec) is ReSID's E3 ablation. The models and
their training are the ID methods' (``methods.id``) unchanged; only the data differs: so that the vectors
never depend on the validation or test targets, the checkpoint is picked on a hold-out of the training
sequences (each user's last training item; ``holdout=False`` trains on every training item for ``epochs``
epochs with no early stopping instead).
"""

from __future__ import annotations

import time

import torch

from bench.core.method import FitContext
from bench.data.protocol import Split
from bench.eval.evaluator import Evaluator
from bench.sid.encoder import Encoder
from methods.encoders.famae import cpu_context, holdout_split
from methods.id.bert4rec import BERT4Rec, BERT4RecConfig
from methods.id.sasrec import SASRec, SASRecConfig


class SASRecEmb(Encoder):
    """The item-embedding table [n_items, d_model] of a SASRec (cross-entropy over all items)."""

    reads_sequences = True
    smoke_params = {"d_model": 16, "d_ff": 32, "epochs": 2}  # the smoke budget (tests)

    def __init__(self, d_model: int = 64, n_layers: int = 2, n_heads: int = 2, d_ff: int = 256,
                 dropout: float = 0.5, attn_dropout: float = 0.5, epochs: int = 200, batch_size: int = 256,
                 lr: float = 1e-3, weight_decay: float = 0.0, patience: int = 10, init_std: float = 0.02,
                 holdout: bool = True):
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.d_ff = d_ff
        self.dropout = dropout
        self.attn_dropout = attn_dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.init_std = init_std
        self.holdout = holdout  # pick the epoch on each user's last training item (else: train all epochs)

    def config(self) -> SASRecConfig:
        return SASRecConfig(d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads, d_ff=self.d_ff,
                            dropout=self.dropout, attn_dropout=self.attn_dropout, epochs=self.epochs,
                            batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                            patience=self.patience, init_std=self.init_std, loss="ce")

    stage = "sasrec-emb"  # the record's key for the inner model's training facts

    def model(self) -> SASRec:
        """The ID model whose item table becomes the vectors, untrained."""
        return SASRec(self.config())

    def fit(self, split: Split, ctx: FitContext | None = None) -> SASRecEmb:
        ctx = ctx or cpu_context()
        start = time.perf_counter()
        model = self.model()
        torch.manual_seed(ctx.seed)
        if self.holdout:
            inner = holdout_split(split)
            inner_ctx = FitContext(ctx.device, ctx.seed, Evaluator(inner, "valid", ctx.device), quiet=ctx.quiet,
                                   compile=ctx.compile)
            model.fit(inner, inner_ctx)
            ctx.curve.extend({**point, "stage": self.stage} for point in inner_ctx.curve)
            trained = inner_ctx.extra.get("train", {})
        else:
            model.fit(split, ctx, validate=False, stage=self.stage)
            trained = ctx.extra.get(self.stage, {})
        ctx.extra[self.stage] = trained
        self.model_ = model.model_
        with torch.no_grad():
            table = model.model_.items.table()[: split.n_items]
        self.item_vectors_ = table.detach().float().cpu().numpy()
        self.fit_info_ = {"epochs": trained.get("epochs_run"), "best_epoch": trained.get("best_epoch"),
                          "best_valid_ndcg@10": trained.get("best_valid_ndcg@10"), "holdout": self.holdout,
                          "seconds": round(time.perf_counter() - start, 3)}
        return self


class BERT4RecEmb(SASRecEmb):
    """The item-embedding table [n_items, d_model] of a BERT4Rec (cloze training; ReSID's E3 ablation)."""

    stage = "bert4rec-emb"

    def __init__(self, d_model: int = 64, n_layers: int = 2, n_heads: int = 2, d_ff: int = 256,
                 dropout: float = 0.5, attn_dropout: float = 0.2, epochs: int = 400, batch_size: int = 256,
                 lr: float = 1e-3, weight_decay: float = 0.0, patience: int = 20, init_std: float = 0.0,
                 holdout: bool = True, mask_prob: float = 0.6, last_mask_prob: float = 0.1):
        super().__init__(d_model, n_layers, n_heads, d_ff, dropout, attn_dropout, epochs, batch_size, lr,
                         weight_decay, patience, init_std, holdout)
        self.mask_prob = mask_prob
        self.last_mask_prob = last_mask_prob

    def model(self) -> BERT4Rec:
        base = self.config()
        fields = {f: getattr(base, f) for f in ("d_model", "n_layers", "n_heads", "d_ff", "dropout", "attn_dropout",
                                                "epochs", "batch_size", "lr", "weight_decay", "patience", "init_std")}
        return BERT4Rec(BERT4RecConfig(**fields, mask_prob=self.mask_prob, last_mask_prob=self.last_mask_prob))
