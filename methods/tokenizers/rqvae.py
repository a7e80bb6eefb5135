"""TIGER's RQ-VAE tokenizer: an MLP autoencoder whose latent is quantised by residual codebooks.

Encoder ``in -> 512 -> 256 -> 128 -> 32`` (ReLU), mirror decoder; ``n_levels``
codebooks of ``codebook_size x latent_dim``. Level ``l`` picks the codeword
nearest to the residual left by levels ``< l``; the decoder reads the sum of
the chosen codewords (straight-through gradient to the encoder). Loss:
reconstruction MSE + per level codebook loss ``|sg[r] - e|^2`` + ``beta`` *
commitment ``|r - sg[e]|^2``. Codebooks start from k-means of all items'
initial latents (level by level, on the residuals), and codewords unused for
``restart_every`` epochs are re-seeded from random residuals of the last
batch, which keeps usage near 100% per level. The quantiser and its training
loop are ``bench.sid.quantize``'s, shared with the methods that extend it.

Beyond TIGER: ``distance`` per level (``l2``, or ``cosine`` as the unified
semantic/ID model uses on its earlier levels, e.g. ``"cosine,cosine,l2"``)
and ``assignment`` per level (``nearest``, or ``sinkhorn``: LETTER's balanced
assignment within each training batch; the final codes are nearest codes).
ETEGRec's released RQ-VAE differs in two more ways, each an option:
``level_mean`` averages the codebook and commitment terms over the levels
instead of summing them, and ``detach_residuals`` cuts the gradient between
levels (each level's residual is a constant to the encoder, so only the first
level's commitment term reaches it).

Choices where TIGER's paper is silent or unverified: the input vectors are
centred and divided by their overall RMS (one scale for all dimensions, so
the geometry is kept and the MSE is scale-free); AdamW lr 1e-3 without
weight decay instead of the reported Adagrad lr 0.4 (on Beauty text vectors
it reconstructed better than lr 3e-4 or 3e-3); epochs are shuffles cut into
equal-size batches (the last one topped up from the epoch's start); 6,000
epochs of 12 batches by default (TIGER: about 20k epochs). All data stays on
the device and, on a GPU, one captured CUDA graph replays the training step:
6,000 epochs on 12k items take about 55 s on an H100 (about 40 s per 100
epochs on 2 CPU cores, where it is meant for tests only).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.core.errors import ConfigError
from bench.sid.quantize import (
    ASSIGNMENTS,
    DISTANCES,
    QuantizerOutput,
    ResidualQuantizer,
    per_level,
    standardise,
    train_quantizer,
)
from bench.sid.tokenizer import Tokenizer
from methods.tokenizers.clustering import item_matrix, kmeans

log = logging.getLogger(__name__)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAEModel(nn.Module):
    """The autoencoder around its residual quantiser."""

    def __init__(self, in_dim: int, hidden: list[int], latent_dim: int, n_levels: int, codebook_size: int,
                 distance: list[str], assignment: list[str], **quantizer_options: Any):
        super().__init__()
        self.encoder = _mlp([in_dim, *hidden, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden), in_dim])
        self.quantizer = ResidualQuantizer(n_levels, codebook_size, latent_dim, distance, assignment,
                                           **quantizer_options)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        out = self.quantizer(self.encoder(x))
        out.reconstruction = self.decoder(out.quantised)
        return out


class RQVAE(Tokenizer):
    """TIGER's RQ-VAE: MLP autoencoder + residual quantisation (3 x 256 codes of dim 32), trained with restarts."""

    smoke_params = {"epochs": 30}  # the smoke budget (tests): seconds on a CPU
    small_params = {"epochs": 200}  # the small budget (small datasets on a CPU)
    who = "rqvae"  # the name errors give

    def __init__(self, latent_dim: int = 32, hidden: tuple[int, ...] = (512, 256, 128), n_levels: int = 3,
                 codebook_size: int = 256, beta: float = 0.25, epochs: int = 6000, batch_size: int = 1024,
                 lr: float = 1e-3, weight_decay: float = 0.0, restart_every: int = 1, seed: int = 0,
                 distance: str = "l2", assignment: str = "nearest", level_mean: bool = False,
                 detach_residuals: bool = False):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.restart_every = restart_every
        self.seed = seed
        self.distance = distance
        self.assignment = assignment
        self.level_mean = level_mean
        self.detach_residuals = detach_residuals

    def _levels(self) -> tuple[list[str], list[str]]:
        """The distance and assignment of each level, or a ``ConfigError`` naming what is wrong."""
        return (per_level(self.distance, self.n_levels, DISTANCES, "rqvae distance"),
                per_level(self.assignment, self.n_levels, ASSIGNMENTS, "rqvae assignment"))

    def _build(self, in_dim: int) -> RQVAEModel:
        """A fresh model, initialised from ``seed`` without touching the global RNG."""
        distance, assignment = self._levels()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return RQVAEModel(in_dim, [int(h) for h in self.hidden], self.latent_dim, self.n_levels,
                              self.codebook_size, distance, assignment,
                              detach_residuals=bool(self.detach_residuals))

    @property
    def rq_weight(self) -> float:
        """The weight of the summed per-level quantisation terms: 1, or 1 / levels with ``level_mean``."""
        return 1.0 / self.n_levels if self.level_mean else 1.0

    @torch.no_grad()
    def _evaluate(self, model: RQVAEModel, x: torch.Tensor) -> dict[str, Any]:
        """Codes, last-level costs and losses of all items under the current model (eval mode: nearest codes)."""
        model.eval()
        out = model(x)
        recon = (out.reconstruction - x).pow(2).mean()
        costs = model.quantizer.distances(out.residuals[-1], self.n_levels - 1)
        model.train()
        return {"codes": out.codes, "last_costs": costs, "recon": recon,
                "rq": self.rq_weight * (out.codebook_loss + self.beta * out.commitment_loss)}

    def fit(self, item_vectors: np.ndarray, dataset: Any = None) -> RQVAE:
        start = time.perf_counter()
        distance, assignment = self._levels()  # bad options fail before any work
        vectors = item_matrix(item_vectors, "rqvae")
        device = torch.device(self.device)
        x, mean, scale = standardise(torch.from_numpy(vectors).to(device))
        levels, size = self.n_levels, self.codebook_size

        model = self._build(x.shape[1]).to(device)
        cpu_gen = torch.Generator().manual_seed(self.seed)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        with torch.no_grad():
            latent = model.encoder(x)
        model.quantizer.init_codebooks(
            latent, lambda residual, k, level: kmeans(residual, k, seed=self.seed + level, max_iter=20), cpu_gen)
        initial = self._evaluate(model, x)
        training = train_quantizer(
            model, x, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            beta=self.beta, rq_weight=self.rq_weight, restart_every=self.restart_every, generator=gen, name="rqvae",
            quiet=self.quiet)
        final = self._evaluate(model, x)

        codes = final["codes"].cpu().numpy().astype(np.int64)
        self.model_ = model.cpu()  # frees the GPU for the next stage
        self.input_mean_ = mean.cpu().numpy()
        self.input_scale_ = scale.cpu().numpy()
        self.codes_ = codes
        self.codebook_sizes = [int(size)] * levels
        self.last_costs_ = final["last_costs"].float().cpu().numpy()
        losses = training.last_losses()
        self.fit_info_ = {
            "epochs": int(self.epochs),
            "steps": training.steps,
            "cuda_graph": training.cuda_graph,
            "recon_loss_init": float(initial["recon"]),
            "recon_loss_final": float(final["recon"]),
            "rq_loss_final": float(final["rq"]),
            "last_epoch_losses": {name: losses[name] for name in ("recon", "codebook", "commitment")},
            "distance": distance,
            "assignment": assignment,
            "codebook_usage": [float(len(np.unique(codes[:, level]))) / size for level in range(levels)],
            "codes_restarted": training.codes_restarted,
            "distinct_sids": len(np.unique(codes, axis=0)),
            "seconds": round(time.perf_counter() - start, 3),
            "device": str(device),
        }
        log.info("rqvae: %s", self.fit_info_)
        return self

    def get_state(self) -> dict[str, np.ndarray]:
        """The fitted model's weights (``model.*``) and the input normalisation (``input_mean``, ``input_scale``),
        as arrays a stage cache can store; ``set_state`` on a tokenizer with the same parameters restores them."""
        if not hasattr(self, "model_"):
            raise ConfigError(f"{self.who}: get_state() needs a fitted tokenizer; call fit() or set_state() first")
        state = {f"model.{name}": value.detach().cpu().numpy().copy()
                 for name, value in self.model_.state_dict().items()}
        state["input_mean"] = np.asarray(self.input_mean_, dtype=np.float32).copy()
        state["input_scale"] = np.asarray(self.input_scale_, dtype=np.float32).copy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> RQVAE:
        """Restore what ``get_state`` returned (codes are not part of it: ``encode(item_vectors)`` recomputes them)."""
        missing = {"input_mean", "input_scale"} - set(state)
        if missing:
            raise ConfigError(f"{self.who}: set_state needs the arrays input_mean and input_scale (as get_state() "
                              f"returns them), found {sorted(state)}")
        model = self._build(len(state["input_mean"]))
        weights = {name[len("model."):]: torch.from_numpy(np.asarray(value))
                   for name, value in state.items() if name.startswith("model.")}
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise ConfigError(f"{self.who}: the state does not fit this tokenizer's parameters "
                              f"({self.get_params()}); make it with the same parameters. {exc}") from None
        self.model_ = model
        self.input_mean_ = np.asarray(state["input_mean"], dtype=np.float32)
        self.input_scale_ = np.asarray(state["input_scale"], dtype=np.float32)
        self.codebook_sizes = [int(self.codebook_size)] * self.n_levels
        return self

    @torch.no_grad()
    def encode(self, item_vectors: np.ndarray | None = None) -> np.ndarray:
        """The learned codes ``codes_``; or, given ``item_vectors``, their codes under the fitted model
        (normalised as in ``fit``, nearest code at every level)."""
        if item_vectors is None:
            return self.codes_
        if not hasattr(self, "model_"):
            raise ConfigError(f"{self.who}: encode(item_vectors) needs a fitted tokenizer; call fit() or set_state() first")
        vectors = item_matrix(item_vectors, self.who)
        if vectors.shape[1] != len(self.input_mean_):
            raise ConfigError(f"{self.who}: encode expected vectors of dimension {len(self.input_mean_)} (as fitted), "
                              f"found {vectors.shape[1]}")
        device = torch.device(self.device)
        model = self.model_.to(device).eval()
        try:
            x = torch.from_numpy(vectors).to(device)
            x = (x - torch.from_numpy(self.input_mean_).to(device)) / torch.from_numpy(self.input_scale_).to(device)
            codes = model.quantizer(model.encoder(x), balanced=False).codes.cpu().numpy().astype(np.int64)
        finally:
            self.model_ = model.cpu().train()
        return codes
