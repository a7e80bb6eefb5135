"""The ``run`` command as a Python function, for scripts and notebooks.

    from bench.api import run
    outcomes = run(["pop", "sid:text+norm-buckets"], dataset="synthetic", budget="smoke", out="runs")
    outcomes[0].record["metrics"]["test"]["ndcg@10"]

It is ``python -m bench run`` without the shell: the same checks before anything trains, the same records
under ``out``, the same reuse of finished runs. A method, tokenizer or encoder registered in the calling
script with ``bench.core.registry.register`` runs like a built-in one (in this process: ``jobs > 1`` starts
fresh processes, which know only the plugins of importable modules and packages).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.core.errors import ConfigError
from bench.run.runner import BenchmarkRun, RunOutcome

__all__ = ["RunOutcome", "run"]

log = logging.getLogger(__name__)


def run(
    methods: str | Sequence[str],
    dataset: str = "synthetic",
    seeds: int | Sequence[int] = (0,),
    out: str | Path = "runs",
    budget: str = "default",
    overrides: Mapping[str, Any] | None = None,
    protocol: Mapping[str, Any] | None = None,
    device: str = "auto",
    quiet: bool = False,
    *,
    precision: str = "fp32",
    compile: str | None = None,
    force: bool = False,
    jobs: int = 1,
) -> list[RunOutcome]:
    """Train and evaluate ``methods`` x ``seeds`` on ``dataset``; one ``RunOutcome`` per pair, in that order.

    Each argument is the ``run`` command's option of the same name: ``methods`` a list of names (or one
    comma-separated string), ``overrides`` the ``--set`` pairs (``{"epochs": 3}`` for every method that has
    the option, ``{"sasrec.epochs": 3}`` for one), ``protocol`` the ``--protocol`` pairs; values may be typed
    or text. ``quiet`` turns the progress bars (stderr) off. An outcome's ``record`` is the result written
    to ``outcome.folder`` (``record["metrics"]["test"]``); a run that failed has ``record`` None and says why
    in ``error`` (and ``folder/failure.json``), and the others still run. Bad names or values raise
    ``ConfigError`` before anything trains.
    """
    benchmark = BenchmarkRun(
        methods=_names(methods), dataset=dataset, seeds=_seeds(seeds), out=Path(out), device=device,
        precision=precision, compile=compile, budget=budget, overrides=dict(overrides or {}),
        protocol_overrides=dict(protocol or {}), force=force, quiet=quiet, jobs=jobs,
    )
    outcomes = benchmark.execute()
    for outcome in outcomes:
        if outcome.error:
            log.warning("%s seed %d failed: %s (details in %s/failure.json)", outcome.method, outcome.seed,
                        outcome.error, outcome.folder)
    return outcomes


def _names(methods: str | Sequence[str]) -> list[str]:
    """Method names from a list, or from one comma-separated string as the command line takes them."""
    names = methods.split(",") if isinstance(methods, str) else list(methods)
    if not all(isinstance(name, str) for name in names):
        raise ConfigError(f"methods: expected method names (strings), found {names!r}; "
                          f"e.g. methods=['pop', 'sid:text+rqkmeans']")
    names = [name.strip() for name in names if name.strip()]
    if not names:
        raise ConfigError(f"methods: expected at least one method name, found {methods!r}; "
                          f"`python -m bench list` shows the registered ones")
    return names


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    """One seed or several (the runner checks that they are distinct non-negative integers)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return [seeds]
    if isinstance(seeds, str):
        raise ConfigError(f"seeds: expected an integer or a list of integers, found the text {seeds!r}; "
                          f"e.g. seeds=[0, 1, 2]")
    return list(seeds)
