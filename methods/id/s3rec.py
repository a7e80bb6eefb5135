"""S3-Rec (Zhou et al., CIKM 2020): self-supervised pre-training of SASRec with items and attributes.

Pre-training maximises four kinds of mutual information on every prefix of each
user's training sequence (as S3-Rec's released code builds its pre-training data;
each prefix cut to its last ``history_len`` items), encoded bidirectionally with
the same encoder SASRec fine-tunes (``pretrain_on="last"``: one window per user,
the last ``history_len`` training items, as this suite did before, about 7 times
fewer sequences on Beauty):

- AAP: an item's (contextual) representation predicts the item's attributes;
- MIP: a masked position predicts its item against one sampled negative item;
- MAP: a masked position predicts its item's attributes;
- SP:  a sequence with a contiguous segment masked out predicts that segment
  against a same-length segment from elsewhere in the training data.

Fine-tuning is exactly SASRec-BCE (causal, one sampled negative), starting from
the pre-trained weights; with ``pretrain_epochs=0`` the method *is* SASRec-BCE.
Item attributes are the dataset's attribute bag (Beauty, Sports, Toys, Yelp)
plus its single-valued fields (brand, category levels, price bucket), all in
one attribute vocabulary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from bench.core.method import FitContext
from bench.core.options import parse_value
from bench.core.registry import register
from bench.data.dataset import Dataset
from bench.data.protocol import Split, left_pad
from bench.nn.blocks import masked_mean, scaled
from bench.nn.train import TrainConfig, Trainer
from methods.id.sasrec import SMOKE, SASRecBCE, SASRecBCEConfig, SASRecModel

log = logging.getLogger(__name__)


LOSS_NAMES = ("aap", "mip", "map", "sp")


@dataclass
class S3RecConfig(SASRecBCEConfig):
    pretrain_epochs: int = 100
    pretrain_lr: float = 1e-3
    pretrain_batch_size: int = 256
    pretrain_on: str = "prefixes"  # "prefixes": every training prefix (the released code); "last": one window per user
    mask_ratio: float = 0.2  # share of items replaced by the mask token for MIP / MAP
    aap_weight: float = 0.2
    mip_weight: float = 1.0
    map_weight: float = 1.0
    sp_weight: float = 0.5


def item_attributes(ds: Dataset) -> np.ndarray:
    """Multi-hot [n_items, n_attributes] (bool): attribute bags and single-valued fields in one vocabulary."""
    columns: list[np.ndarray] = []
    offset = 0
    for name in sorted(ds.bags):
        codes = ds.bags[name]  # [n_items, width], 0 = padding
        columns.append(np.where(codes > 0, codes - 1 + offset, -1))
        offset += len(ds.vocabs[name]) - 1
    for name in sorted(ds.fields):
        codes = ds.fields[name][:, None]  # [n_items, 1], 0 = missing
        columns.append(np.where(codes > 0, codes - 1 + offset, -1))
        offset += len(ds.vocabs[name]) - 1
    multi_hot = np.zeros((ds.n_items, offset), dtype=bool)
    if columns:
        ids = np.concatenate(columns, axis=1)
        rows = np.broadcast_to(np.arange(ds.n_items)[:, None], ids.shape)
        present = ids >= 0
        multi_hot[rows[present], ids[present]] = True
    return multi_hot


class S3RecPretrainer(nn.Module):
    """A SASRec model plus S3-Rec's pre-training heads: mask token, attribute table, four projections."""

    def __init__(self, split: Split, cfg: S3RecConfig, model: SASRecModel):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.model = model
        self.n_items = split.n_items
        self.pad = split.pad
        self.mask_id = split.n_items + 1  # one row past the model's own table (items + pad)
        attributes = item_attributes(split.dataset)
        if attributes.shape[1] == 0:
            raise ConfigError(f"S3-Rec needs item attributes or fields, but dataset {split.dataset.name} has none")
        self.mask_token = nn.Parameter(torch.randn(d) * d ** -0.5)
        self.attributes = nn.Embedding(attributes.shape[1], d)  # S3-Rec's attribute embeddings
        nn.init.normal_(self.attributes.weight, std=d ** -0.5)
        self.aap = nn.Linear(d, d)
        self.mip = nn.Linear(d, d)
        self.map = nn.Linear(d, d)
        self.sp = nn.Linear(d, d)
        attributes = np.concatenate([attributes, np.zeros_like(attributes[:1])])  # the pad row has none
        self.register_buffer("item_attributes", torch.from_numpy(attributes), persistent=False)
        corpus = np.concatenate(split.train_seqs).astype(np.int64)  # negative segments are drawn from here
        self.register_buffer("corpus", torch.from_numpy(corpus), persistent=False)
        self.parts: list[torch.Tensor] = []  # detached [4] loss parts per step, for the record

    def windows(self, split: Split) -> torch.Tensor:
        """The pre-training sequences, left-padded [N, L]: every prefix of every training sequence (its last
        ``history_len`` items), or with ``pretrain_on="last"`` each user's last ``history_len`` training items."""
        length = split.protocol.history_len
        if self.cfg.pretrain_on == "last":
            return torch.from_numpy(left_pad(split.train_seqs, length, self.pad))
        prefixes = [seq[max(0, end - length):end] for seq in split.train_seqs for end in range(1, len(seq) + 1)]
        return torch.from_numpy(left_pad(prefixes, length, self.pad))

    def attribute_loss(self, head: nn.Linear, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Multi-label BCE of ``items``' attributes [B, L] from ``hidden`` [B, L, d], summed over attributes."""
        logits = head(hidden) @ self.attributes.weight.T
        targets = self.item_attributes[items].to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)

    def item_loss(self, hidden: torch.Tensor, items: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """BCE of each item [B, L] against one uniformly sampled other item, scored by (W_mip h) . e."""
        negatives = torch.randint(0, self.n_items - 1, items.shape, device=items.device)
        negatives = negatives + (negatives >= items).long()
        query = self.mip(hidden)
        pos_logit = (query * F.embedding(items, table)).sum(-1)  # F.embedding: a deterministic backward on CPU
        neg_logit = (query * F.embedding(negatives, table)).sum(-1)
        return F.softplus(-pos_logit) + F.softplus(neg_logit)

    def pretrain_losses(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four S3-Rec losses (unweighted means) on a batch of left-padded windows [B, L]."""
        cfg, pad, mask_id = self.cfg, self.pad, self.mask_id
        b, length = windows.shape
        device = windows.device
        is_item = windows != pad
        n = is_item.sum(1)  # every training sequence has at least one item

        # MIP / MAP input: mask items at random, and always the last one (as S3-Rec's code does)
        masked = (torch.rand(b, length, device=device) < cfg.mask_ratio) & is_item
        masked[:, -1] = True
        masked_seq = torch.where(masked, mask_id, windows)

        # SP inputs: a segment of length in [1, n // 2] at a random place in each sequence
        positions = torch.arange(length, device=device)
        seg_len = (torch.rand(b, device=device) * (n // 2)).long() + 1
        start = length - n + (torch.rand(b, device=device) * (n - seg_len + 1)).long()
        in_seg = (positions >= start[:, None]) & (positions < (start + seg_len)[:, None])
        context_seq = torch.where(in_seg, mask_id, windows)
        pos_seq = torch.where(in_seg | ~is_item, windows, mask_id)
        neg_start = (torch.rand(b, device=device) * (len(self.corpus) - seg_len + 1)).long()
        neg_index = (neg_start[:, None] + positions - start[:, None]).clamp(0, len(self.corpus) - 1)
        neg_seq = torch.where(in_seg, self.corpus[neg_index], pos_seq)

        # one bidirectional pass over all four inputs
        model = self.model
        table = torch.cat([model.items.table(), self.mask_token[None]])
        seqs = torch.cat([masked_seq, context_seq, pos_seq, neg_seq])
        hidden = model.encoder(scaled(F.embedding(seqs, table)), seqs == pad)
        h_masked, h_context, h_pos, h_neg = hidden.split(b)

        observed = is_item & ~masked
        aap = masked_mean(self.attribute_loss(self.aap, h_masked, windows), observed)
        mip = masked_mean(self.item_loss(h_masked, windows, table), masked)
        map_ = masked_mean(self.attribute_loss(self.map, h_masked, windows), masked)

        context = self.sp(h_context[:, -1])
        pos_logit = (context * h_pos[:, -1]).sum(-1)
        neg_logit = (context * h_neg[:, -1]).sum(-1)
        sp = masked_mean(F.softplus(-pos_logit) + F.softplus(neg_logit), n >= 2)
        return {"aap": aap, "mip": mip, "map": map_, "sp": sp}

    def pretrain_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The weighted sum of the four losses, for the Trainer; keeps the parts for the record."""
        parts = self.pretrain_losses(batch[0])
        cfg = self.cfg
        loss = (cfg.aap_weight * parts["aap"] + cfg.mip_weight * parts["mip"]
                + cfg.map_weight * parts["map"] + cfg.sp_weight * parts["sp"])
        return self._kept(parts, loss)

    @torch.compiler.disable
    def _kept(self, parts: dict[str, torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
        """``loss``, after keeping the step's parts for the record: outside the compiled step, as a new tensor,
        since under ``--compile reduce-overhead`` the step's outputs are overwritten by the next replay."""
        self.parts.append(torch.stack([parts[k].detach().float() for k in LOSS_NAMES]))
        return loss


class S3Rec(SASRecBCE):
    """S3-Rec: AAP / MIP / MAP / SP pre-training of SASRec's encoder, then SASRec-BCE fine-tuning."""

    Config = S3RecConfig
    # smoke (tests): one window per user, 7 times fewer pre-training sequences; the prefixes have their own test
    budgets = {"default": {}, "smoke": {**SMOKE, "pretrain_epochs": 2, "pretrain_lr": 3e-3, "pretrain_on": "last"}}

    def check_config(self) -> None:
        """SASRec-BCE's checks and the pre-training options; the runner calls it before anything trains."""
        super().check_config()
        cfg = self.config
        parse_value(cfg.pretrain_on, "prefixes", "pretrain_on", choices=("prefixes", "last"))
        if cfg.pretrain_epochs < 0 or not 0 <= cfg.mask_ratio < 1:
            raise ConfigError(f"need pretrain_epochs >= 0 and 0 <= mask_ratio < 1, "
                              f"found {cfg.pretrain_epochs} and {cfg.mask_ratio}")

    def fit(self, split: Split, ctx: FitContext) -> "S3Rec":
        """Build SASRec's model, pre-train it (unless ``pretrain_epochs=0``), then fine-tune as SASRec-BCE."""
        cfg = self.config
        self.check_config()
        self.model_ = self.build(split).to(ctx.device)  # first, so initialisation matches sasrec-bce
        if cfg.pretrain_epochs > 0:
            with ctx.stage("pretrain"):
                self.pretrain(split, ctx)
        self.finetune(split, ctx)
        return self

    def pretrain(self, split: Split, ctx: FitContext) -> None:
        """Pre-train ``self.model_`` (bidirectionally) with the four S3-Rec losses, then restore causality."""
        cfg = self.config
        pretrainer = S3RecPretrainer(split, cfg, self.model_)
        train_cfg = TrainConfig(epochs=cfg.pretrain_epochs, batch_size=cfg.pretrain_batch_size, lr=cfg.pretrain_lr,
                                weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
        windows = pretrainer.windows(split)
        encoder, causal = self.model_.encoder, self.model_.encoder.causal
        encoder.causal = False  # S3-Rec pre-trains bidirectionally and fine-tunes causally
        try:
            Trainer(train_cfg, ctx, "pretrain").fit(pretrainer, (windows,), pretrainer.pretrain_loss)
        finally:
            encoder.causal = causal
        steps = ctx.extra["pretrain"]["steps_per_epoch"]
        per_epoch = torch.stack(pretrainer.parts).view(-1, steps, len(LOSS_NAMES)).mean(1).cpu()
        points = [p for p in ctx.curve if p.get("stage") == "pretrain"]
        for point, means in zip(points, per_epoch.tolist()):
            point.update({k: round(v, 5) for k, v in zip(LOSS_NAMES, means)})
        last = {k: round(v, 5) for k, v in zip(LOSS_NAMES, per_epoch[-1].tolist())}
        ctx.extra["pretrain_losses"] = last
        log.info("s3rec pre-training, last epoch: %s", last)


register("method", "s3rec")(S3Rec)
