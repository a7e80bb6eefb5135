"""ETEGRec (Liu et al., SIGIR 2025): tokenizer and generator trained end to end, in alternation.

Faithful to the released code (github BishopLiu/ETEGRec) where it and the paper disagree; the other reading
is an option and the record says which ran (``extra.etegrec``).

* Stage 0: an RQ-VAE (MLP 256 -> 512 -> 256 -> 128, 3 x 256 x 128, l2) fitted on 256-d ``sasrec-emb`` item
  vectors (a SASRec trained on the training split only), through the ``rqvae`` tokenizer, so it is cached with
  its state. As released, the codebook and commitment terms are averaged over the levels and the residual
  passed from one level to the next carries no gradient (``rqvae``'s ``level_mean`` and ``detach_residuals``).
  ETEGRec's 4th token numbers the items sharing a 3-code prefix, in item order. The shared ``rqvae`` loop
  departs from the released stage 0 in four ways: it standardises the inputs, initialises the codebooks by
  k-means on all items (released: the first batch), keeps the learning rate constant (released: linear with 50
  warm-up epochs) and does not clip gradients (released: norm 1).
* Stage 1, alternating cycles of ``cycle`` epochs: one tokenizer epoch with the generator frozen (RQ-VAE loss
  + SIA + PSA), after which every item's codes are recomputed and the generator's codes and trie refreshed;
  then ``cycle - 1`` generator epochs with the tokenizer frozen (generation loss + SIA + PSA). The alignment
  weights are 0 for the first ``align_warmup_epochs`` epochs. During tokenizer epochs the frozen generator
  runs in eval mode (no dropout), as released. One optimiser per side (generator lr 5e-3, tokenizer 1e-4,
  weight decay 0.05, cosine), validation on NDCG@10 every 2 epochs, early stopping after 15 validations
  without a better one, the best checkpoint (tokenizer, generator and the codes it was validated with) kept.
  The schedules are the ones the authors' 4-GPU run had: the released code sizes them in scheduler ticks over
  batches of 512 (8,000 warm-up ticks for the generator, 4,000 for the tokenizer; horizons of 400 and 200
  epochs), and under ``accelerate`` each optimiser step at the effective batch of 2,048 ticks 4 times. So the
  generator warms up over 2,000 optimiser steps and its cosine spans all of stage 1's epochs although it
  steps in only half of them (its learning rate ends near half its peak after 400 epochs); the tokenizer
  warms up over 1,000 steps and its cosine spans its own epochs. ``warmup_steps=8000`` and
  ``tokenizer_warmup_steps=4000`` take the released numbers as optimiser steps instead.
* Stage 2: the tokenizer frozen for good; a fresh optimiser (lr 5e-4, cosine) fine-tunes the generator on the
  generation loss alone, validated every epoch and early-stopped after 10 validations without a better one.

SIA: per level, the code distribution of the target item (its latent through the residual quantiser) and of a
projection of the mean-pooled encoder states (through the same quantiser), compared by a symmetric KL. The
released code takes ``softmax(+distance)`` (``sia_sign="code"``), the paper ``softmax(-distance)``
(``"paper"``). PSA: an in-batch InfoNCE (cosine, tau 0.07) between a projection of the decoder's BOS-step
state and the tokenizer's reconstruction of the target, the sum of both directions as released. Both, and the
RQ-VAE loss, over the batch's unique targets. The released run split each batch of 2,048 over 4 GPUs, so
its unique targets and PSA's in-batch negatives were per share of 512: ``align_groups=4`` does the same
(each row's negatives are the rows of its share; the means run over all shares' rows at once, where the GPUs
averaged per-share means). The two projections start from N(0, 0.02), as released. The quantiser always runs
in float32, also inside the trainer's bf16 autocast. A step keeps the batch's shapes (the unique targets are
a 0/1 weight per row) and never waits for the GPU, so under ``run --compile`` each phase's step traces as one
graph.

Ablations: ``sia=false``, ``psa=false``, ``alternate=false`` (one phase, everything trained jointly at the two
learning rates, codes refreshed after every epoch), ``end_to_end=false`` (stage 0 and 1 as above, then a
fresh generator trained two-stage on the final codes; the paper's "w/o end-to-end"). Decoding is constrained
by the trie (the suite's policy); ``constrained=false`` decodes freely as the released code and the record
gives the invalid-SID rate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core import registry
from bench.core.device import current_precision
from bench.core.errors import ConfigError
from bench.core.io import code_digest
from bench.core.method import FitContext, Method, method_variant
from bench.core.registry import register
from bench.data.protocol import Split
from bench.nn.train import Phase, Trainer
from bench.sid import cache as stages
from bench.sid.collisions import with_collision_token
from bench.sid.diagnostics import sid_diagnostics
from bench.sid.generator import Generator, GeneratorConfig
from bench.sid.pipeline import SMALL_GENERATOR, SMOKE_GENERATOR, encode_views, log_sid
from bench.sid.stages import SIDTable, tokenize_items

SIA_SIGNS = ("code", "paper")
STAGE1 = "etegrec-stage1"  # the stage cache's folder for stage 1's final codes
# fields that do not change stage 1 (what comes after it), left out of its cache key
AFTER_STAGE1 = ("end_to_end", "finetune_epochs", "finetune_lr", "finetune_patience", "beam", "constrained")


@dataclass
class ETEGRecConfig(GeneratorConfig):
    # the generator at ETEGRec's sizes: T5 6 + 6 layers, d 128, FFN 512, 4 heads of 64, tied per-level tables
    n_enc_layers: int = 6
    n_dec_layers: int = 6
    n_heads: int = 4
    d_head: int = 64
    d_ff: int = 512
    tie_embeddings: bool = True
    # stage 1's optimisation (the generator side; ``epochs`` is stage 1's maximum)
    epochs: int = 400
    batch_size: int = 2048
    lr: float = 5e-3
    weight_decay: float = 0.05
    # optimiser steps at batch 2,048 as the authors' 4-GPU run had them (released: 8,000 scheduler ticks, 4 per
    # step); the generator's cosine spans all of stage 1's epochs, the tokenizer's its own (module docstring)
    warmup_steps: int = 2000
    tokenizer_warmup_steps: int = 1000
    eval_every: int = 2
    patience: int = 15
    # stage 0: the item vectors and the RQ-VAE
    encoder: str = "sasrec-emb"
    encoder_options: str = "d_model=256"
    latent_dim: int = 128
    hidden: tuple = (512, 256)
    n_levels: int = 3
    codebook_size: int = 256
    beta: float = 0.25
    rq_epochs: int = 10000
    rq_lr: float = 1e-3
    rq_weight_decay: float = 1e-4
    last_level_capacity: int = 256  # values of the 4th (collision) token; more items on one prefix is an error
    # stage 1: alternation and alignment
    cycle: int = 2  # C: one tokenizer epoch, then C - 1 generator epochs
    tokenizer_lr: float = 1e-4
    sia: bool = True
    psa: bool = True
    sia_weight: float = 1e-4  # the released code's weights (the paper's text: SIA 3e-4, PSA 1e-4)
    psa_weight: float = 3e-4
    sia_sign: str = "code"  # "code": softmax(+distance) as released; "paper": softmax(-distance)
    psa_tau: float = 0.07
    # the batch's shares on the authors' 4 GPUs (512 each): the unique targets and PSA's in-batch negatives are
    # taken per share, as data-parallel training did; 1 takes the whole batch at once
    align_groups: int = 4
    align_warmup_epochs: int = 10
    alternate: bool = True
    end_to_end: bool = True
    # stage 2
    finetune_epochs: int = 100
    finetune_lr: float = 5e-4
    finetune_patience: int = 10


def generator_config(cfg: ETEGRecConfig, **changes: Any) -> GeneratorConfig:
    """The ``GeneratorConfig`` part of ``cfg`` (stage 1's optimisation), with ``changes``."""
    return dataclasses.replace(GeneratorConfig(**{f.name: getattr(cfg, f.name)
                                                  for f in dataclasses.fields(GeneratorConfig)}), **changes)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of ``values`` [N], or their mean over the rows whose weight is 1 (weights 0 or 1)."""
    return values.mean() if weights is None else (values * weights).sum() / weights.sum()


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """KL(P_a || P_b) + KL(P_b || P_a), summed over the last axis and averaged over the rows (those of weight 1)."""
    log_a, log_b = F.log_softmax(logits_a, -1), F.log_softmax(logits_b, -1)
    return weighted_mean(((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(-1), weights)


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float, groups: torch.Tensor | None = None,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch InfoNCE between rows of ``a`` and ``b`` (row i of each is the positive pair), cosine over
    ``tau``: the sum of both directions (a -> b and b -> a), as ETEGRec's code adds them. With ``groups`` (a
    group id per row), a row's negatives are only the rows of its own group (one GPU's share of the batch);
    with ``weights`` (0 or 1), only the rows of weight 1 take part, as if the others were not in the batch."""
    n = len(a)
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau
    allowed = torch.ones(n, n, dtype=torch.bool, device=a.device)
    if groups is not None:
        allowed = allowed & (groups[:, None] == groups[None, :])
    if weights is not None:  # a left-out row is no one's negative; its own row still has its positive
        allowed = (allowed & (weights[None, :] > 0)) | torch.eye(n, dtype=torch.bool, device=a.device)
    labels = torch.arange(n, device=a.device)
    rows = (F.cross_entropy(sim.masked_fill(~allowed, float("-inf")), labels, reduction="none")
            + F.cross_entropy(sim.T.masked_fill(~allowed, float("-inf")), labels, reduction="none"))
    return weighted_mean(rows, weights)


def batch_groups(size: int, groups: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The group of each of ``size`` rows cut into ``groups`` consecutive, near-equal parts (the shares of a
    batch that data-parallel training gives each of ``groups`` GPUs)."""
    return torch.arange(size, device=device) * groups // max(size, 1)


def first_of_each(targets: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Float [B]: 1 at the first example of each distinct target in the batch (the batch's unique targets), or
    of each distinct (group, target) pair given a group id per row; 0 elsewhere. Fixed shapes and no host
    synchronisation (stable sorts, not ``unique``), so a step can be captured as one CUDA graph. Pairs are
    ordered by two stable sorts, not by one combined key: inductor (torch 2.11) put a key's 2**32 factor into
    an int32 Triton kernel that failed to compile on the H200."""
    order = torch.sort(targets, stable=True).indices
    if groups is not None:  # by group, then by target within a group
        order = order[torch.sort(groups[order], stable=True).indices]
    ordered = targets[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    if groups is not None:
        ordered_groups = groups[order]
        first[1:] |= ordered_groups[1:] != ordered_groups[:-1]
    return torch.zeros_like(first).scatter(0, order, first).float()


class ETEGRecTokenizer(nn.Module):
    """The RQ-VAE of stage 0 over the (standardised) item vectors, with the alignment losses' pieces."""

    def __init__(self, model: nn.Module, item_vectors: torch.Tensor, beta: float, sia_sign: str,
                 rq_weight: float = 1.0):
        super().__init__()
        self.model = model  # encoder, quantizer, decoder (the ``rqvae`` tokenizer's RQVAEModel)
        self.register_buffer("items", item_vectors, persistent=False)
        self.beta, self.sign = beta, 1.0 if sia_sign == "code" else -1.0
        self.rq_weight = rq_weight  # 1 / levels: the per-level terms averaged, as in stage 0

    def code_logits(self, latent: torch.Tensor) -> list[torch.Tensor]:
        """Per level, the logits over its codes (sign x distance) of ``latent`` through the residual quantiser."""
        quantizer = self.model.quantizer
        out = quantizer(latent, balanced=False)
        return [self.sign * quantizer.distances(r, level) for level, r in enumerate(out.residuals)]

    def forward(self, items: torch.Tensor, weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """For target items [B]: latent, per-level code logits, reconstruction, and the RQ-VAE loss (averaged
        over the rows of weight 1 when ``weights`` are given: the batch's unique targets)."""
        with torch.autocast(self.items.device.type, enabled=False):
            x = self.items[items]
            latent = self.model.encoder(x)
            out = self.model.quantizer(latent, balanced=False)
            quantizer = self.model.quantizer
            logits = [self.sign * quantizer.distances(r, level) for level, r in enumerate(out.residuals)]
            reconstruction = self.model.decoder(out.quantised)
            recon = weighted_mean((reconstruction - x).pow(2).mean(1), weights)  # per row, then over the rows
            rq = recon + self.rq_weight * weighted_mean(out.row_losses(self.beta), weights)
        return {"latent": latent, "logits": logits, "reconstruction": reconstruction, "rq": rq, "recon": recon}

    @torch.no_grad()
    def codes(self) -> np.ndarray:
        """Every item's codes [n_items, L] under the current weights (nearest code per level, float32)."""
        was = self.training
        self.eval()
        with torch.autocast(self.items.device.type, enabled=False):
            codes = self.model.quantizer(self.model.encoder(self.items), balanced=False).codes
        self.train(was)
        return codes.cpu().numpy().astype(np.int64)


class Alignment(nn.Module):
    """The generator side's projections: pooled encoder states -> latent (SIA), BOS state -> item space (PSA)."""

    def __init__(self, d_model: int, latent_dim: int, item_dim: int):
        super().__init__()
        self.sia = nn.Linear(d_model, latent_dim)
        self.psa = nn.Linear(d_model, item_dim)
        for layer in (self.sia, self.psa):  # as the released model initialises its linear layers
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)


class ETEGRec(Method):
    """ETEGRec: sasrec-emb (256-d) + RQ-VAE trained in alternation with a T5 generator (SIA + PSA), then fine-tuned."""

    Config = ETEGRecConfig
    merged_options: ClassVar[dict[str, str]] = {"encoder_options": "encoder"}  # the user's pairs over a budget's
    budgets = {
        "default": {},
        "small": {**SMALL_GENERATOR, "encoder_options": "d_model=32;d_ff=64;epochs=20", "latent_dim": 16,
                  "hidden": (64, 32), "codebook_size": 32, "rq_epochs": 200, "epochs": 8, "eval_every": 2,
                  "patience": 2, "align_warmup_epochs": 2, "finetune_epochs": 4, "finetune_patience": 1,
                  "last_level_capacity": 256, "tokenizer_warmup_steps": 0},
        "smoke": {**SMOKE_GENERATOR, "encoder_options": "d_model=16;d_ff=32;epochs=2", "latent_dim": 8,
                  "hidden": (16,), "codebook_size": 8, "rq_epochs": 20, "epochs": 4, "batch_size": 1024,
                  "eval_every": 2, "patience": 5,
                  "align_warmup_epochs": 0, "finetune_epochs": 2, "finetune_patience": 2,
                  "last_level_capacity": 512, "warmup_steps": 0, "tokenizer_warmup_steps": 0},
    }

    def check_config(self) -> None:
        cfg = self.config
        if cfg.sia_sign not in SIA_SIGNS:
            raise ConfigError(f"sia_sign must be one of {', '.join(SIA_SIGNS)}, found {cfg.sia_sign!r}")
        if cfg.cycle < 2 and cfg.alternate:
            raise ConfigError(f"cycle must be >= 2 (one tokenizer epoch, then cycle - 1 generator epochs), found "
                              f"{cfg.cycle}; for everything trained together set alternate=false")
        for name in ("rq_epochs", "latent_dim", "codebook_size", "n_levels", "last_level_capacity", "finetune_epochs",
                     "align_groups"):
            if getattr(cfg, name) < (0 if name == "finetune_epochs" else 1):
                raise ConfigError(f"{name} must be >= {0 if name == 'finetune_epochs' else 1}, found {getattr(cfg, name)}")
        for name in ("tokenizer_lr", "finetune_lr", "psa_tau", "rq_lr"):
            if not getattr(cfg, name) > 0:
                raise ConfigError(f"{name} must be > 0, found {getattr(cfg, name)}")
        for name in ("sia_weight", "psa_weight", "align_warmup_epochs", "tokenizer_warmup_steps"):
            if getattr(cfg, name) < 0:
                raise ConfigError(f"{name} must be >= 0, found {getattr(cfg, name)}")

    def tokenizer_params(self, seed: int) -> dict[str, Any]:
        """Stage 0's ``rqvae``: ETEGRec's sizes and optimiser; no dead-code restarts (its code has none)."""
        cfg = self.config
        return {"latent_dim": cfg.latent_dim, "hidden": tuple(int(h) for h in cfg.hidden), "n_levels": cfg.n_levels,
                "codebook_size": cfg.codebook_size, "beta": cfg.beta, "epochs": cfg.rq_epochs, "lr": cfg.rq_lr,
                "weight_decay": cfg.rq_weight_decay, "restart_every": 0, "distance": "l2", "seed": seed,
                "level_mean": True, "detach_residuals": True}

    # ---- stage 0 -------------------------------------------------------------------------------------------------
    def fit(self, split: Split, ctx: FitContext) -> ETEGRec:
        self.check_config()
        cfg = self.config
        rqvae_cls = registry.get("tokenizer", "rqvae")
        with ctx.stage("encode"):
            self.views_ = encode_views(cfg, rqvae_cls, split, ctx)
        with ctx.stage("tokenize"):
            self.stage0_ = tokenize_items("rqvae", self.tokenizer_params(ctx.seed), self.views_, None, split,
                                          str(ctx.device), quiet=ctx.quiet)
        rqvae = rqvae_cls(**self.tokenizer_params(ctx.seed)).set_state(self.stage0_.state)
        items = torch.from_numpy((self.views_.main - rqvae.input_mean_) / rqvae.input_scale_).float()
        self.tokenizer_ = ETEGRecTokenizer(rqvae.model_, items, cfg.beta, cfg.sia_sign,
                                           rqvae.rq_weight).to(ctx.device)
        self.align_ = Alignment(cfg.d_model, cfg.latent_dim, items.shape[1]).to(ctx.device)
        self.refreshes_: list[dict[str, Any]] = []
        self.terms_: dict[str, dict[str, torch.Tensor]] = {}
        self.term_log_: list[dict[str, Any]] = []
        self.steps_, self.previous_ = 0, self.tokenizer_.codes()
        codes, largest = with_collision_token(self.previous_, cfg.last_level_capacity)
        self.sizes_ = [cfg.codebook_size] * cfg.n_levels + [cfg.last_level_capacity]
        self.generator_ = Generator(generator_config(cfg)).setup(split, codes, self.sizes_, ctx)
        self.initial_ = {"largest_group": largest, **self._code_facts(self.previous_)}
        examples = self.generator_.examples(split)
        self.steps_per_epoch_ = math.ceil(len(examples[0]) / cfg.batch_size)
        key = stages.stage_key(self._stage1_spec(split, ctx))
        found = None if cfg.end_to_end else stages.load(STAGE1, key)
        if found is not None:  # w/o end-to-end after the full run of the same stage 1: its final tokens
            final_raw, meta = found[0]["codes"], found[1]
            self.refreshes_, self.term_log_ = meta["refreshes"], meta["loss_terms"]
            ctx.extra["joint"] = {**meta["joint"], "cache_hit": True, "cache_key": key}
        else:
            with ctx.stage("joint"):
                self._stage1(examples, ctx)
            final_raw = self.tokenizer_.codes()
            stages.save(STAGE1, key, {"codes": final_raw}, {"refreshes": self.refreshes_, "loss_terms": self.term_log_,
                                                             "joint": ctx.extra["joint"]})
        if cfg.end_to_end:
            with ctx.stage("finetune"):
                self._stage2(examples, ctx)
        else:  # the paper's "w/o end-to-end": the final tokens, a fresh generator trained two-stage
            with ctx.stage("generator"):
                codes, _ = with_collision_token(final_raw, cfg.last_level_capacity)
                self.generator_ = Generator(generator_config(cfg)).fit(split, codes, self.sizes_, ctx)
        self._record(split, ctx, final_raw)
        return self

    # ---- stage 1 -------------------------------------------------------------------------------------------------
    def _stage1_spec(self, split: Split, ctx: FitContext) -> dict[str, Any]:
        """What determines stage 1's final codes: stage 0's entry, the options before stage 2, the seed, the
        data and protocol, the code, the precision. ``etegrec-two-stage`` reuses a full run's entry."""
        options = {k: v for k, v in dataclasses.asdict(self.config).items() if k not in AFTER_STAGE1}
        return {"stage0": self.stage0_.info.get("cache_key"), "options": options, "seed": ctx.seed,
                "dataset": split.dataset.checksum, "protocol": split.protocol.to_dict(),
                "code": code_digest(ETEGRec, Generator, Trainer), "device": ctx.device.type,
                "precision": current_precision(ctx.device)}

    def _align_weights(self) -> tuple[float, float]:
        """SIA and PSA weights for the next step: 0 in the first ``align_warmup_epochs`` epochs (``steps_`` counts
        the steps already taken, so the last step of the last warm-up epoch is still without them)."""
        cfg = self.config
        if self.steps_ < cfg.align_warmup_epochs * self.steps_per_epoch_:
            return 0.0, 0.0
        return (cfg.sia_weight if cfg.sia else 0.0), (cfg.psa_weight if cfg.psa else 0.0)

    def _terms(self, batch: tuple[torch.Tensor, ...], phase: str, generation: bool,
               tokenizer_grad: bool) -> torch.Tensor:
        """The loss of one step of ``phase``; each term's running sum kept (as tensors, no sync) for the record.

        Every tensor keeps the batch's shape: the unique targets are a 0/1 weight per row, not a selection, so
        the step never waits for the GPU and ``run --compile`` can capture it (the bookkeeping around it runs
        outside the compiled graph)."""
        histories, users, targets = batch
        gen = self.generator_.model_
        w_sia, w_psa = self._step_weights(generation)
        if generation:
            ce, out = gen.loss(histories, users, targets, return_states=True)
        elif w_sia or w_psa:
            with torch.no_grad():  # the generator is frozen in this phase: its states are inputs
                out = gen(histories, users, targets, return_states=True)
        terms = {"generation": ce} if generation else {}
        if not (tokenizer_grad or w_sia or w_psa):  # a generator step in the alignment warm-up: CE alone
            return self._logged(phase, terms, ce)
        groups = batch_groups(len(targets), self.config.align_groups, targets.device)
        unique = first_of_each(targets, groups)
        with torch.set_grad_enabled(tokenizer_grad):  # frozen in generator phases: its outputs are targets there
            tok = self.tokenizer_(targets, unique)
        if tokenizer_grad:
            terms["rq"] = tok["rq"]
        if w_sia or w_psa:
            mask = out.encoder_mask[:, :, None].float()
            pooled = (out.encoder_states.float() * mask).sum(1) / mask.sum(1)
            bos = out.decoder_states[:, 0].float()
            with torch.autocast(pooled.device.type, enabled=False):
                if w_sia:
                    mine = self.tokenizer_.code_logits(self.align_.sia(pooled))
                    terms["sia"] = sum(symmetric_kl(a, b, unique) for a, b in zip(tok["logits"], mine)) / len(mine)
                if w_psa:
                    terms["psa"] = info_nce(self.align_.psa(bos), tok["reconstruction"], self.config.psa_tau,
                                            groups, unique)
        loss = (terms.get("generation", 0.0) + terms.get("rq", 0.0)
                + w_sia * terms.get("sia", 0.0) + w_psa * terms.get("psa", 0.0))
        return self._logged(phase, terms, loss)

    @torch.compiler.disable
    def _step_weights(self, generation: bool) -> tuple[float, float]:
        """The SIA and PSA weights of the step that starts now (then counted); in a tokenizer step that runs
        the frozen generator, the generator goes to eval mode (no dropout), as released."""
        weights = self._align_weights()  # from the steps before this one: off for every warm-up epoch
        self.steps_ += 1  # only training steps come here (validation decodes through the generator alone)
        if not generation and any(weights):
            self.generator_.model_.eval()  # the trainer put the model in train mode at the epoch's start
        return weights

    @torch.compiler.disable
    def _logged(self, phase: str, terms: dict[str, torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
        """``loss``, after adding each term to the phase's running sums (tensors: no sync with the GPU)."""
        sums = self.terms_.setdefault(phase, {})
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float()
        sums["steps"] = sums.get("steps", 0) + 1
        return loss

    def _phase_ended(self, phase: str) -> None:
        """The mean of each loss term over the phase's last run, into the record's term log."""
        sums = self.terms_.pop(phase, {})
        steps = sums.pop("steps", 0)
        if steps:
            self.term_log_.append({"phase": phase, "after_step": self.steps_,
                                   **{name: round(float(v) / steps, 6) for name, v in sums.items()}})

    def _code_facts(self, raw: np.ndarray) -> dict[str, Any]:
        diagnostics = sid_diagnostics(raw, [self.config.codebook_size] * self.config.n_levels)
        return {"usage": [lv["usage"] for lv in diagnostics["levels"]],
                "collision_rate": diagnostics["collision_rate"], "unique_share": diagnostics["unique_share"]}

    def _refresh(self) -> None:
        """After a tokenizer epoch: every item's codes recomputed, the generator's codes and trie follow."""
        self._phase_ended("tokenizer")
        raw = self.tokenizer_.codes()
        codes, largest = with_collision_token(raw, self.config.last_level_capacity)
        self.generator_.set_codes(codes)
        changed = float((raw != self.previous_).any(1).mean())
        self.refreshes_.append({"after_step": self.steps_, "changed_share": round(changed, 6),
                                "largest_group": largest, **self._code_facts(raw)})
        self.previous_ = raw

    def _stage1(self, examples: tuple[torch.Tensor, ...], ctx: FitContext) -> None:
        cfg = self.config
        gen_side = lambda: [*self.generator_.model_.parameters(), *self.align_.parameters()]
        tok_side = self.tokenizer_.parameters
        if cfg.alternate:
            phases = [
                Phase("tokenizer", tok_side, lambda b: self._terms(b, "tokenizer", False, True), epochs=1,
                      lr=cfg.tokenizer_lr, warmup_steps=cfg.tokenizer_warmup_steps, on_end=self._refresh),
                Phase("generator", gen_side, lambda b: self._terms(b, "generator", True, False),
                      epochs=cfg.cycle - 1, schedule_steps=cfg.epochs * self.steps_per_epoch_,
                      on_end=lambda: self._phase_ended("generator")),
            ]
            cycles = math.ceil(cfg.epochs / cfg.cycle)
        else:
            def joint_end() -> None:
                self.terms_["tokenizer"] = self.terms_.pop("joint", {})
                self._refresh()
                self.term_log_[-1]["phase"] = "joint"

            phases = [Phase("joint", lambda: [{"params": gen_side()}, {"params": list(tok_side()),
                                                                       "lr": cfg.tokenizer_lr}],
                            lambda b: self._terms(b, "joint", True, True), epochs=1, on_end=joint_end)]
            cycles = cfg.epochs
        model = nn.ModuleDict({"tokenizer": self.tokenizer_, "generator": self.generator_.model_,
                               "align": self.align_})  # the best checkpoint holds all three, and the codes
        Trainer(generator_config(cfg), ctx, "joint").fit(model, examples, phases=phases, cycles=cycles,
                                                         validate=self.generator_.validation(ctx))
        self.tokenizer_.requires_grad_(False)

    # ---- stage 2 -------------------------------------------------------------------------------------------------
    def _stage2(self, examples: tuple[torch.Tensor, ...], ctx: FitContext) -> None:
        """The tokenizer frozen for good; a fresh optimiser fine-tunes the generator on the generation loss."""
        cfg = self.config
        if cfg.finetune_epochs < 1:
            return
        tune = generator_config(cfg, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, patience=cfg.finetune_patience,
                                warmup_steps=0, eval_every=1)
        Trainer(tune, ctx, "finetune").fit(self.generator_.model_, examples, self.generator_.loss,
                                           validate=self.generator_.validation(ctx))

    # ---- record and ranking --------------------------------------------------------------------------------------
    def _record(self, split: Split, ctx: FitContext, final_raw: np.ndarray) -> None:
        cfg = self.config
        self.generator_.record(ctx)
        raw_sizes = [cfg.codebook_size] * cfg.n_levels
        codes = self.generator_.model_.sid_codes().cpu().numpy()
        largest = int(codes[:, -1].max()) + 1
        colliding = int((codes[:, -1] > 0).sum())
        collisions = {"method": "collision-token", "colliding_items_before": colliding, "items_moved": 0,
                      "levels_added": 1, "n_levels": codes.shape[1], "codebook_sizes": self.sizes_,
                      "largest_group": largest}
        raw = codes[:, :-1]
        table = SIDTable(codes, self.sizes_, raw, raw_sizes, collisions, sid_diagnostics(raw, raw_sizes),
                         self.stage0_.info)
        facts = {
            "code": "released (BishopLiu/ETEGRec)", "sia_sign": cfg.sia_sign,
            "sia_weight": cfg.sia_weight if cfg.sia else 0.0, "psa_weight": cfg.psa_weight if cfg.psa else 0.0,
            "alternate": cfg.alternate, "cycle": cfg.cycle, "end_to_end": cfg.end_to_end,
            "stage0": self.initial_, "refreshes": self.refreshes_, "loss_terms": self.term_log_,
            "codes_changed_share": round(float((raw != self.stage0_.raw_codes).any(1).mean()), 6),
            "final_tokenizer_codes_changed_after_best": round(float((final_raw != raw).any(1).mean()), 6),
        }
        log_sid(ctx, self.views_, {"name": "rqvae", "params": self.tokenizer_params(ctx.seed), **self.stage0_.info},
                table, kind="joint", etegrec=facts)

    @torch.no_grad()
    def rank(self, histories: torch.Tensor, users: torch.Tensor, k: int) -> torch.Tensor:
        return self.generator_.rank(histories, users, k)


def _variant(name: str, description: str, **defaults: Any) -> type[ETEGRec]:
    return register("method", name)(method_variant(ETEGRec, name, description, __name__, **defaults))


register("method", "etegrec")(ETEGRec)
ETEGRecNoSIA = _variant("etegrec-no-sia", "ETEGRec's ablation: without the SIA loss", sia=False)
ETEGRecNoPSA = _variant("etegrec-no-psa", "ETEGRec's ablation: without the PSA loss", psa=False)
ETEGRecNoAlign = _variant("etegrec-no-align", "ETEGRec's ablation: without SIA and PSA", sia=False, psa=False)
ETEGRecJoint = _variant("etegrec-joint", "ETEGRec's ablation: no alternation, everything trained jointly",
                        alternate=False)
ETEGRecTwoStage = _variant("etegrec-two-stage", "ETEGRec's ablation w/o end-to-end: the final tokens, a fresh "
                           "generator trained two-stage", end_to_end=False)
