"""Unified semantic and ID representation (Lin et al., arXiv 2502.16474): a SASRec whose item vectors are
``[small learned ID embedding || quantised semantic vector]``, quantiser and recommender trained together.

Not a generative model: it scores every item, so it competes with SASRec and
SASRec* on accuracy and on embedding parameters. Each item's input and
output embedding is the concatenation of an ``id_dim``-d ID embedding (what
is unique to the item) and the ``sem_dim``-d quantised latent of its text
vector (what items share): an MLP encoder, a residual quantiser of
``n_levels x codebook_size x sem_dim`` with a distance per level (the paper:
cosine on the early levels, Euclidean on the last), and a decoder back to the
text vector. Loss = full-softmax next-item cross-entropy + ``rq_weight`` *
(codebook + ``beta`` * commitment) + ``recon_weight`` * text reconstruction
MSE, all on one optimiser.

No code was released; choices made here, recorded with each run:

- the quantiser starts from the ``rqvae`` tokenizer fitted on the text
  vectors with this method's sizes and distances (a cached stage: the
  ablations share it), then trains jointly with the recommender; the
  ``two-stage`` ablation keeps that fit frozen instead;
- the semantic part enters SASRec as the quantised latent of the
  normalised text vector (straight-through, so the recommendation loss
  reaches the MLP encoder; the codebooks learn through the codebook loss);
- loss weights 1 and the SASRec backbone's optimiser (AdamW 1e-3) and sizes.

Ablations, each its own method name so reports keep them apart:
``unified-id-only`` (SASRec at the same total width), ``unified-sem-only``,
``unified-l2`` and ``unified-cosine`` (one distance everywhere) and
``unified-two-stage``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core import registry
from bench.core.errors import ConfigError
from bench.core.method import FitContext, method_variant
from bench.core.registry import register
from bench.data.protocol import Split
from bench.sid.collisions import resolve_collisions
from bench.sid.diagnostics import sid_diagnostics
from bench.sid.pipeline import encode_views, log_sid
from bench.sid.quantize import DISTANCES, per_level
from bench.sid.stages import SIDTable, tokenize_items
from methods.id.sasrec import SMALL, SMOKE, SASRec, SASRecConfig, SASRecModel

VARIANTS = ("unified", "id-only", "semantic-only")


@dataclass
class UnifiedConfig(SASRecConfig):
    variant: str = "unified"  # "unified", "id-only" (SASRec at d = id_dim + sem_dim) or "semantic-only"
    id_dim: int = 8
    sem_dim: int = 64
    n_levels: int = 3
    codebook_size: int = 256
    distance: str = "cosine,cosine,l2"  # per level; the paper's hybrid
    hidden: tuple = (512, 256)  # the text MLP's hidden sizes (decoder mirrored)
    rq_weight: float = 1.0
    recon_weight: float = 1.0
    beta: float = 0.25  # commitment weight inside the RQ loss
    two_stage: bool = False  # True: the fitted quantiser stays frozen (the paper's two-stage ablation)
    quantizer_epochs: int = 6000  # the rqvae fit the quantiser starts from
    encoder: str = "text"  # the item text encoder ("text": the dataset's)
    encoder_options: str = ""


class UnifiedItems(nn.Module):
    """Item table ``[n_items + n_special, id_dim + sem_dim]``: ID rows, then the quantised semantic rows."""

    def __init__(self, n_items: int, id_dim: int, semantic: nn.Module | None, text: torch.Tensor | None,
                 frozen: bool, n_special: int = 1, init_std: float = 0.02):
        super().__init__()
        self.n_items, self.n_special, self.frozen = n_items, n_special, frozen
        self.ids = nn.Embedding(n_items + n_special, id_dim) if id_dim else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=init_std)
        self.semantic = semantic
        if semantic is not None:
            self.register_buffer("text", text, persistent=False)
            if frozen:
                semantic.requires_grad_(False)
        self.aux: dict[str, torch.Tensor] = {}

    def _semantic(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The quantised semantic rows ``[n_items, sem_dim]`` and the quantiser's loss terms and codes. The
        quantiser runs in float32 even inside the trainer's bf16 autocast, as it was fitted: nearest-code picks
        in bf16 moved 5.1% of a frozen quantiser's items to other codes on Beauty (stop 23's unified-two-stage)."""
        sem = self.semantic
        if self.frozen:
            sem.eval()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen), \
                torch.autocast(self.text.device.type, enabled=False):
            out = sem.quantizer(sem.encoder(self.text), balanced=False)
            recon = (sem.decoder(out.quantised) - self.text).pow(2).mean()
        aux = {"codebook": out.codebook_loss, "commitment": out.commitment_loss, "recon": recon, "codes": out.codes}
        return (out.quantised.detach() if self.frozen else out.quantised), aux

    def table(self) -> torch.Tensor:
        """All rows; on the way, ``aux`` gets the quantiser's loss terms and the items' codes. A frozen
        quantiser's rows never change, so they are computed once (per device), not at every step."""
        parts = [] if self.ids is None else [self.ids.weight]
        if self.semantic is not None:
            cached = getattr(self, "_frozen_rows", None)
            if self.frozen and cached is not None and cached[0].device == self.text.device:
                rows, self.aux = cached
            else:
                rows, self.aux = self._semantic()
                if self.frozen:
                    self._frozen_rows = (rows, self.aux)
            parts.append(torch.cat([rows, rows.new_zeros(self.n_special, rows.shape[1])]))
        return torch.cat(parts, dim=1)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(item_ids, self.table())


class Unified(SASRec):
    """Unified semantic+ID SASRec: [8-d ID || 64-d quantised text vector], RQ (cosine, cosine, l2) trained jointly."""

    Config = UnifiedConfig
    budgets = {"default": {}, "small": SMALL, "smoke": {**SMOKE, "quantizer_epochs": 20, "codebook_size": 16,
                                                          "sem_dim": 16, "id_dim": 4, "hidden": (32,)}}

    def check_config(self) -> None:
        super().check_config()
        cfg = self.config
        if cfg.variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, found {cfg.variant!r}")
        if cfg.variant != "semantic-only" and cfg.id_dim < 1:
            raise ConfigError(f"id_dim must be >= 1 for variant {cfg.variant}, found {cfg.id_dim}")
        per_level(cfg.distance, cfg.n_levels, DISTANCES, "distance")  # one name, or one per level
        if cfg.loss != "ce":
            raise ConfigError(f"unified trains with the full-softmax loss (loss='ce'), found {cfg.loss!r}")

    def tokenizer_params(self, seed: int) -> dict[str, Any]:
        """The ``rqvae`` fit the quantiser starts from: this method's sizes and distances."""
        cfg = self.config
        return {"latent_dim": cfg.sem_dim, "hidden": tuple(int(h) for h in cfg.hidden), "n_levels": cfg.n_levels,
                "codebook_size": cfg.codebook_size, "beta": cfg.beta, "epochs": cfg.quantizer_epochs,
                "distance": cfg.distance, "seed": seed}

    def fit(self, split: Split, ctx: FitContext, validate: bool = True, stage: str = "train") -> "Unified":
        self.check_config()
        cfg = self.config
        width = cfg.id_dim + cfg.sem_dim
        semantic, text, self.views_, self.quantizer_ = None, None, None, None
        if cfg.variant != "id-only":
            rqvae_cls = registry.get("tokenizer", "rqvae")
            with ctx.stage("encode"):
                self.views_ = encode_views(cfg, rqvae_cls, split, ctx)
            with ctx.stage("tokenize"):
                self.quantizer_ = tokenize_items("rqvae", self.tokenizer_params(ctx.seed), self.views_, None, split,
                                                 str(ctx.device), quiet=ctx.quiet)
            tokenizer = rqvae_cls(**self.tokenizer_params(ctx.seed)).set_state(self.quantizer_.state)
            semantic = tokenizer.model_
            text = torch.from_numpy((self.views_.main - tokenizer.input_mean_) / tokenizer.input_scale_).float()
        id_dim = 0 if cfg.variant == "semantic-only" else (width if cfg.variant == "id-only" else cfg.id_dim)
        model_cfg = dataclasses.replace(cfg, d_model=id_dim + (0 if semantic is None else cfg.sem_dim))
        model = SASRecModel(split, model_cfg)
        if semantic is not None:
            model.items = UnifiedItems(split.n_items, id_dim, semantic, text, frozen=cfg.two_stage,
                                       init_std=cfg.init_std)
        self.model_ = model.to(ctx.device)
        self.finetune(split, ctx, validate, stage)
        self._record(split, ctx, id_dim)
        return self

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        recommendation = super().loss(batch)
        aux = getattr(self.model_.items, "aux", None)
        if not aux or self.config.two_stage:
            return recommendation
        cfg = self.config
        return recommendation + cfg.rq_weight * (aux["codebook"] + cfg.beta * aux["commitment"]) \
            + cfg.recon_weight * aux["recon"]

    @torch.no_grad()
    def _record(self, split: Split, ctx: FitContext, id_dim: int) -> None:
        """Embedding parameters next to SASRec's, and (with a semantic part) the final codes' usage and
        uniqueness through the one SID-section writer."""
        cfg, items = self.config, self.model_.items
        n_rows = split.n_items + 1
        sasrec_width = SASRecConfig().d_model
        params = {"id_table": n_rows * id_dim, "codebooks": 0, "text_mlp": 0}
        if isinstance(items, UnifiedItems):
            params["codebooks"] = sum(p.numel() for p in items.semantic.quantizer.parameters())
            params["text_mlp"] = sum(p.numel() for m in (items.semantic.encoder, items.semantic.decoder)
                                     for p in m.parameters())
        embedding = params["id_table"] + params["codebooks"]
        facts = {"variant": cfg.variant, "two_stage": cfg.two_stage, "distance": cfg.distance,
                 "embedding_params": {**params, "item_embedding": embedding, "sasrec_item_embedding":
                                      n_rows * sasrec_width, "share_of_sasrec": round(embedding / (n_rows * sasrec_width), 4)}}
        if not isinstance(items, UnifiedItems):
            ctx.extra["unified"] = facts
            return
        items.eval()
        items.table()
        raw = items.aux["codes"].cpu().numpy().astype(np.int64)
        sizes = [cfg.codebook_size] * cfg.n_levels
        diagnostics = sid_diagnostics(raw, sizes)
        codes, final_sizes, collisions = resolve_collisions(raw, sizes)
        table = SIDTable(codes, final_sizes, raw, sizes, collisions, diagnostics, self.quantizer_.info)
        before = self.quantizer_.diagnostics
        log_sid(ctx, self.views_, {"name": "rqvae", "params": self.tokenizer_params(ctx.seed), **self.quantizer_.info},
                table, kind="unified", unified=facts,
                quantizer_start={"usage": [lv["usage"] for lv in before["levels"]],
                                 "unique_share": before["unique_share"]},
                codes_changed_share=round(float((self.quantizer_.raw_codes != raw).any(1).mean()), 6))


def _variant(name: str, description: str, **defaults: Any) -> type[Unified]:
    return register("method", name)(method_variant(Unified, name, description, __name__, **defaults))


register("method", "unified")(Unified)
UnifiedIdOnly = _variant("unified-id-only", "Unified's ablation: ID only, SASRec at the same width (72)",
                         variant="id-only")
UnifiedSemOnly = _variant("unified-sem-only", "Unified's ablation: the quantised semantic vector only (64-d)",
                          variant="semantic-only")
UnifiedL2 = _variant("unified-l2", "Unified's ablation: Euclidean distance on every quantiser level", distance="l2")
UnifiedCosine = _variant("unified-cosine", "Unified's ablation: cosine distance on every quantiser level",
                         distance="cosine")
UnifiedTwoStage = _variant("unified-two-stage", "Unified's ablation: quantiser fitted first, then frozen",
                           two_stage=True)
