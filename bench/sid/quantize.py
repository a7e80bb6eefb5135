"""One residual quantiser and one loop that trains it, shared by every method with learned codebooks.

``ResidualQuantizer`` holds ``n_levels`` codebooks. Level ``l`` gives each
vector the code of its residual (what levels ``< l`` left) under that level's
distance (``"l2"``: squared Euclidean; ``"cosine"``: the highest cosine
similarity, i.e. the lowest ``1 - cos``) and assignment (``"nearest"``, or
``"sinkhorn"``: LETTER's balanced assignment over the batch, in training
only); the residual then subtracts the chosen codeword. The output carries a
straight-through quantised vector, the codes, each level's input residual
and the loss terms, so callers weight them. ``soft_assign`` gives each
level's distribution over codes (ETEGRec's alignment loss).

``train_quantizer`` is TIGER's RQ-VAE loop (reconstruction + codebook +
``beta`` * commitment, dead-code restarts) with an ``extra_loss`` hook for
what LETTER, ETEGRec and the unified model add. All data stays on the
device, batches have one fixed size, and on a GPU one captured CUDA graph
replays the training step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from bench.core.progress import progress

log = logging.getLogger(__name__)

DISTANCES = ("l2", "cosine")
ASSIGNMENTS = ("nearest", "sinkhorn")
LOSS_NAMES = ("recon", "codebook", "commitment", "extra")

# ``cluster(residuals [n, dim], k, level) -> (centres [k' <= k, dim], labels [n])``: codebook initialisation
ClusterFn = Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]


def per_level(value: str | Sequence[str], n_levels: int, allowed: Sequence[str], what: str) -> list[str]:
    """One name per level from ``value``: a single name for every level, or one per level (a sequence or a
    comma-separated string such as ``"cosine,cosine,l2"``); a name outside ``allowed`` is a ``ConfigError``."""
    names = [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s) for s in value]
    if len(names) == 1:
        names = names * n_levels
    if len(names) != n_levels:
        raise ConfigError(f"{what}: expected one name or {n_levels} comma-separated names (one per level), "
                          f"found {len(names)} in {value!r}")
    for name in names:
        if name not in allowed:
            raise ConfigError(f"{what}: expected each level's name to be one of {', '.join(allowed)}, "
                              f"found {name!r} in {value!r}")
    return names


def _sizes(codebook_size: int | Sequence[int], n_levels: int) -> list[int]:
    sizes = [int(codebook_size)] * n_levels if isinstance(codebook_size, (int, np.integer)) else \
        [int(s) for s in codebook_size]
    if len(sizes) != n_levels or min(sizes, default=1) < 1:
        raise ConfigError(f"codebook_size: expected a positive int or {n_levels} positive ints (one per level), "
                          f"found {codebook_size!r}")
    return sizes


def standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``((x - mean) / scale, mean, scale)``: centred columns divided by one overall RMS (so the geometry is
    kept and a reconstruction MSE is scale-free); the quantiser tokenizers' input normalisation."""
    mean = x.mean(0)
    x = x - mean
    scale = x.pow(2).mean().sqrt().clamp_min(1e-12)
    return x / scale, mean, scale


@torch.no_grad()
def sinkhorn_codes(distances: torch.Tensor, epsilon: float = 0.003, iterations: int = 50) -> torch.Tensor:
    """Balanced codes ``[n]`` for a batch's distances ``[n, K]``, as LETTER's code assigns them.

    Distances are centred and scaled to [-1, 1] (over the whole matrix), the
    plan ``exp(-d / epsilon)`` (float64: it reaches e^333) is normalised in
    turn so every item carries ``1/n`` and every code receives ``1/K``, and
    each item takes the code its row of the plan favours most.
    """
    high, low = distances.max(), distances.min()
    middle = (high + low) / 2
    scaled = ((distances - middle) / (high - middle + 1e-5)).double()
    plan = torch.exp(-scaled / epsilon)
    n, k = plan.shape
    plan /= plan.sum()
    for _ in range(iterations):
        plan /= plan.sum(1, keepdim=True) * n
        plan /= plan.sum(0, keepdim=True) * k
    return plan.argmax(1)


@dataclass
class QuantizerOutput:
    """What one pass through the quantiser gives (``reconstruction`` is set by the autoencoder around it)."""

    quantised: torch.Tensor  # [n, dim]: the chosen codewords' sum, straight-through gradient to the input
    codes: torch.Tensor  # [n, L] int64
    residuals: list[torch.Tensor]  # each level's input residual [n, dim]
    codewords: list[torch.Tensor]  # each level's chosen codeword [n, dim], gradient to the codebook only
    codebook_loss: torch.Tensor  # sum over levels of mean |sg[r] - e|^2
    commitment_loss: torch.Tensor  # sum over levels of mean |r - sg[e]|^2
    reconstruction: torch.Tensor | None = None

    def row_losses(self, beta: float) -> torch.Tensor:
        """Per row [n], the sum over levels of |e - sg[r]|^2 + ``beta`` |r - sg[e]|^2, each a mean over the
        dimensions: ``codebook_loss + beta * commitment_loss`` is their mean (for a loss over some rows only)."""
        return sum((e - r.detach()).pow(2).mean(1) + beta * (r - e.detach()).pow(2).mean(1)
                   for r, e in zip(self.residuals, self.codewords))


class ResidualQuantizer(nn.Module):
    """``n_levels`` codebooks of ``codebook_size`` x ``dim``, a distance and an assignment per level."""

    def __init__(self, n_levels: int, codebook_size: int | Sequence[int], dim: int,
                 distance: str | Sequence[str] = "l2", assignment: str | Sequence[str] = "nearest",
                 sinkhorn_epsilon: float = 0.003, sinkhorn_iterations: int = 50, detach_residuals: bool = False):
        super().__init__()
        # True: levels after the first see their residual without gradient, so only the first level's
        # commitment term reaches the encoder (LETTER's code, whose per-level straight-through makes it so)
        self.detach_residuals = detach_residuals
        self.n_levels = n_levels
        self.codebook_sizes = _sizes(codebook_size, n_levels)
        self.dim = dim
        self.distance = per_level(distance, n_levels, DISTANCES, "distance")
        self.assignment = per_level(assignment, n_levels, ASSIGNMENTS, "assignment")
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.codebooks = nn.ParameterList([nn.Parameter(torch.zeros(size, dim)) for size in self.codebook_sizes])

    def distances(self, residual: torch.Tensor, level: int) -> torch.Tensor:
        """Distances ``[n, K]`` from each residual to each codeword of ``level`` (differentiable in both):
        squared Euclidean (clipped at 0), or ``1 - cosine similarity``."""
        codebook = self.codebooks[level]
        if self.distance[level] == "cosine":
            return 1 - F.normalize(residual, dim=1) @ F.normalize(codebook, dim=1).T
        return (residual.pow(2).sum(1, keepdim=True) - 2 * residual @ codebook.T
                + codebook.pow(2).sum(1)).clamp_min(0)

    def _pick(self, distances: torch.Tensor, level: int, balanced: bool) -> torch.Tensor:
        if balanced and self.assignment[level] == "sinkhorn":
            return sinkhorn_codes(distances, self.sinkhorn_epsilon, self.sinkhorn_iterations)
        return distances.argmin(1)

    def forward(self, latent: torch.Tensor, balanced: bool | None = None) -> QuantizerOutput:
        """Quantise ``latent`` [n, dim] level by level. ``balanced``: use the Sinkhorn levels' balanced
        assignment (default: in training mode only; otherwise every level takes its nearest code)."""
        balanced = self.training if balanced is None else balanced
        residual = latent
        total = torch.zeros_like(latent)
        codes, residuals, codewords = [], [], []
        codebook_loss = latent.new_zeros(())
        commitment_loss = latent.new_zeros(())
        for level, codebook in enumerate(self.codebooks):
            residuals.append(residual)
            with torch.no_grad():
                idx = self._pick(self.distances(residual, level), level, balanced)
            chosen = codebook[idx]
            codebook_loss = codebook_loss + (chosen - residual.detach()).pow(2).mean()
            commitment_loss = commitment_loss + (residual - chosen.detach()).pow(2).mean()
            total = total + chosen.detach()
            residual = (residual - chosen).detach() if self.detach_residuals else residual - chosen.detach()
            codes.append(idx)
            codewords.append(chosen)
        quantised = latent + (total - latent).detach()  # straight-through: a decoder's gradient reaches the input
        return QuantizerOutput(quantised, torch.stack(codes, 1), residuals, codewords, codebook_loss, commitment_loss)

    def soft_assign(self, latent: torch.Tensor, temperature: float = 1.0,
                    balanced: bool | None = None) -> list[torch.Tensor]:
        """Per level, the distribution ``[n, K]`` over codes, ``softmax(-distance / temperature)`` of the
        residual that the hard codes (as ``forward`` picks them) leave; differentiable in latent and codebooks."""
        balanced = self.training if balanced is None else balanced
        residual, probabilities = latent, []
        for level, codebook in enumerate(self.codebooks):
            distances = self.distances(residual, level)
            probabilities.append(torch.softmax(-distances / temperature, dim=1))
            idx = self._pick(distances.detach(), level, balanced)
            residual = residual - codebook[idx].detach()
        return probabilities

    @torch.no_grad()
    def init_codebooks(self, latent: torch.Tensor, cluster: ClusterFn, generator: torch.Generator) -> None:
        """Codebooks from ``cluster`` of the latents, level by level on the residuals that each level leaves.

        A level with fewer centres than codes (fewer distinct residuals) is
        padded with random residuals plus 1e-3 noise, drawn from the CPU
        ``generator``. The next level's residuals subtract each vector's
        centre: the cluster's label, or on a cosine level the centre of
        highest cosine similarity.
        """
        residual = latent.detach().cpu().numpy()
        for level, size in enumerate(self.codebook_sizes):
            centres, labels = cluster(residual, size, level)
            if len(centres) < size:
                extra = torch.randint(len(residual), (size - len(centres),), generator=generator)
                pad = residual[extra.numpy()] + 1e-3 * torch.randn(len(extra), residual.shape[1],
                                                                  generator=generator).numpy()
                centres = np.concatenate([centres, pad.astype(np.float32)])
            codebook = self.codebooks[level]
            codebook.copy_(torch.from_numpy(centres))
            if self.distance[level] == "cosine":
                on_device = torch.from_numpy(residual).to(codebook.device)
                labels = self.distances(on_device, level).argmin(1).cpu().numpy()
            residual = residual - centres[labels]

    @torch.no_grad()
    def restart_dead(self, usage: torch.Tensor, pools: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Re-seed each codeword that ``usage`` [L, max K] counts as unused with a random residual of ``pools``
        [L, batch, dim] (each level's input residuals of a recent batch); returns how many were re-seeded."""
        levels, batch = pools.shape[:2]
        pick = torch.randint(batch, (levels, max(self.codebook_sizes)), device=pools.device, generator=generator)
        restarted = usage.new_zeros(())
        for level, codebook in enumerate(self.codebooks):
            size = len(codebook)
            dead = usage[level, :size] == 0
            codebook.copy_(torch.where(dead[:, None], pools[level][pick[level, :size]], codebook))
            restarted += dead.sum()
        return restarted


@dataclass
class QuantizerTraining:
    """What ``train_quantizer`` did: each epoch's mean losses (columns ``LOSS_NAMES``), steps, CUDA graph, restarts."""

    epoch_losses: np.ndarray  # [epochs, 4] float32
    steps: int
    cuda_graph: bool
    codes_restarted: int

    def last_losses(self) -> dict[str, float]:
        """The last epoch's mean losses by name."""
        row = self.epoch_losses[-1] if len(self.epoch_losses) else np.zeros(len(LOSS_NAMES), dtype=np.float32)
        return {name: float(value) for name, value in zip(LOSS_NAMES, row)}


def train_quantizer(
    model: nn.Module,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    weight_decay: float = 0.0,
    beta: float = 0.25,
    rq_weight: float = 1.0,
    restart_every: int = 1,
    extra_loss: Callable[[torch.Tensor, torch.Tensor, QuantizerOutput], torch.Tensor] | None = None,
    on_epoch: Callable[[int], None] | None = None,
    cuda_graph: bool = True,
    name: str = "quantizer",
    quiet: bool = True,
) -> QuantizerTraining:
    """Train ``model`` on the rows of ``x`` (on its device) with reconstruction MSE + ``rq_weight`` *
    (codebook + ``beta`` * commitment loss, each summed over levels), plus ``extra_loss(batch_index, x_batch,
    output)`` if given (``rq_weight = 1 / n_levels`` averages the levels, as LETTER does).

    ``model(x_batch)`` returns a ``QuantizerOutput`` with ``reconstruction``
    set, and ``model.quantizer`` is its ``ResidualQuantizer``. Each epoch is a
    shuffle (drawn from ``generator``) cut into batches of one size, the last
    one topped up from the epoch's start. Every ``restart_every`` epochs
    (not after the last) codewords unused since the previous restart are
    re-seeded from the last batch's residuals. ``on_epoch(epoch)`` runs before
    each epoch's first batch. AdamW (fused and capturable on a GPU); on a GPU
    epoch 0 runs eagerly and then one captured CUDA graph replays the step:
    ``extra_loss`` then runs as Python only in epoch 0 and the capture, later
    steps replay its kernels, so it must keep fixed shapes, read changing
    inputs from tensors it updates in place, and never synchronise (or pass
    ``cuda_graph=False``).

    Unless ``quiet``, a progress bar over the epochs goes to stderr; it redraws at most every ~1% of the
    epochs and shows the reconstruction loss only where the loop already reads it (every 10%), so it adds
    no GPU synchronisation.
    """
    quantizer: ResidualQuantizer = model.quantizer
    device = x.device
    cuda = device.type == "cuda"
    capture = cuda and cuda_graph
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                                  **({"fused": True, "capturable": True} if cuda else {}))
    n, levels = len(x), quantizer.n_levels
    batch = min(batch_size, n)
    steps = -(-n // batch)
    # the step's inputs and outputs live in fixed tensors, so that on a GPU one captured graph replays it
    batch_index = torch.zeros(batch, dtype=torch.long, device=device)
    usage = torch.zeros(levels, max(quantizer.codebook_sizes), device=device)
    epoch_losses = torch.zeros(len(LOSS_NAMES), device=device)
    history = torch.zeros(epochs, len(LOSS_NAMES), device=device)
    pools = torch.zeros(levels, batch, quantizer.dim, device=device)  # the last batch's residuals, for restarts
    restarted = torch.zeros((), device=device)

    def train_step() -> None:
        xb = x[batch_index]
        out = model(xb)
        recon = (out.reconstruction - xb).pow(2).mean()
        loss = recon + rq_weight * out.codebook_loss + rq_weight * beta * out.commitment_loss
        extra = recon.new_zeros(())
        if extra_loss is not None:
            extra = extra_loss(batch_index, xb, out)
            loss = loss + extra
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            usage.scatter_add_(1, out.codes.T, torch.ones_like(out.codes.T, dtype=usage.dtype))
            epoch_losses.add_(torch.stack([recon, out.codebook_loss, out.commitment_loss, extra]) / steps)
            pools.copy_(torch.stack(out.residuals))

    graph = None
    side_stream = torch.cuda.Stream(device) if capture else None
    epoch_bar = progress(range(epochs), desc=name, quiet=quiet, unit="epoch", miniters=max(1, epochs // 100))
    for epoch in epoch_bar:
        if on_epoch is not None:
            on_epoch(epoch)
        epoch_losses.zero_()
        order = torch.randperm(n, device=device, generator=generator)
        batches = torch.cat([order, order[: steps * batch - n]]).view(steps, batch)  # equal-size batches
        if capture and epoch == 1:  # epoch 0 ran eagerly on a side stream, the warm-up capture needs; capture once
            torch.cuda.current_stream(device).wait_stream(side_stream)
            optimiser.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                train_step()
        for b in range(steps):
            batch_index.copy_(batches[b])
            if graph is not None:
                graph.replay()
            elif capture:
                side_stream.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side_stream):
                    optimiser.zero_grad(set_to_none=True)
                    train_step()
            else:
                optimiser.zero_grad(set_to_none=True)
                train_step()
        if capture and graph is None:
            torch.cuda.current_stream(device).wait_stream(side_stream)
        history[epoch].copy_(epoch_losses)
        last_epoch = epoch == epochs - 1
        if restart_every > 0 and (epoch + 1) % restart_every == 0 and not last_epoch:
            restarted += quantizer.restart_dead(usage, pools, generator)
            usage.zero_()
        if (epoch + 1) % max(1, epochs // 10) == 0:
            recon = float(epoch_losses[0])  # the loop's one synchronisation, every 10% of the epochs
            epoch_bar.set_postfix(recon=f"{recon:.4f}", refresh=False)
            log.log(logging.INFO if quiet else logging.DEBUG,  # the bar shows it: no line under it
                    "%s epoch %d/%d: recon %.4f", name, epoch + 1, epochs, recon)
    return QuantizerTraining(history.cpu().numpy(), epochs * steps, graph is not None, int(restarted))
