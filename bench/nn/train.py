"""One trainer for every neural method: AdamW, warm-up + constant or cosine schedule, bf16 autocast on
CUDA, validation after every ``eval_every`` epochs, early stopping with patience and best-checkpoint restore;
optionally the loss step through ``torch.compile`` (``run --compile``).

Alternating optimisation (a tokenizer trained with the recommender, ETEGRec-style) is the same loop with
``phases``: each ``Phase`` steps only its own parameters with its own loss and optimiser, the list runs in
order ``cycles`` times, and validation, early stopping and the best checkpoint span all of it. A single
``loss_fn`` is the one-phase case and trains exactly as it always did.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import KW_ONLY, dataclass
from typing import Callable, Iterable, Sequence

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
SCHEDULES = ("constant", "cosine")

LossFn = Callable[[tuple[torch.Tensor, ...]], torch.Tensor]


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
    # no early stop before this many epochs: with min_epochs = epochs a run has a fixed length (its cosine
    # schedule decays to 0 by the last epoch) and keeps its best validated checkpoint
    min_epochs: int = 0
    eval_every: int = 1  # validate every this many epochs, and after the last one
    grad_clip: float = 1.0

    def __post_init__(self) -> None:  # bad values fail when the config is built, before anything trains
        check_positive(vars(self), "", names=("epochs", "batch_size", "eval_every"))
        if self.min_epochs < 0:
            raise ConfigError(f"min_epochs must be >= 0 (0: early stopping may stop at any validation), found "
                              f"{self.min_epochs}")
        parse_value(self.schedule, "constant", "schedule", choices=("constant", "cosine"))


@dataclass
class Phase:
    """One step of alternating optimisation: ``epochs`` epochs of ``loss_fn`` stepping only ``parameters``.

    ``parameters`` is an iterable of the model's parameters, a callable returning them (read once, when
    ``Trainer.fit`` starts), or None for all of them; or optimiser parameter groups (dicts with ``params`` and
    their own ``lr``, e.g. a tokenizer and a generator trained together at two learning rates, ETEGRec's
    ablation without alternation). The model's other parameters are frozen while the phase
    runs. ``None`` options take the ``TrainConfig``'s value; ``warmup_steps`` and the schedule count this
    phase's own steps over all cycles, and ``schedule_steps`` sets the schedule's horizon in those steps
    (default: all the steps the phase can run; more leaves the cosine short of its floor, as when a schedule
    is sized for every epoch of an alternation but steps in only some). ``on_start`` runs before each of the
    phase's runs (one per cycle), ``on_end`` after the run's last epoch, before that epoch's validation (e.g.
    refresh the SIDs after a tokenizer phase); training that stops early skips the ``on_end`` of the run it
    stops in.
    """

    name: str
    parameters: Iterable[nn.Parameter] | Callable[[], Iterable[nn.Parameter]] | None
    loss_fn: LossFn
    epochs: int = 1  # per cycle
    lr: float | None = None
    _: KW_ONLY
    weight_decay: float | None = None
    schedule: str | None = None
    warmup_steps: int | None = None
    grad_clip: float | None = None
    schedule_steps: int | None = None
    on_start: Callable[[], None] | None = None
    on_end: Callable[[], None] | None = None


def lr_factor(step: int, total: int, warmup_steps: int, schedule: str) -> float:
    """The learning-rate multiplier at ``step`` of ``total``: linear warm-up, then constant or cosine decay."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress_ = (step - warmup_steps) / max(1, total - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))
    return 1.0


class _PhaseRun:
    """A phase with what it keeps across cycles: its parameters, optimiser, schedule and counters."""

    def __init__(self, phase: Phase, cfg: TrainConfig, model: nn.Module, steps: int, device: torch.device,
                 compile_how: dict[str, str] | None):
        self.phase = phase
        every = list(model.parameters())
        given = phase.parameters() if callable(phase.parameters) else phase.parameters
        given = None if given is None else list(given)
        groups = [{**g, "params": list(g["params"])} for g in given if isinstance(g, dict)] if given else []
        if groups:
            if len(groups) < len(given):
                raise ConfigError(f"phase {phase.name!r}: give parameters or parameter groups (dicts), not both")
            given = [p for g in groups for p in g["params"]]
        self.params = every if given is None else list(dict.fromkeys(given))  # in order, each once
        if not self.params:
            raise ConfigError(f"phase {phase.name!r} has no parameters to train")
        known = {id(p) for p in every}
        if any(id(p) not in known for p in self.params):
            raise ConfigError(f"phase {phase.name!r} trains parameters that are not the model's; put every module a "
                              "phase trains inside the model given to Trainer.fit, so the best checkpoint holds it")
        mine = {id(p) for p in self.params}
        self.others = [p for p in every if id(p) not in mine]
        self.lr = cfg.lr if phase.lr is None else phase.lr
        weight_decay = cfg.weight_decay if phase.weight_decay is None else phase.weight_decay
        schedule = cfg.schedule if phase.schedule is None else phase.schedule
        warmup = cfg.warmup_steps if phase.warmup_steps is None else phase.warmup_steps
        if schedule not in SCHEDULES:
            raise ConfigError(f"phase {phase.name!r}: schedule must be 'constant' or 'cosine', found {schedule!r}")
        if phase.schedule_steps is not None and phase.schedule_steps < 1:
            raise ConfigError(f"phase {phase.name!r}: schedule_steps must be >= 1 (or None: the phase's own steps), "
                              f"found {phase.schedule_steps}")
        steps = steps if phase.schedule_steps is None else phase.schedule_steps
        self.warmup, self.horizon = warmup, steps
        self.grad_clip = cfg.grad_clip if phase.grad_clip is None else phase.grad_clip
        self.optimizer = torch.optim.AdamW(groups or self.params,
                                           lr=self.lr, weight_decay=weight_decay,
                                           fused=device.type == "cuda")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: lr_factor(s, steps, warmup, schedule))
        self.loss_fn = phase.loss_fn if compile_how is None else torch.compile(phase.loss_fn, **compile_how)
        self.epochs_run, self.seconds = 0, 0.0

    def freeze_others(self) -> list[nn.Parameter]:
        """Stop gradients to the parameters this phase does not step; returns those to thaw afterwards."""
        frozen = [p for p in self.others if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        return frozen


class Trainer:
    """Trains ``model`` on in-memory example tensors with ``loss_fn(batch) -> loss``, or with ``phases``."""

    def __init__(self, cfg: TrainConfig, ctx: FitContext, stage: str = "train"):
        if cfg.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be 'constant' or 'cosine', found {cfg.schedule!r}")
        if cfg.eval_every < 1:
            raise ConfigError(f"eval_every must be >= 1, found {cfg.eval_every}")
        self.cfg = cfg
        self.ctx = ctx
        self.stage = stage

    def fit(
        self,
        model: nn.Module,
        examples: Sequence[torch.Tensor],
        loss_fn: LossFn | None = None,
        validate: Callable[[], dict[str, float]] | None = None,
        select: str | None = None,
        phases: Sequence[Phase] | None = None,
        cycles: int = 1,
    ) -> nn.Module:
        """Run epochs over shuffled batches of ``examples``; with ``validate``, keep the best epoch by ``select``.

        Either ``loss_fn`` (``cfg.epochs`` epochs over all parameters) or ``phases`` (run in order, the list
        ``cycles`` times; one optimiser and schedule per phase, kept across cycles). Epochs are counted over
        all phases: validation every ``eval_every`` of them and after the last, early stopping and the best
        checkpoint as with one loss. With phases, each curve point and ``ctx.extra[stage]`` name the phases.
        """
        cfg, ctx = self.cfg, self.ctx
        phased = phases is not None
        if phased == (loss_fn is not None):
            raise ConfigError(f"{self.stage}: give Trainer.fit either loss_fn or phases, found "
                              f"{'both' if phased else 'neither'}")
        if phased:
            phases = list(phases)
            names = [p.name for p in phases]
            if not phases or len(set(names)) < len(names):
                raise ConfigError(f"{self.stage}: phases must be a non-empty list with distinct names, found {names}")
            if cycles < 1 or any(p.epochs < 0 for p in phases) or not any(p.epochs for p in phases):
                raise ConfigError(f"{self.stage}: need cycles >= 1 and phase epochs >= 0 with some > 0, found "
                                  f"cycles={cycles}, epochs={[p.epochs for p in phases]}")
        elif cycles != 1:
            raise ConfigError(f"{self.stage}: cycles repeat a list of phases; with one loss_fn, set the epochs "
                              f"instead (found cycles={cycles})")
        else:
            phases = [Phase(self.stage, None, loss_fn, cfg.epochs)]
        device = ctx.device
        seed_everything(ctx.seed)  # each training stage is reproducible on its own
        model.to(device)
        examples = [t.to(device) for t in examples]
        n = len(examples[0])
        if n == 0:
            raise SidbenchError(f"{self.stage}: no training examples (the training sequences are too short)")
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        compile_how = None
        if ctx.compile:  # fused kernels for forward and backward; validation still runs the eager model
            compile_how = {"mode": ctx.compile} if ctx.compile in COMPILE_MODES else {"backend": ctx.compile}
        runs = [_PhaseRun(p, cfg, model, steps_per_epoch * p.epochs * cycles, device, compile_how)
                for p in phases if p.epochs]
        total_epochs = sum(run.phase.epochs for run in runs) * cycles
        if total_epochs < 1:
            raise ConfigError(f"{self.stage}: epochs must be >= 1, found {cfg.epochs}")
        if validate is not None:
            select = select or ctx.valid.split.protocol.select_metric
        best, best_epoch, best_state, stale = -math.inf, -1, None, 0
        best_at: dict[str, int | str] = {}
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        epoch, stop = -1, False
        for cycle in range(cycles):
            for run in runs:
                phase = run.phase
                frozen = run.freeze_others()
                try:
                    if phase.on_start is not None:
                        phase.on_start()
                    for phase_epoch in range(phase.epochs):
                        epoch += 1
                        start = time.perf_counter()
                        mean_loss = self._epoch(model, examples, run, epoch, total_epochs, steps_per_epoch, autocast,
                                                 phased)
                        seconds = time.perf_counter() - start
                        run.epochs_run, run.seconds = run.epochs_run + 1, run.seconds + seconds
                        if phase_epoch == phase.epochs - 1 and phase.on_end is not None:
                            phase.on_end()
                        point = {"stage": self.stage, **({"phase": phase.name, "cycle": cycle} if phased else {}),
                                 "epoch": epoch, "loss": round(mean_loss, 5), "train_seconds": round(seconds, 3)}
                        validating = validate is not None and ((epoch + 1) % cfg.eval_every == 0
                                                               or epoch == total_epochs - 1)
                        if validating:
                            model.eval()
                            with torch.no_grad():
                                metrics = validate()
                            point.update(metrics)
                            if metrics[select] > best:
                                best, best_epoch, stale = metrics[select], epoch, 0
                                best_at = {"best_phase": phase.name, "best_cycle": cycle}
                                best_state = copy.deepcopy(model.state_dict())
                            else:
                                stale += 1
                        ctx.curve.append(point)
                        # under --quiet, the validated epochs go to the log (a run in a file shows its progress)
                        log.log(logging.INFO if ctx.quiet and validating else logging.DEBUG, "%s", point)
                        if validating and stale >= cfg.patience and epoch + 1 >= cfg.min_epochs:
                            stop = True
                            break
                finally:
                    for p in frozen:
                        p.requires_grad_(True)
                if stop:
                    break
            if stop:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        train_seconds = sum(run.seconds for run in runs)
        ctx.extra[self.stage] = {
            "epochs_run": epoch + 1, "best_epoch": best_epoch,
            **({f"best_valid_{select}": best if best_state else None} if select else {}),
            "seconds_per_epoch": round(train_seconds / (epoch + 1), 3), "steps_per_epoch": steps_per_epoch,
            "examples": n,
        }
        if phased:
            ctx.extra[self.stage].update(cycles=cycles, cycles_run=cycle + 1, **best_at, phases={
                run.phase.name: {
                    "epochs": run.phase.epochs, "epochs_run": run.epochs_run, "lr": run.lr,
                    "warmup_steps": run.warmup, "schedule_steps": run.horizon,
                    "parameters": sum(p.numel() for p in run.params),
                    "seconds_per_epoch": round(run.seconds / max(1, run.epochs_run), 3),
                } for run in runs})
        return model

    def _epoch(self, model: nn.Module, examples: list[torch.Tensor], run: _PhaseRun, epoch: int, total_epochs: int,
               steps_per_epoch: int, autocast: torch.autocast, phased: bool) -> float:
        """One pass over shuffled batches with ``run``'s loss and optimiser; the mean loss. Its progress bar
        (unless ``ctx.quiet``) names the epoch out of the most that can run (early stopping may end sooner)."""
        cfg, ctx, device = self.cfg, self.ctx, self.ctx.device
        model.train()
        n = len(examples[0])
        order = torch.randperm(n, device=device)
        total_loss = torch.zeros((), device=device)
        where = f"{run.phase.name} epoch" if phased else "epoch"
        desc = f"{self.stage} {where} {epoch + 1}/{total_epochs}"
        for i in progress(range(steps_per_epoch), desc=desc, quiet=ctx.quiet):
            batch = tuple(t[order[i * cfg.batch_size:(i + 1) * cfg.batch_size]] for t in examples)
            with autocast:
                loss = run.loss_fn(batch)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if run.grad_clip:
                nn.utils.clip_grad_norm_(run.params, run.grad_clip)
            run.optimizer.step()
            run.scheduler.step()
            total_loss += loss.detach()
        mean_loss = float(total_loss) / steps_per_epoch
        if not math.isfinite(mean_loss):
            where = f"phase {run.phase.name!r}, " if phased else ""
            raise SidbenchError(f"{self.stage}: the loss became {mean_loss} at {where}epoch {epoch}; "
                                "lower the learning rate")
        return mean_loss
