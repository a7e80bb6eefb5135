"""One trainer for every neural method: AdamW, warm-up + constant or cosine schedule, bf16 autocast on
CUDA, validation after every ``eval_every`` epochs, early stopping with patience and best-checkpoint restore;
optionally the loss step through ``torch.compile`` (``run --compile``)."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from bench.core.device import seed_everything
from bench.core.errors import ConfigError, SidbenchError
from bench.core.method import FitContext
from bench.core.options import check_positive, parse_value
from bench.core.progress import progress

log = logging.getLogger(__name__)


# ``run --compile`` values that are inductor modes rather than backends; "reduce-overhead" replays CUDA graphs,
# 2.0 to 2.5x faster per generator step on an H100 (reports/speed/), though a whole resid run was slower (FAMAE)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    """Optimisation options shared by every neural method (methods' configs extend this)."""

    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" or "cosine" (after warm-up)
    warmup_steps: int = 0
    patience: int = 10  # validations without a better score before stopping
    eval_every: int = 1  # validate every this many epochs, and after the last one
    grad_clip: float = 1.0

    def __post_init__(self) -> None:  # bad values fail when the config is built, before anything trains
        check_positive(vars(self), "", names=("epochs", "batch_size", "eval_every"))
        parse_value(self.schedule, "constant", "schedule", choices=("constant", "cosine"))


class Trainer:
    """Trains ``model`` on in-memory example tensors with ``loss_fn(batch) -> loss``."""

    def __init__(self, cfg: TrainConfig, ctx: FitContext, stage: str = "train"):
        if cfg.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', found {cfg.schedule!r}")
        if cfg.eval_every < 1:
            raise ConfigError(f"eval_every must be >= 1, found {cfg.eval_every}")
        self.cfg = cfg
        self.ctx = ctx
        self.stage = stage

    def _lr_factor(self, step: int, total: int) -> float:
        if step < self.cfg.warmup_steps:
            return (step + 1) / self.cfg.warmup_steps
        if self.cfg.schedule == "cosine":
            progress_ = (step - self.cfg.warmup_steps) / max(1, total - self.cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))
        return 1.0

    def fit(
        self,
        model: nn.Module,
        examples: Sequence[torch.Tensor],
        loss_fn: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
        validate: Callable[[], dict[str, float]] | None = None,
        select: str | None = None,
    ) -> nn.Module:
        """Run epochs over shuffled batches of ``examples``; with ``validate``, keep the best epoch by ``select``."""
        cfg, ctx = self.cfg, self.ctx
        device = ctx.device
        seed_everything(ctx.seed)  # each training stage is reproducible on its own
        model.to(device)
        examples = [t.to(device) for t in examples]
        n = len(examples[0])
        if n == 0:
            raise SidbenchError(f"{self.stage}: no training examples (the training sequences are too short)")
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      fused=device.type == "cuda")
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: self._lr_factor(s, total))
        if validate is not None:
            select = select or ctx.valid.split.protocol.select_metric
        best, best_epoch, best_state, stale = -math.inf, -1, None, 0
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        if ctx.compile:  # fused kernels for forward and backward; validation still runs the eager model
            how = {"mode": ctx.compile} if ctx.compile in COMPILE_MODES else {"backend": ctx.compile}
            loss_fn = torch.compile(loss_fn, **how)
        train_seconds = 0.0
        for epoch in range(cfg.epochs):
            start = time.perf_counter()
            model.train()
            order = torch.randperm(n, device=device)
            total_loss = torch.zeros((), device=device)
            for i in progress(range(steps_per_epoch), desc=f"{self.stage} epoch {epoch}", quiet=ctx.quiet):
                batch = tuple(t[order[i * cfg.batch_size:(i + 1) * cfg.batch_size]] for t in examples)
                with autocast:
                    loss = loss_fn(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                total_loss += loss.detach()
            mean_loss = float(total_loss) / steps_per_epoch
            if not math.isfinite(mean_loss):
                raise SidbenchError(f"{self.stage}: the loss became {mean_loss} at epoch {epoch}; lower the learning rate")
            train_seconds += time.perf_counter() - start
            point = {"stage": self.stage, "epoch": epoch, "loss": round(mean_loss, 5),
                     "train_seconds": round(time.perf_counter() - start, 3)}
            validating = validate is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1)
            if validating:
                model.eval()
                with torch.no_grad():
                    metrics = validate()
                point.update(metrics)
                if metrics[select] > best:
                    best, best_epoch, stale = metrics[select], epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
            ctx.curve.append(point)
            log.debug("%s", point)
            if validating and stale >= cfg.patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        ctx.extra[self.stage] = {
            "epochs_run": epoch + 1, "best_epoch": best_epoch,
            **({f"best_valid_{select}": best if best_state else None} if select else {}),
            "seconds_per_epoch": round(train_seconds / (epoch + 1), 3), "steps_per_epoch": steps_per_epoch,
            "examples": n,
        }
        return model
