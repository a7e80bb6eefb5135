"""The method plugin contract and its configuration.

A method is a small class: hyperparameters in a ``Config`` dataclass, named
budgets (``default``, ``smoke``) as overrides of that config, and
``fit(split, ctx) -> self``. After ``fit`` it either scores the whole
catalogue (``score``) or returns ranked lists (``rank``); the shared
``Evaluator`` does the rest.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import torch

from bench.core.errors import ConfigError
from bench.core.options import parse_options, parse_pairs

if TYPE_CHECKING:  # the evaluator sits on a higher floor; a context only carries one
    from bench.eval.evaluator import Evaluator


@dataclass
class FitContext:
    """What a method gets besides the split: device, seed, validation and a place for its logs."""

    device: torch.device
    seed: int
    valid: Evaluator
    quiet: bool = True
    compile: str | None = None  # torch.compile backend or mode for the trainers' loss steps (``run --compile``), or None
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per stage
    curve: list[dict[str, float]] = field(default_factory=list)  # validation metrics per epoch
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific facts for the record

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)


@dataclass
class NoConfig:
    pass


class Method:
    """Base class for methods; subclasses set ``Config`` and ``budgets`` and implement ``fit``."""

    Config: ClassVar[type] = NoConfig
    budgets: ClassVar[dict[str, dict[str, Any]]] = {"default": {}, "smoke": {}}

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def check_config(self) -> None:
        """Reject option values the types allow but the method does not (the runner calls it before any training)."""

    def fit(self, split, ctx: FitContext) -> "Method":
        raise NotImplementedError


SMALL_DATASET_USERS = 5000  # below this, budget "default" means the method's "small" budget if it has one


def resolve_budget(method_cls: type, budget: str, n_users: int | None) -> str:
    """``default`` on a small dataset becomes ``small`` where the method defines it (fewer, cheaper epochs)."""
    if budget == "default" and n_users is not None and n_users < SMALL_DATASET_USERS and "small" in method_cls.budgets:
        return "small"
    return budget


def build_config(method_cls: type, method_name: str, budget: str, overrides: dict[str, Any],
                 prefix: str | None = None) -> Any:
    """The method's config: defaults, then the named budget, then user overrides (checked by name, typed by default).

    ``prefix`` names where the overrides came from in errors (default ``"method NAME "``; the runner says ``--set``).
    """
    budgets = method_cls.budgets
    if budget not in budgets:
        raise ConfigError(f"method {method_name} has no budget {budget!r}; known: {sorted(budgets)}")
    cfg = method_cls.Config()
    defaults = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    prefix = prefix or f"method {method_name} "
    given = parse_options(overrides, defaults, prefix)
    for key, owner in getattr(method_cls, "merged_options", {}).items():
        # "k=v;k=v" options that a budget sets for its own plugin: the user's pairs go on top of the budget's,
        # unless the user also picks another plugin (then the budget's pairs belong to the wrong one)
        if key in given and budgets[budget].get(key) and owner not in given:
            pairs = {**parse_pairs(budgets[budget][key], f"budget {budget} {key}"),
                     **parse_pairs(given[key], f"{prefix}{key}")}
            given[key] = ";".join(f"{k}={v}" for k, v in pairs.items())
    values = {**budgets[budget], **given}
    try:
        return dataclasses.replace(cfg, **values)
    except ConfigError as exc:  # the config's own checks (``__post_init__``), which know no method
        raise ConfigError(f"method {method_name} {exc}") from None


def method_variant(base: type, name: str, description: str, module: str, **defaults: Any) -> type:
    """A subclass of method ``base`` whose config changes only ``defaults`` (an ablation), named for ``name``;
    the caller registers it."""
    config = dataclasses.make_dataclass(
        f"{name.title().replace('-', '')}Config",
        [(key, type(value), dataclasses.field(default=value)) for key, value in defaults.items()],
        bases=(base.Config,))
    return type(name.title().replace("-", ""), (base,), {"__doc__": description, "Config": config,
                                                         "__module__": module})
