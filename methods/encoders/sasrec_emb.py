"""``sasrec-emb``: item vectors = the item-embedding table of a full-softmax SASRec trained on the training sequences.

The E-stage of ReSID's "SASRec embedding + GAOQ" ablation and of ETEGRec-style
pipelines (ETEGRec uses d_model 256). The model and its training are
``methods.sasrec.SASRec`` unchanged; only the data differs: so that the
vectors never depend on the validation or test targets, the checkpoint is
picked on a hold-out of the training sequences (each user's last training
item; ``holdout=False`` trains on every training item for ``epochs`` epochs
with no early stopping instead).
"""

from __future__ import annotations

import time

import torch

from bench.core.method import FitContext
from bench.data.protocol import Split
from bench.eval.evaluator import Evaluator
from bench.sid.encoder import Encoder
from methods.encoders.famae import cpu_context, holdout_split
from methods.id.sasrec import SASRec, SASRecConfig

STAGE = "sasrec-emb"


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

    def fit(self, split: Split, ctx: FitContext | None = None) -> SASRecEmb:
        ctx = ctx or cpu_context()
        start = time.perf_counter()
        sasrec = SASRec(self.config())
        torch.manual_seed(ctx.seed)
        if self.holdout:
            inner = holdout_split(split)
            inner_ctx = FitContext(ctx.device, ctx.seed, Evaluator(inner, "valid", ctx.device), quiet=ctx.quiet,
                                   compile=ctx.compile)
            sasrec.fit(inner, inner_ctx)
            ctx.curve.extend({**point, "stage": STAGE} for point in inner_ctx.curve)
            trained = inner_ctx.extra.get("train", {})
        else:
            sasrec.fit(split, ctx, validate=False, stage=STAGE)
            trained = ctx.extra.get(STAGE, {})
        ctx.extra[STAGE] = trained
        self.model_ = sasrec.model_
        with torch.no_grad():
            table = sasrec.model_.items.table()[: split.n_items]
        self.item_vectors_ = table.detach().float().cpu().numpy()
        self.fit_info_ = {"epochs": trained.get("epochs_run"), "best_epoch": trained.get("best_epoch"),
                          "best_valid_ndcg@10": trained.get("best_valid_ndcg@10"), "holdout": self.holdout,
                          "seconds": round(time.perf_counter() - start, 3)}
        return self
