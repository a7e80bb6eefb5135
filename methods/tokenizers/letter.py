"""LETTER (Wang et al., CIKM 2024): an RQ-VAE tokenizer with collaborative and diversity regularisation.

As its released code trains it (``RQ-VAE/`` of github HonghuiBao2000/LETTER):

- an MLP autoencoder ``in -> 2048 -> 1024 -> 512 -> 256 -> 128 -> 64 -> 32``
  (ReLU between layers, Xavier-normal weights, zero biases; decoder
  mirrored) around 4 levels x 256 codes x 32-d, squared-L2 nearest code on
  every level but the last, which is assigned by Sinkhorn (epsilon 0.003,
  50 iterations) within each training batch;
- codebooks initialised by size-constrained k-means (sizes in ``[min(n /
  512, 50), 4x that]``) of all items' encoder outputs, level by level;
- loss = reconstruction MSE + ``quant_weight`` * mean over levels of
  (codebook + ``mu`` * commitment + ``beta`` * diversity) + ``alpha`` *
  collaborative. Collaborative: the quantised vector (straight-through)
  dotted with the 32-d collaborative vectors of the batch's items,
  cross-entropy with the diagonal as labels (in-batch negatives,
  temperature 1). Diversity: at the start of every epoch each level's codes
  are clustered into ``n_clusters`` (size-constrained k-means, sizes in
  [10, 60]); each item's chosen codeword is pulled towards a random other
  code of its code's cluster by a cross-entropy over that level's codes
  (self masked), which moves the codebooks only. As in the released code,
  levels after the first see their residual without gradient;
- AdamW lr 1e-3, weight decay 1e-4, constant rate, batch 1024; every
  ``eval_every`` epochs the collision rate of all items' nearest codes is
  measured and the model with the lowest is kept (``select="last"``: the
  final one);
- then up to ``collision_rounds`` rounds re-assign the last level of each
  group of items sharing a SID by Sinkhorn over that group's distances. A few
  duplicates can remain: the shared collision post-step resolves them (the
  ``letter`` method's default is the Hungarian re-assignment, which keeps 4
  levels).

Its ``views``: the method's text vectors (``main``) and ``collab``, the item
table of a SASRec trained on the training split (``sasrec-emb`` at 32-d),
whose dimension must equal ``latent_dim``.

Speed: the released code re-clusters on the CPU (scikit-style constrained
k-means, 10 starts) before every epoch, which takes days on large catalogues.
Here everything stays on the device: the per-epoch clustering is
``balanced_kmeans`` (prices instead of min-cost flow, all levels and starts
batched), the diversity positives are drawn from tables refreshed in place,
and on a GPU both the training step and the re-clustering are replayed as
CUDA graphs. The fit records how often a cluster missed its size bounds.

Ours, where the code leaves a choice: inputs centred and divided by their
overall RMS (as ``rqvae``); epochs cut into equal-size batches; a random
positive is drawn once per item and epoch.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from bench.core.options import check_numbers, check_positive
from bench.sid.quantize import (
    LOSS_NAMES,
    QuantizerOutput,
    sinkhorn_codes,
    standardise,
    train_quantizer,
)
from bench.sid.tokenizer import ItemViews
from methods.tokenizers.clustering import balanced_kmeans, item_matrix, kmeans
from methods.tokenizers.rqvae import RQVAE, RQVAEModel

log = logging.getLogger(__name__)

SELECT = ("collision", "last")
STARTS = 10  # k-means starts per clustering, as the released code's n_init


def _xavier(model: nn.Module) -> nn.Module:
    """The released code's initialisation: Xavier-normal weights, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def collision_rate(codes: np.ndarray) -> float:
    """The share of items whose SID another item also has, beyond the first (LETTER's measure)."""
    return float(len(codes) - len(np.unique(codes, axis=0))) / max(len(codes), 1)


class DiversityTargets:
    """Each level's codes clustered into groups, and tables to draw, for an item's code, another code of its group.

    ``refresh`` re-clusters the codebooks ``[L, K, d]`` and rewrites the
    tables in place (fixed shapes, no synchronisation: a CUDA graph can
    replay it); ``loss`` is LETTER's diversity term for one level.
    """

    def __init__(self, levels: int, size: int, clusters: int, n_items: int, device: torch.device):
        self.levels, self.size, self.clusters = levels, size, clusters
        # the released code's bounds: at least min(K / (2C), 10) codes per cluster, at most 6C
        self.size_min = min(size // (2 * clusters), 10)
        self.size_max = max(clusters * 6, math.ceil(size / clusters))
        self.cluster_of = torch.zeros(levels, size, dtype=torch.long, device=device)
        self.count = torch.zeros(levels, clusters, dtype=torch.long, device=device)
        self.position = torch.zeros(levels, size, dtype=torch.long, device=device)
        self.members = torch.zeros(levels, clusters, size, dtype=torch.long, device=device)
        self.starts = torch.zeros(levels * STARTS, size, device=device)  # each start's random initial centres
        self.draws = torch.zeros(n_items, levels, device=device)  # each item's uniform draw per level, this epoch
        self.out_of_bounds = torch.zeros((), dtype=torch.long, device=device)  # clusters that missed their bounds
        self.codes = torch.arange(size, device=device).repeat(levels)

    def redraw(self, generator: torch.Generator) -> None:
        """New random starts and positives for the next epoch (outside any CUDA graph)."""
        self.starts.copy_(torch.rand(self.starts.shape, generator=generator, device=self.starts.device))
        self.draws.copy_(torch.rand(self.draws.shape, generator=generator, device=self.draws.device))

    @torch.no_grad()
    def refresh(self, codebooks: torch.Tensor) -> None:
        _, labels, counts = balanced_kmeans(codebooks, self.clusters, self.size_min, self.size_max, self.starts)
        counts = counts.long()
        self.out_of_bounds += ((counts < self.size_min) | (counts > self.size_max)).sum()
        one_hot = (labels[..., None] == torch.arange(self.clusters, device=labels.device)).long()  # [L, K, C]
        self.cluster_of.copy_(labels)
        self.count.copy_(counts)
        self.position.copy_((one_hot.cumsum(1) * one_hot).sum(2) - 1)
        level = torch.arange(self.levels, device=labels.device)[:, None]
        flat = ((level * self.clusters + labels) * self.size + self.position).reshape(-1)
        self.members.view(-1).scatter_(0, flat, self.codes)

    def loss(self, level: int, codes: torch.Tensor, chosen: torch.Tensor, codebook: torch.Tensor,
             batch_index: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``chosen @ codebook.T`` (own code masked) towards a random other code of the
        same cluster; items whose cluster has no other code are left out."""
        group = self.cluster_of[level][codes]
        size = self.count[level][group]
        pick = (self.draws[batch_index, level] * (size - 1).clamp_min(0)).long()
        pick = pick + (pick >= self.position[level][codes]).long()
        positive = self.members[level][group, pick.clamp_max(self.size - 1)]
        logits = (chosen @ codebook.T).scatter(1, codes[:, None], -1e12)
        valid = (size >= 2).float()
        return (F.cross_entropy(logits, positive, reduction="none") * valid).sum() / valid.sum().clamp_min(1)


class Letter(RQVAE):
    """LETTER: RQ-VAE (4 x 256 x 32, Sinkhorn last level) + collaborative + diversity regularisation."""

    views = {"collab": "sasrec-emb:d_model=32"}
    smoke_params = {"epochs": 12, "hidden": (64, 32), "eval_every": 4}  # the smoke budget (tests)
    small_params = {"epochs": 100, "hidden": (256, 128, 64), "eval_every": 50}  # small datasets on a CPU
    who = "letter"

    def __init__(self, latent_dim: int = 32, hidden: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64),
                 n_levels: int = 4, codebook_size: int = 256, alpha: float = 0.1, beta: float = 1e-4,
                 mu: float = 0.25, quant_weight: float = 1.0, n_clusters: int = 10, epochs: int = 10000,
                 batch_size: int = 1024, lr: float = 1e-3, weight_decay: float = 1e-4, eval_every: int = 2000,
                 select: str = "collision", sinkhorn_epsilon: float = 0.003, sinkhorn_iterations: int = 50,
                 collision_rounds: int = 20, seed: int = 0):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.alpha = alpha
        self.beta = beta
        self.mu = mu
        self.quant_weight = quant_weight
        self.n_clusters = n_clusters
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.eval_every = eval_every
        self.select = select
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.collision_rounds = collision_rounds
        self.seed = seed

    @classmethod
    def check_params(cls, params: dict[str, Any], views: dict[str, tuple[str, dict[str, Any]]]) -> None:
        """Option values the types allow but LETTER does not, and a collaborative view of the wrong width
        (when its encoder names its width as ``d_model``); the runner calls it before any training."""
        check_positive(params, "letter ", names=("latent_dim", "n_levels", "codebook_size", "epochs", "batch_size",
                                                 "eval_every", "sinkhorn_iterations"))
        check_numbers(params, "letter ", names=("lr", "sinkhorn_epsilon"))
        check_numbers(params, "letter ", names=("alpha", "beta", "mu", "quant_weight", "weight_decay",
                                                "collision_rounds"), inclusive=True)
        if params["select"] not in SELECT:
            raise ConfigError(f"letter select: expected one of {', '.join(SELECT)}, found {params['select']!r}")
        if not 2 <= params["n_clusters"] <= params["codebook_size"]:
            raise ConfigError(f"letter n_clusters: expected 2 to codebook_size ({params['codebook_size']}), "
                              f"found {params['n_clusters']}")
        encoder, options = views.get("collab", ("", {}))
        width = options.get("d_model")
        if width is not None and int(width) != int(params["latent_dim"]):
            raise ConfigError(f"letter: the collaborative view ({encoder}) has d_model={width} but latent_dim is "
                              f"{params['latent_dim']}; they must match (LETTER dots the quantised vector with it): "
                              f"set view_collab={encoder}:d_model={params['latent_dim']}")

    def _build(self, in_dim: int) -> RQVAEModel:
        """A fresh model, initialised from ``seed`` without touching the global RNG."""
        assignment = ["nearest"] * (self.n_levels - 1) + ["sinkhorn"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return _xavier(RQVAEModel(
                in_dim, [int(h) for h in self.hidden], self.latent_dim, self.n_levels, self.codebook_size,
                ["l2"] * self.n_levels, assignment, sinkhorn_epsilon=self.sinkhorn_epsilon,
                sinkhorn_iterations=self.sinkhorn_iterations, detach_residuals=True))

    def _init_cluster(self, device: torch.device, generator: torch.Generator):
        """LETTER's codebook initialisation: size-constrained k-means of a level's residuals (numpy in and out)."""
        def cluster(residual: np.ndarray, k: int, level: int) -> tuple[np.ndarray, np.ndarray]:
            n = len(residual)
            size_min = min(n // (2 * k), 50)
            if size_min < 1:  # fewer than 2 items per code: plain k-means (it keeps every distinct point)
                return kmeans(residual, k, seed=self.seed + level, max_iter=10)
            starts = torch.rand(STARTS, n, generator=generator).to(device)
            size_max = max(4 * size_min, math.ceil(n / k))
            centres, labels, counts = balanced_kmeans(torch.from_numpy(residual).to(device)[None], k, size_min,
                                                      size_max, starts)
            self.init_out_of_bounds_.append(int(((counts < size_min) | (counts > size_max)).sum()))
            return centres[0].cpu().numpy(), labels[0].cpu().numpy()
        return cluster

    @torch.no_grad()
    def _nearest(self, model: RQVAEModel, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """All items' nearest codes, last-level distances and reconstruction loss (eval mode)."""
        model.eval()
        out = model(x)
        costs = model.quantizer.distances(out.residuals[-1], self.n_levels - 1)
        recon = (out.reconstruction - x).pow(2).mean()
        model.train()
        return out.codes.cpu().numpy().astype(np.int64), costs, recon

    def _rounds(self, codes: np.ndarray, costs: torch.Tensor) -> tuple[np.ndarray, list[float]]:
        """The released code's post-hoc rounds: each group of items sharing a SID gets its last level
        re-assigned by Sinkhorn over the group's distances; returns the codes and the rate after each round."""
        codes = codes.copy()
        costs = costs.double().cpu()
        rates = [collision_rate(codes)]
        for _ in range(self.collision_rounds):
            _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
            inverse = inverse.reshape(-1)
            colliding = np.flatnonzero(counts[inverse] > 1)
            if not len(colliding):
                break
            before = codes[:, -1].copy()
            order = colliding[np.argsort(inverse[colliding], kind="stable")]
            groups = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
            for group in groups:
                codes[group, -1] = sinkhorn_codes(costs[group], self.sinkhorn_epsilon,
                                                  self.sinkhorn_iterations).numpy()
            rates.append(collision_rate(codes))
            if np.array_equal(before, codes[:, -1]):  # deterministic: later rounds would repeat this one
                break
        return codes, rates

    def fit(self, item_vectors: np.ndarray, dataset: Any = None, views: ItemViews | None = None) -> Letter:
        start = time.perf_counter()
        params = self.get_params()
        collab_spec = self.views["collab"].partition(":")
        self.check_params(params, {"collab": (collab_spec[0], {})})
        vectors = item_matrix(item_vectors, self.who)
        if views is None or "collab" not in views.vectors:
            raise ConfigError("letter reads a collaborative view (views.vectors['collab'], e.g. sasrec-emb:d_model=32); "
                              "run it through a SID method, which encodes it from view_collab")
        collab = item_matrix(views.vectors["collab"], "letter's collaborative view")
        if collab.shape != (len(vectors), self.latent_dim):
            raise ConfigError(f"letter: the collaborative view must be [n_items={len(vectors)}, latent_dim="
                              f"{self.latent_dim}], found {list(collab.shape)}; set view_collab's width to "
                              f"latent_dim (e.g. sasrec-emb:d_model={self.latent_dim})")
        device = torch.device(self.device)
        x, mean, scale = standardise(torch.from_numpy(vectors).to(device))
        collab_t = torch.from_numpy(collab).to(device)
        n, levels, size = len(x), self.n_levels, self.codebook_size

        model = self._build(x.shape[1]).to(device)
        cpu_gen = torch.Generator().manual_seed(self.seed)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        with torch.no_grad():
            latent = model.encoder(x)
        self.init_out_of_bounds_: list[int] = []  # per level: clusters of the initial k-means outside their bounds
        model.quantizer.init_codebooks(latent, self._init_cluster(device, cpu_gen), cpu_gen)
        init_seconds = time.perf_counter() - start
        _, _, recon_init = self._nearest(model, x)

        targets = DiversityTargets(levels, size, self.n_clusters, n, device)
        batch = min(self.batch_size, n)
        steps = -(-n // batch)
        labels = torch.arange(batch, device=device)
        terms = torch.zeros(2, device=device)  # this epoch's mean collaborative and diversity (mean over levels) loss
        term_history = torch.zeros(self.epochs, 2, device=device)
        codebooks = model.quantizer.codebooks

        def extra_loss(batch_index: torch.Tensor, xb: torch.Tensor, out: QuantizerOutput) -> torch.Tensor:
            collaborative = F.cross_entropy(out.quantised @ collab_t[batch_index].T, labels)
            diversity = sum(targets.loss(level, out.codes[:, level], out.codewords[level], codebooks[level],
                                         batch_index) for level in range(levels)) / levels
            with torch.no_grad():
                terms.add_(torch.stack([collaborative, diversity]) / steps)
            return self.alpha * collaborative + self.quant_weight * self.beta * diversity

        capture = device.type == "cuda"
        graph: list[torch.cuda.CUDAGraph] = []
        stacked = torch.stack(list(codebooks)).detach().clone()  # the re-clustering's input, fixed for the graph
        evaluations: list[dict[str, float]] = []
        best: dict[str, Any] = {}

        def recluster() -> None:
            with torch.no_grad():
                stacked.copy_(torch.stack(list(codebooks)))
            if not capture:
                targets.refresh(stacked)
            elif graph:
                graph[0].replay()
            else:  # warm up on a side stream, then capture once; later epochs replay
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    targets.refresh(stacked)
                torch.cuda.current_stream(device).wait_stream(side)
                graph.append(torch.cuda.CUDAGraph())
                with torch.cuda.graph(graph[0]):
                    targets.refresh(stacked)

        def evaluate(epoch: int) -> None:
            codes, _, _ = self._nearest(model, x)
            rate = collision_rate(codes)
            evaluations.append({"epoch": epoch, "collision_rate": round(rate, 6)})
            if self.select == "last" or not best or rate < best["rate"]:
                best.update(rate=rate, epoch=epoch,
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})

        def on_epoch(epoch: int) -> None:
            if epoch > 0:
                term_history[epoch - 1].copy_(terms)
                terms.zero_()
                if epoch % self.eval_every == 0:
                    evaluate(epoch)
                if (epoch + 1) % max(1, self.epochs // 10) == 0:
                    log.info("letter epoch %d/%d (%.0f s)", epoch + 1, self.epochs,
                             time.perf_counter() - start)
            targets.redraw(gen)
            recluster()

        training = train_quantizer(
            model, x, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            beta=self.mu, rq_weight=self.quant_weight / levels, restart_every=0, generator=gen,
            extra_loss=extra_loss, on_epoch=on_epoch, name="letter", quiet=self.quiet)
        term_history[self.epochs - 1].copy_(terms)
        train_seconds = time.perf_counter() - start - init_seconds
        evaluate(self.epochs)
        if best["epoch"] != self.epochs:
            model.load_state_dict(best["state"])
        nearest, costs, recon_final = self._nearest(model, x)
        codes, rates = self._rounds(nearest, costs)

        self.model_ = model.cpu()
        self.input_mean_ = mean.cpu().numpy()
        self.input_scale_ = scale.cpu().numpy()
        self.codes_ = codes
        self.codebook_sizes = [int(size)] * levels
        self.last_costs_ = costs.float().cpu().numpy()
        self.fit_info_ = self._facts(training, term_history.cpu().numpy(), evaluations, best["epoch"], rates,
                                     nearest, codes, float(recon_init), float(recon_final),
                                     int(targets.out_of_bounds), graph)
        self.fit_info_.update(init_seconds=round(init_seconds, 3), train_seconds=round(train_seconds, 3),
                              seconds=round(time.perf_counter() - start, 3), device=str(device))
        log.info("letter: %s", self.fit_info_)
        return self

    def _facts(self, training: Any, term_history: np.ndarray, evaluations: list[dict[str, float]], selected: int,
               rates: list[float], nearest: np.ndarray, codes: np.ndarray, recon_init: float, recon_final: float,
               out_of_bounds: int, graph: list[Any]) -> dict[str, Any]:
        """The record's LETTER facts: collision rate per evaluation and per post-hoc round, codebook usage per
        level, and each loss term's share of the last epoch's loss."""
        levels = self.n_levels
        last = dict(zip(LOSS_NAMES, training.epoch_losses[-1].tolist()))
        collaborative, diversity = term_history[-1].tolist()
        weighted = {
            "recon": last["recon"],
            "codebook": self.quant_weight / levels * last["codebook"],
            "commitment": self.quant_weight / levels * self.mu * last["commitment"],
            "collaborative": self.alpha * collaborative,
            "diversity": self.quant_weight * self.beta * diversity,
        }
        total = sum(weighted.values()) or 1.0
        return {
            "epochs": int(self.epochs),
            "steps": training.steps,
            "cuda_graph": training.cuda_graph,
            "recluster_cuda_graph": bool(graph),
            "recon_loss_init": recon_init,
            "recon_loss_final": recon_final,
            "last_epoch_losses": {"recon": last["recon"], "codebook": last["codebook"],
                                  "commitment": last["commitment"], "collaborative": collaborative,
                                  "diversity": diversity},
            "loss_shares": {name: round(value / total, 6) for name, value in weighted.items()},
            "collision_rate_evaluations": evaluations,
            "selected_epoch": selected,
            "collision_rate_rounds": [round(r, 6) for r in rates],
            "items_moved_by_rounds": int((nearest[:, -1] != codes[:, -1]).sum()),
            "codebook_usage": [float(len(np.unique(codes[:, level]))) / self.codebook_size for level in range(levels)],
            "distinct_sids": len(np.unique(codes, axis=0)),
            "diversity_clusters_out_of_bounds": out_of_bounds / max(1, self.epochs * levels * self.n_clusters),
            "init_clusters_out_of_bounds": list(self.init_out_of_bounds_),
        }
