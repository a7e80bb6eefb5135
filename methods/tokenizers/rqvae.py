"""TIGER's RQ-VAE tokenizer: an MLP autoencoder whose latent is quantised by residual codebooks.

Encoder ``in -> 512 -> 256 -> 128 -> 32`` (ReLU), mirror decoder; ``n_levels``
codebooks of ``codebook_size x latent_dim``. Level ``l`` picks the codeword
nearest to the residual left by levels ``< l``; the decoder reads the sum of
the chosen codewords (straight-through gradient to the encoder). Loss:
reconstruction MSE + per level codebook loss ``|sg[r] - e|^2`` + ``beta`` *
commitment ``|r - sg[e]|^2``. Codebooks start from k-means of all items'
initial latents (level by level, on the residuals), and codewords unused for
``restart_every`` epochs are re-seeded from random residuals of the last
batch, which keeps usage near 100% per level.

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


def _nearest(residual: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances ``[n, K]`` from each residual to each codeword, and the nearest codeword's index."""
    d2 = (residual.pow(2).sum(1, keepdim=True) - 2 * residual @ codebook.T + codebook.pow(2).sum(1)).clamp_min(0)
    return d2, d2.argmin(1)


class RQVAEModel(nn.Module):
    """The autoencoder and its residual codebooks."""

    def __init__(self, in_dim: int, hidden: list[int], latent_dim: int, n_levels: int, codebook_size: int):
        super().__init__()
        self.encoder = _mlp([in_dim, *hidden, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden), in_dim])
        self.codebooks = nn.Parameter(torch.zeros(n_levels, codebook_size, latent_dim))

    def quantise(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Straight-through quantised latent, codes ``[n, L]``, the summed RQ loss terms, and each level's input residual."""
        residual = latent
        total = torch.zeros_like(latent)
        codes, inputs = [], []
        codebook_loss = latent.new_zeros(())
        commit_loss = latent.new_zeros(())
        for codebook in self.codebooks:
            inputs.append(residual)
            _, idx = _nearest(residual.detach(), codebook.detach())
            chosen = codebook[idx]
            codebook_loss = codebook_loss + (chosen - residual.detach()).pow(2).mean()
            commit_loss = commit_loss + (residual - chosen.detach()).pow(2).mean()
            total = total + chosen.detach()
            residual = residual - chosen.detach()
            codes.append(idx)
        quantised = latent + (total - latent).detach()  # straight-through: the decoder's gradient reaches the encoder
        return quantised, torch.stack(codes, 1), torch.stack([codebook_loss, commit_loss]), inputs


class RQVAE(Tokenizer):
    """TIGER's RQ-VAE: MLP autoencoder + residual quantisation (3 x 256 codes of dim 32), trained with restarts."""

    smoke_params = {"epochs": 30}  # the smoke budget (tests): seconds on a CPU

    def __init__(self, latent_dim: int = 32, hidden: tuple[int, ...] = (512, 256, 128), n_levels: int = 3,
                 codebook_size: int = 256, beta: float = 0.25, epochs: int = 6000, batch_size: int = 1024,
                 lr: float = 1e-3, weight_decay: float = 0.0, restart_every: int = 1, seed: int = 0):
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

    @torch.no_grad()
    def _init_codebooks(self, model: RQVAEModel, x: torch.Tensor, generator: torch.Generator) -> None:
        """k-means of all items' latents, level by level on the residuals; short levels padded with jittered residuals."""
        residual = model.encoder(x).cpu().numpy()
        for level in range(self.n_levels):
            centres, labels = kmeans(residual, self.codebook_size, seed=self.seed + level, max_iter=20)
            if len(centres) < self.codebook_size:  # fewer distinct latents than codes
                extra = torch.randint(len(residual), (self.codebook_size - len(centres),), generator=generator)
                pad = residual[extra.numpy()] + 1e-3 * torch.randn(len(extra), residual.shape[1],
                                                                  generator=generator).numpy()
                centres = np.concatenate([centres, pad.astype(np.float32)])
            model.codebooks[level].copy_(torch.from_numpy(centres))
            residual = residual - centres[labels]

    @torch.no_grad()
    def _evaluate(self, model: RQVAEModel, x: torch.Tensor) -> dict[str, Any]:
        """Codes, last-level costs and losses of all items under the current model (eval mode)."""
        model.eval()
        latent = model.encoder(x)
        quantised, codes, rq_terms, inputs = model.quantise(latent)
        recon = (model.decoder(quantised) - x).pow(2).mean()
        costs, _ = _nearest(inputs[-1], model.codebooks[-1])
        model.train()
        return {"codes": codes, "last_costs": costs, "recon": recon, "rq": rq_terms[0] + self.beta * rq_terms[1]}

    def fit(self, item_vectors: np.ndarray, dataset: Any = None) -> RQVAE:
        start = time.perf_counter()
        vectors = item_matrix(item_vectors, "rqvae")
        device = torch.device(self.device)
        x = torch.from_numpy(vectors).to(device)
        x = x - x.mean(0)
        x = x / x.pow(2).mean().sqrt().clamp_min(1e-12)
        n, levels, size = len(x), self.n_levels, self.codebook_size

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = RQVAEModel(x.shape[1], [int(h) for h in self.hidden], self.latent_dim, levels, size).to(device)
        cpu_gen = torch.Generator().manual_seed(self.seed)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        self._init_codebooks(model, x, cpu_gen)
        initial = self._evaluate(model, x)

        cuda = device.type == "cuda"
        optimiser = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay,
                                      **({"fused": True, "capturable": True} if cuda else {}))
        batch = min(self.batch_size, n)
        steps = -(-n // batch)
        # the step's inputs and outputs live in fixed tensors, so that on a GPU one captured graph replays it
        batch_index = torch.zeros(batch, dtype=torch.long, device=device)
        usage = torch.zeros(levels, size, device=device)
        epoch_losses = torch.zeros(3, device=device)
        pools = torch.zeros(levels, batch, self.latent_dim, device=device)  # last batch's residuals, for restarts
        restarted = torch.zeros((), device=device)

        def train_step() -> None:
            xb = x[batch_index]
            quantised, codes, rq_terms, inputs = model.quantise(model.encoder(xb))
            recon = (model.decoder(quantised) - xb).pow(2).mean()
            (recon + rq_terms[0] + self.beta * rq_terms[1]).backward()
            optimiser.step()
            with torch.no_grad():
                usage.scatter_add_(1, codes.T, torch.ones_like(codes.T, dtype=usage.dtype))
                epoch_losses.add_(torch.stack([recon, rq_terms[0], rq_terms[1]]) / steps)
                pools.copy_(torch.stack(inputs))

        graph = None
        side_stream = torch.cuda.Stream(device) if cuda else None
        for epoch in range(self.epochs):
            epoch_losses.zero_()
            order = torch.randperm(n, device=device, generator=gen)
            batches = torch.cat([order, order[: steps * batch - n]]).view(steps, batch)  # equal-size batches
            if cuda and epoch == 1:  # epoch 0 ran eagerly on a side stream, the warm-up capture needs; capture once
                torch.cuda.current_stream(device).wait_stream(side_stream)
                optimiser.zero_grad(set_to_none=True)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    train_step()
            for b in range(steps):
                batch_index.copy_(batches[b])
                if graph is not None:
                    graph.replay()
                elif cuda:
                    side_stream.wait_stream(torch.cuda.current_stream(device))
                    with torch.cuda.stream(side_stream):
                        optimiser.zero_grad(set_to_none=True)
                        train_step()
                else:
                    optimiser.zero_grad(set_to_none=True)
                    train_step()
            if cuda and graph is None:
                torch.cuda.current_stream(device).wait_stream(side_stream)
            last_epoch = epoch == self.epochs - 1
            if self.restart_every > 0 and (epoch + 1) % self.restart_every == 0 and not last_epoch:
                with torch.no_grad():  # re-seed dead codewords from random residuals of the last batch
                    pick = torch.randint(batch, (levels, size), device=device, generator=gen)
                    dead = usage == 0
                    fresh = torch.gather(pools, 1, pick[..., None].expand(-1, -1, self.latent_dim))
                    model.codebooks.copy_(torch.where(dead[..., None], fresh, model.codebooks))
                    restarted += dead.sum()
                usage.zero_()
            if (epoch + 1) % max(1, self.epochs // 10) == 0:
                log.info("rqvae epoch %d/%d: recon %.4f", epoch + 1, self.epochs, float(epoch_losses[0]))

        final = self._evaluate(model, x)
        codes = final["codes"].cpu().numpy().astype(np.int64)
        self.model_ = model.cpu()  # frees the GPU for the next stage; the codes are all that later stages read
        self.codes_ = codes
        self.codebook_sizes = [int(size)] * levels
        self.last_costs_ = final["last_costs"].float().cpu().numpy()
        self.fit_info_ = {
            "epochs": int(self.epochs),
            "steps": int(self.epochs * steps),
            "cuda_graph": graph is not None,
            "recon_loss_init": float(initial["recon"]),
            "recon_loss_final": float(final["recon"]),
            "rq_loss_final": float(final["rq"]),
            "last_epoch_losses": {"recon": float(epoch_losses[0]), "codebook": float(epoch_losses[1]),
                                  "commitment": float(epoch_losses[2])},
            "codebook_usage": [float(len(np.unique(codes[:, level]))) / size for level in range(levels)],
            "codes_restarted": int(restarted),
            "distinct_sids": len(np.unique(codes, axis=0)),
            "seconds": round(time.perf_counter() - start, 3),
            "device": str(device),
        }
        log.info("rqvae: %s", self.fit_info_)
        return self
