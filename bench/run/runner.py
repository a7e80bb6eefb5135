"""Run methods x seeds on one dataset under one protocol and write their records."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import multiprocessing
import os
import shlex
import signal
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import __version__
from bench.core import registry
from bench.core.device import (
    apply_precision,
    device_description,
    resolve_device,
    seed_everything,
)
from bench.core.errors import ConfigError, SidbenchError
from bench.core.io import code_digest, run_key
from bench.core.method import FitContext, Method, build_config, resolve_budget
from bench.core.options import parse_options, parse_value
from bench.core.plugin import plugin_defaults
from bench.data.dataset import Dataset, get_recipe, load_dataset
from bench.data.protocol import Protocol, Split
from bench.eval.evaluator import Evaluator
from bench.nn.train import COMPILE_MODES
from bench.run import records

log = logging.getLogger(__name__)


# 2: every field always present (precision, compile) and the method's code digest; 1 (no field): neither
RUN_KEY_VERSION = 2


def check_seeds(seeds: list[int]) -> None:
    """Seeds are distinct non-negative integers (a repeated seed would overwrite its own result)."""
    if not seeds:
        raise ConfigError("--seeds: expected at least one seed, found none")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"--seeds: expected non-negative integers, found {seed!r}")
    if repeated := sorted({s for s in seeds if seeds.count(s) > 1}):
        raise ConfigError(f"--seeds: expected distinct seeds, found {repeated[0]} more than once "
                          f"in {','.join(map(str, seeds))}")


def method_code(cls: type, config: Any, dataset: str) -> str:
    """A digest of the method's source (its classes below ``Method``) and of the encoder and tokenizer it runs,
    so that a run whose code was edited is run again instead of being reused."""
    from bench.sid.pipeline import resolve_encoder

    objects: list[Any] = [c for c in cls.__mro__ if issubclass(c, Method) and c is not Method]
    if isinstance(encoder := getattr(config, "encoder", None), str):
        objects.append(registry.get("encoder", resolve_encoder(encoder, dataset)))
    if tokenizer := getattr(cls, "tokenizer_name", ""):
        objects.append(registry.get("tokenizer", tokenizer))
    return code_digest(*objects)


def check_method(name: str, cls: type, config: Any, dataset: str) -> None:
    """What a method's options hold beyond their own types, checked before anything trains: the method's
    ``check_config``, its encoder's options and, for SID methods, its tokenizer's parameters and collision step."""
    from bench.sid.collisions import COLLISION_METHODS
    from bench.sid.pipeline import TOK, SIDMethod, encoder_spec

    try:
        method = cls(config)
        method.check_config()
    except ConfigError as exc:
        raise ConfigError(f"method {name}: {exc}") from None
    encoder = getattr(config, "encoder", None)
    if isinstance(encoder, str) and isinstance(getattr(config, "encoder_options", None), str):
        try:
            encoder_spec(encoder, config.encoder_options, dataset)
        except ConfigError as exc:
            raise ConfigError(f"method {name} encoder_options: {exc}") from None
    if issubclass(cls, SIDMethod):
        params = method.tokenizer_params(0)  # seed None: the run's seed
        tokenizer = registry.get("tokenizer", cls.tokenizer_name)
        parse_options(params, plugin_defaults(tokenizer, "tokenizer"), f"method {name} {TOK}",
                      where=f"method {name} tokenizer {cls.tokenizer_name}")
        parse_value(config.collisions, "", f"method {name} collisions", choices=COLLISION_METHODS)


def check_out(out: Path) -> None:
    """``--out`` must be a folder, or a path where one can be made; checked before anything trains."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: expected a folder for the results, found a file; name a folder "
                          f"(it is made if missing)")
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"--out {out}: expected a folder that can be written, but {parent} cannot be written to; "
                          f"pick another --out")


def check_history(dataset: Dataset, protocol: Protocol) -> None:
    """A history longer than the longest sequence only pads (and can exhaust memory): refused before training."""
    longest = max((len(s) for s in dataset.sequences), default=0)
    if protocol.history_len > longest:
        raise ConfigError(f"--protocol history_len={protocol.history_len} is longer than {dataset.name}'s longest "
                          f"sequence ({longest} items), so it would only add padding; use at most {longest}")


def script_plugins(cls: type, config: Any, dataset: str) -> list[str]:
    """The plugins of a run defined in a script or notebook (module ``__main__``): a shell cannot re-run it alone."""
    from bench.sid.pipeline import resolve_encoder

    objects = [cls]
    if tokenizer := getattr(cls, "tokenizer_name", ""):
        objects.append(registry.get("tokenizer", tokenizer))
    if isinstance(encoder := getattr(config, "encoder", None), str):
        objects.append(registry.get("encoder", resolve_encoder(encoder, dataset)))
    return [f"{o.__qualname__}" for o in objects if o.__module__ in ("__main__", "__mp_main__")]


def check_compile(backend: str | None) -> None:
    """``--compile`` names a torch.compile backend or one of inductor's modes (:data:`bench.train.COMPILE_MODES`)."""
    if backend is None or backend in COMPILE_MODES:
        return
    known = torch.compiler.list_backends(exclude_tags=())
    if backend not in known:
        raise ConfigError(f"--compile {backend}: torch.compile has no such backend or mode; backends: "
                          f"{', '.join(sorted(known))}; inductor modes: {', '.join(COMPILE_MODES)} "
                          "(plain --compile means inductor)")


def split_overrides(methods: list[str], overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``key=value`` goes to every method that has the option; ``method.key=value`` to one method."""
    per_method: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for key, value in overrides.items():
        target, dot, option = key.rpartition(".")
        if dot:
            if target not in per_method:
                raise ConfigError(f"option {key!r} names method {target!r}, which is not in this run ({', '.join(methods)})")
            per_method[target][option] = value
            continue
        options = {m: {f.name for f in dataclasses.fields(_method_class(m).Config)} for m in methods}
        takers = [m for m in methods if option in options[m]]
        if not takers:
            close = difflib.get_close_matches(option, sorted(set().union(*options.values())), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"no method in this run ({', '.join(methods)}) has an option {option!r}.{hint}")
        for m in takers:
            per_method[m][option] = value
    return per_method


def _run_task(run: "BenchmarkRun", threads: int) -> "RunOutcome":
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(threads)  # workers must not oversubscribe the CPU
    try:
        return run.execute()[0]
    except SidbenchError as exc:
        folder = records.run_dir(run.out, run.dataset, run.methods[0], run.seeds[0])
        return RunOutcome(run.methods[0], run.seeds[0], folder, error=f"{type(exc).__name__}: {exc}")


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops them all (a worker dying on its own could hang the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate every worker of ``pool`` now (then kill what is left): nothing keeps running after Ctrl-C."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=5)
    pool.shutdown(wait=False, cancel_futures=True)


def _method_class(name: str) -> type:
    if name.startswith("sid:"):  # an ad-hoc composition, e.g. sid:text-st+hkmeans
        from bench.sid.pipeline import composition
        return composition(name)
    return registry.get("method", name)


@dataclass
class RunOutcome:
    method: str
    seed: int
    folder: Path
    record: dict[str, Any] | None = None
    error: str | None = None
    reused: bool = False


@dataclass
class BenchmarkRun:
    """One ``run`` invocation: methods x seeds on a dataset."""

    methods: list[str]
    dataset: str
    seeds: list[int]
    out: Path
    device: str = "auto"
    precision: str = "fp32"  # float32 matmuls on CUDA: fp32 or tf32
    compile: str | None = None  # torch.compile backend or inductor mode for the trainers' loss steps, or None
    budget: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    protocol_overrides: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    quiet: bool = False
    jobs: int = 1  # runs (method, seed) in this many worker processes at once
    command: str | None = None  # the shell command that asked for this run (the CLI sets it), for the record

    def execute(self) -> list[RunOutcome]:
        if self.jobs > 1 and len(self.methods) * len(self.seeds) > 1:
            return self._execute_parallel()
        return self._execute_serial()

    def check(self) -> tuple[dict[str, type], dict[str, dict[str, Any]]]:
        """Every name and value of the run (seeds, device, methods and their options, protocol), checked before any
        data is prepared or anything trains: a bad value for the last method fails at once and writes nothing.
        Returns the method classes and each method's overrides."""
        check_seeds(self.seeds)
        check_out(self.out)
        apply_precision(self.precision, resolve_device(self.device))
        check_compile(self.compile)
        classes = {m: _method_class(m) for m in self.methods}
        per_method = split_overrides(self.methods, self.overrides)
        recipe = get_recipe(self.dataset)
        Protocol.from_options(recipe.protocol, self.protocol_overrides)
        for m in self.methods:
            self._config(m, classes[m], self.budget, per_method[m], recipe.name)
        return classes, per_method

    def _config(self, method: str, cls: type, budget: str, overrides: dict[str, Any], dataset: str) -> Any:
        config = build_config(cls, method, budget, overrides, prefix=f"--set {method}.")
        check_method(method, cls, config, dataset)
        return config

    def _execute_parallel(self) -> list[RunOutcome]:
        """Small models leave a GPU mostly idle: run (method, seed) pairs side by side in processes."""
        classes, per_method = self.check()  # bad names and values fail before any worker starts
        dataset = load_dataset(self.dataset)  # prepare once, so workers only read the cache
        check_history(dataset, Protocol.from_options(dataset.protocol_defaults, self.protocol_overrides))
        for m in self.methods:  # the budgets a small dataset picks, checked too
            self._config(m, classes[m], resolve_budget(classes[m], self.budget, dataset.n_users), per_method[m],
                         dataset.name)
        tasks = [(m, s) for m in self.methods for s in self.seeds]
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=context, initializer=_ignore_sigint)
        try:
            threads = max(1, (os.cpu_count() or 1) // self.jobs)
            futures = [
                pool.submit(_run_task, dataclasses.replace(
                    self, methods=[m], seeds=[s], jobs=1, quiet=True,
                    overrides={f"{m}.{k}": v for k, v in per_method[m].items()},
                ), threads)
                for m, s in tasks
            ]
            outcomes = [f.result() for f in futures]
        except BaseException:  # Ctrl-C (or anything else): stop every worker before giving up
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)
        return outcomes

    def _execute_serial(self) -> list[RunOutcome]:
        device = resolve_device(self.device)
        classes, per_method = self.check()
        start = time.perf_counter()
        dataset = load_dataset(self.dataset)
        budgets = {m: resolve_budget(classes[m], self.budget, dataset.n_users) for m in self.methods}
        configs = {m: self._config(m, classes[m], budgets[m], per_method[m], dataset.name) for m in self.methods}
        protocol = Protocol.from_options(dataset.protocol_defaults, self.protocol_overrides)
        check_history(dataset, protocol)
        split = Split(dataset, protocol)
        prepare_s = round(time.perf_counter() - start, 3)
        outcomes = []
        for method in self.methods:
            for seed in self.seeds:
                outcomes.append(self._run_one(method, classes[method], configs[method], budgets[method],
                                              per_method[method], seed, dataset, split, device, prepare_s))
        return outcomes

    def variant(self, method: str, overrides: dict[str, Any]) -> dict[str, Any]:
        """What the user asked for beyond the method's name and seed (budget, options, protocol options, precision,
        compile), with a short id: runs of different variants are stored side by side, never over each other."""
        asked = {"budget": self.budget, "overrides": dict(sorted(overrides.items())),
                 "protocol": dict(sorted(self.protocol_overrides.items())), "precision": self.precision,
                 "compile": self.compile}
        return {"id": run_key({"method": method, **asked})[:8], **asked}

    def _run_one(self, method: str, cls: type, config: Any, budget: str, overrides: dict[str, Any], seed: int,
                 dataset: Dataset, split: Split, device: torch.device, prepare_s: float) -> RunOutcome:
        variant = self.variant(method, overrides)
        folder = records.variant_dir(self.out, dataset.name, method, seed, variant["id"])
        spec = {  # what determines the result; every field always present
            "key_version": RUN_KEY_VERSION,
            "method": method,
            "method_class": f"{cls.__module__}:{cls.__qualname__}",
            "code": method_code(cls, config, dataset.name),
            "budget": budget,
            "config": dataclasses.asdict(config),
            "dataset": {"name": dataset.name, "checksum": dataset.checksum},
            "protocol": split.protocol.to_dict(),
            "seed": seed,
            "precision": self.precision,
            "compile": self.compile,  # compiled kernels round differently
        }
        key = run_key(spec)
        if not self.force and (done := records.finished(folder, key)):
            log.info("reusing finished run %s", folder)
            return RunOutcome(method, seed, folder, done, reused=True)
        try:
            with records.Claim(folder, variant["id"]):
                return self._train(method, cls, config, seed, dataset, split, device, prepare_s, folder, spec, key,
                                   variant, overrides)
        except ConfigError as exc:  # another process holds the folder: nothing is written
            log.error("%s seed %d not run: %s", method, seed, exc)
            return RunOutcome(method, seed, folder, error=f"{type(exc).__name__}: {exc}")

    def _train(self, method: str, cls: type, config: Any, seed: int, dataset: Dataset, split: Split,
               device: torch.device, prepare_s: float, folder: Path, spec: dict[str, Any], key: str,
               variant: dict[str, Any], overrides: dict[str, Any]) -> RunOutcome:
        """Fit, evaluate and record one run in ``folder`` (claimed by the caller); an earlier result there (other
        code or config of the same variant) is moved aside first and dropped once this one is written."""
        if moved := records.set_aside(folder):
            log.warning("%s seed %d: the earlier result in %s (--force, or other code or settings) is replaced; it is kept as "
                        "%s until this run finishes", method, seed, folder, moved[0].name)
        seed_everything(seed)
        ctx = FitContext(device=device, seed=seed, valid=Evaluator(split, "valid", device), quiet=self.quiet,
                         compile=self.compile)
        ctx.timings["prepare_data"] = prepare_s
        command = self.command  # None from Python (the API): sys.argv then names the script, not this run
        base = {
            **spec,
            "run_key": key,
            "variant": variant,
            "sidbench_version": __version__,
            "dataset": {**spec["dataset"], "stats": dataset.stats},
            "environment": {**records.environment(device_description(device)), "precision": self.precision,
                            "compile": self.compile},
            "command": command,
            "rerun": self.rerun_command(method, seed, overrides),
        }
        if local := script_plugins(cls, config, dataset.name):
            base["rerun_note"] = (f"{', '.join(local)} was defined in the script or notebook that ran this, not in "
                                  f"an importable module: `rerun` works only where that definition is registered first")
        # other processes on the GPU at any point of the run (their times are then upper bounds)
        neighbours = records.GpuNeighbourWatch().start() if device.type == "cuda" else None
        try:
            model = cls(config)
            with ctx.stage("fit"):
                model.fit(split, ctx)
            with ctx.stage("evaluate_test"):
                test = Evaluator(split, "test", device).evaluate(model, quiet=self.quiet)
            with ctx.stage("evaluate_valid"):
                valid = ctx.valid.evaluate(model, quiet=True)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one failing method must not lose the others' results
            if neighbours is not None:
                neighbours.stop()
            log.error("%s seed %d failed: %s", method, seed, exc)
            detail = "" if isinstance(exc, SidbenchError) else traceback.format_exc()
            records.write_failure(folder, {**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                           "traceback": detail, "timings": ctx.timings})
            return RunOutcome(method, seed, folder, error=f"{type(exc).__name__}: {exc}")
        ctx.timings["total"] = round(sum(v for k, v in ctx.timings.items() if k in
                                         ("prepare_data", "fit", "evaluate_test", "evaluate_valid")), 3)
        record = {
            **base,
            "status": "ok",
            "environment": {**base["environment"],
                            "gpu_other_processes": neighbours.stop() if neighbours is not None else None},
            "metrics": {"test": test.means, "valid": valid.means},
            "curve": ctx.curve or [{"epoch": 0, **valid.means}],  # a method that trains nothing: its one point
            "timings": ctx.timings,
            "extra": ctx.extra,
        }
        per_user = {**{k: v.astype(np.float32) for k, v in test.per_user.items()}, "user": np.arange(split.n_users)}
        records.write_result(folder, record, per_user)
        records.drop_replaced(folder)
        return RunOutcome(method, seed, folder, record)

    def rerun_command(self, method: str, seed: int, overrides: dict[str, Any]) -> str:
        parts = ["python", "-m", "bench", "run", "--methods", method, "--dataset", self.dataset,
                 "--seeds", str(seed), "--budget", self.budget, "--out", str(self.out)]
        if self.precision != "fp32":
            parts += ["--device", "cuda", "--precision", self.precision]
        if self.compile:
            parts += ["--compile", self.compile]
        for key, value in overrides.items():
            parts += ["--set", f"{method}.{key}={value}"]
        for key, value in self.protocol_overrides.items():
            parts += ["--protocol", f"{key}={value}"]
        return " ".join(shlex.quote(p) for p in parts)
