"""SID methods: an item encoder, a tokenizer and the shared generator, composed by name.

Every SID method is the same pipeline with a different encoder and tokenizer:

    vectors = encode_items(encoder)          # E, cached
    sids    = tokenize_items(tokenizer)      # Q, cached, then the collision post-step
    generator.fit(split, sids.codes)         # G, the shared T5-style model + trie beam search

so only the tokenizer differs between ``tiger``, ``rqkmeans-t5``, ``hkmeans-t5``
and any ``sid:ENCODER+TOKENIZER`` composition. A method's config holds the
generator's options, ``encoder`` / ``encoder_options`` (``"key=value;key=value"``),
the tokenizer's own parameters as ``tok_<name>``, and ``collisions``.
The encoder name ``text`` means the dataset's text encoder (its recipe's
``[sid] text_encoder``, ``text-st`` unless the recipe says otherwise; the
record names the one used).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch

from bench.core import registry
from bench.core.errors import ConfigError
from bench.core.method import FitContext, Method
from bench.core.options import parse_options as typed_options
from bench.core.options import parse_pairs
from bench.core.plugin import plugin_defaults
from bench.data.dataset import get_recipe
from bench.data.protocol import Split
from bench.sid.generator import Generator, GeneratorConfig
from bench.sid.stages import SIDTable, encode_items, tokenize_items
from bench.sid.tokenizer import MAIN_VIEW, ItemViews

TOK = "tok_"
VIEW = "view_"  # a tokenizer's extra item view: view_<name> = "ENCODER[:key=value;...]"
DEFAULT_TEXT_ENCODER = "text-st"


# the generator at smoke size: seconds on a CPU, for tests; no dropout (on a CPU, drawing the attention dropout
# masks took a third of a smoke step)
SMOKE_GENERATOR = {"d_model": 32, "n_enc_layers": 1, "n_dec_layers": 1, "n_heads": 2, "d_head": 16, "d_ff": 64,
                   "epochs": 3, "batch_size": 256, "eval_every": 1, "patience": 2, "lr": 3e-3, "warmup_steps": 0,
                   "dropout": 0.0}
# the budget "default" picks on small datasets (under 5,000 users, e.g. synthetic): a minute or two on 2 CPU cores,
# so the first run shows SID methods next to the ID baselines (the default budget is for GPUs)
SMALL_GENERATOR = {**SMOKE_GENERATOR, "d_model": 64, "d_head": 32, "d_ff": 128, "epochs": 4, "batch_size": 512,
                   "eval_every": 2, "patience": 1, "dropout": 0.1}


def resolve_encoder(name: str, dataset: str) -> str:
    """``text`` means the dataset's text encoder (its recipe's ``[sid] text_encoder``); other names stay."""
    if name == "text":
        return get_recipe(dataset).sid.get("text_encoder", DEFAULT_TEXT_ENCODER)
    return name


ENCODER_FACTS = ("fit_seconds", "dim", "device", "precision", "fit_info", "cache_key", "cache_hit", "vector_proxy")


def encoder_spec(encoder: str, options: str, dataset: str | None = None) -> tuple[str, dict[str, Any]]:
    """The encoder's registered name (``text`` resolved when ``dataset`` is given) and its parsed options."""
    name = resolve_encoder(encoder, dataset) if dataset else encoder
    return name, parse_options(options, registry.get("encoder", name), f"encoder {name}")


def encode_with(encoder: str, options: str, split: Split, ctx: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Item vectors from ``encoder`` (``text`` resolved, ``options`` parsed; cached), and the record's encoder
    entry: its name, parameters and the E-stage's facts (what every method that reads item vectors records)."""
    return _encode(*encoder_spec(encoder, options, split.dataset.name), split, ctx)


def _encode(name: str, params: dict[str, Any], split: Split, ctx: Any) -> tuple[np.ndarray, dict[str, Any]]:
    vectors, encoded = encode_items(name, params, split, ctx)
    return vectors, {"name": name, "params": params, **{k: encoded[k] for k in ENCODER_FACTS if k in encoded}}


def encoder_proxies(encoded: dict[str, Any]) -> dict[str, float]:
    """``{"metric (stage)": value}``: the model-free vector proxy every encoder gets, and the encoder's own (FAMAE's)."""
    per_stage: dict[str, dict[str, float]] = {}
    for source in (encoded.get("vector_proxy", {}), encoded["fit_info"].get("proxy", {})):
        for stage, values in source.items():
            per_stage.setdefault(stage, {}).update(values)
    return {f"{name} ({stage})": value for stage, values in sorted(per_stage.items())
            for name, value in sorted(values.items())}


def parse_options(text: str, cls: type, who: str) -> dict[str, Any]:
    """``"key=value;key=value"`` checked against ``cls``'s constructor and typed by its defaults (``who``: "encoder X")."""
    return typed_options(parse_pairs(text, who), plugin_defaults(cls, who.split()[0]), f"{who} option ", where=who)


def encode_views(cfg: Any, tokenizer_cls: type, split: Split, ctx: Any) -> ItemViews:
    """The method's own encoder's vectors (the ``main`` view) and each extra view the tokenizer reads,
    encoded as the config's ``view_<name>`` says (``"ENCODER[:key=value;...]"``); all cached."""
    vectors, entries = {}, {}
    vectors[MAIN_VIEW], entries[MAIN_VIEW] = encode_with(cfg.encoder, cfg.encoder_options, split, ctx)
    for view, (name, params) in view_specs(cfg, tokenizer_cls, split.dataset.name).items():
        vectors[view], entries[view] = _encode(name, params, split, ctx)
    return ItemViews(vectors, entries)


def log_sid(ctx: Any, views: ItemViews, tokenizer: dict[str, Any], table: SIDTable, kind: str = "two-stage",
            **facts: Any) -> None:
    """The record's SID section, written the same way by two-stage, joint and unified methods: the encoder
    (and extra views), the tokenizer, the collision post-step, the diagnostics, and ``facts`` of the method's
    own (e.g. how a joint method's codes moved); plus the encoder's proxy metrics."""
    extra = {view: entry for view, entry in views.entries.items() if view != MAIN_VIEW}
    ctx.extra["sid"] = {"kind": kind, "encoder": views.entries[MAIN_VIEW], **({"views": extra} if extra else {}),
                        "tokenizer": tokenizer, "collisions": table.collisions, "diagnostics": table.diagnostics,
                        **facts}
    ctx.extra["proxy"] = encoder_proxies(views.entries[MAIN_VIEW])


def view_specs(cfg: Any, tokenizer_cls: type, dataset: str | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each extra view's encoder and its parsed options, from the config's ``view_<name>`` (errors name the option)."""
    specs = {}
    for view in sorted(getattr(tokenizer_cls, "views", None) or {}):
        encoder, _, options = getattr(cfg, VIEW + view).partition(":")
        try:
            specs[view] = encoder_spec(encoder, options, dataset)
        except ConfigError as exc:
            raise ConfigError(f"{VIEW}{view}: {exc}") from None
    return specs


class SIDMethod(Method):
    """Base of every SID method; subclasses are made by ``sid_method``."""

    tokenizer_name: str = ""
    # a budget's encoder options (e.g. the smoke FAMAE's sizes) stay under the user's own, unless the encoder changes
    merged_options: ClassVar[dict[str, str]] = {"encoder_options": "encoder"}

    def check_config(self) -> None:
        """The extra views' encoders and options, and the tokenizer's own ``check_params``, before any work."""
        tokenizer = registry.get("tokenizer", self.tokenizer_name)
        views = view_specs(self.config, tokenizer)
        params = {**plugin_defaults(tokenizer, "tokenizer"), **self.tokenizer_params(0)}
        check = getattr(tokenizer, "check_params", None)
        if callable(check):
            check(params, views)

    def tokenizer_params(self, seed: int) -> dict[str, Any]:
        params = {f.name[len(TOK):]: getattr(self.config, f.name)
                  for f in dataclasses.fields(self.config) if f.name.startswith(TOK)}
        if "seed" in params:  # the run's seed, unless tok_seed is set
            params["seed"] = seed if params["seed"] is None else int(params["seed"])
        return params

    def fit(self, split: Split, ctx: FitContext) -> "SIDMethod":
        cfg = self.config
        with ctx.stage("encode"):
            views = encode_views(cfg, registry.get("tokenizer", self.tokenizer_name), split, ctx)
        with ctx.stage("tokenize"):
            self.sids_ = tokenize_items(self.tokenizer_name, self.tokenizer_params(ctx.seed), views, None, split,
                                        str(ctx.device), cfg.collisions, quiet=ctx.quiet)
        sids = self.sids_
        log_sid(ctx, views, {"name": self.tokenizer_name, "params": self.tokenizer_params(ctx.seed), **sids.info}, sids)
        gen_config = GeneratorConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(GeneratorConfig)})
        with ctx.stage("generator"):
            self.generator_ = Generator(gen_config).fit(split, sids.codes, sids.codebook_sizes, ctx)
        return self

    @torch.no_grad()
    def rank(self, histories: torch.Tensor, users: torch.Tensor, k: int) -> torch.Tensor:
        return self.generator_.rank(histories, users, k)


def sid_method(name: str, encoder: str, tokenizer: str, description: str,
               tokenizer_params: dict[str, Any] | None = None,
               generator: dict[str, Any] | None = None, collisions: str = "extra-level") -> type[SIDMethod]:
    """A SID method class: ``encoder`` + ``tokenizer`` + the shared generator, with its own defaults.

    The smoke budget (tests) takes the generator at smoke size and the
    encoder's, the views' encoders' and the tokenizer's ``smoke_params``
    class attributes, if they have any (a view's own options win).
    """
    tok_cls = registry.get("tokenizer", tokenizer)
    tok_defaults = {**plugin_defaults(tok_cls, "tokenizer"), **(tokenizer_params or {})}
    if "seed" in tok_defaults:
        tok_defaults["seed"] = None  # None: the run's seed
    fields: list[tuple[str, type, Any]] = [
        ("encoder", str, dataclasses.field(default=encoder)),
        ("encoder_options", str, dataclasses.field(default="")),
        ("collisions", str, dataclasses.field(default=collisions)),
    ]
    for key, value in tok_defaults.items():
        fields.append((TOK + key, Any, dataclasses.field(default=value)))
    for view, encoder_spec in sorted(getattr(tok_cls, "views", {}).items()):
        fields.append((VIEW + view, str, dataclasses.field(default=encoder_spec)))
    for key, value in (generator or {}).items():
        fields.append((key, Any, dataclasses.field(default=value)))
    config = dataclasses.make_dataclass(f"{_camel(name)}Config", fields, bases=(GeneratorConfig,))
    budgets = {"default": {}, "small": _reduced("small", SMALL_GENERATOR, encoder, tok_cls),
               "smoke": _reduced("smoke", SMOKE_GENERATOR, encoder, tok_cls)}
    return type(_camel(name), (SIDMethod,), {
        "__doc__": description, "Config": config, "tokenizer_name": tokenizer,
        "budgets": budgets, "__module__": __name__,
    })


def _reduced(kind: str, generator: dict[str, Any], encoder: str, tok_cls: type) -> dict[str, Any]:
    """A reduced budget's options: the generator at that size, and the ``<kind>_params`` (else ``smoke_params``)
    class attributes of the tokenizer, the encoder and the views' encoders (a view's own options win)."""
    def params(cls: type) -> dict[str, Any]:
        return getattr(cls, f"{kind}_params", None) or getattr(cls, "smoke_params", {})

    budget = {**generator, **{TOK + k: v for k, v in params(tok_cls).items()}}
    if encoder != "text":  # "text" is resolved per dataset at fit time
        budget["encoder_options"] = ";".join(f"{k}={v}" for k, v in params(registry.get("encoder", encoder)).items())
    for view, spec in sorted(getattr(tok_cls, "views", {}).items()):
        view_encoder, _, options = spec.partition(":")
        if view_encoder != "text":
            given = parse_pairs(options, f"{tok_cls.__name__} view {view}")
            merged = {**params(registry.get("encoder", view_encoder)), **given}
            budget[VIEW + view] = view_encoder + ":" + ";".join(f"{k}={v}" for k, v in merged.items())
    return budget


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace(":", "-").replace("+", "-").split("-") if part)


def composition(name: str) -> type[SIDMethod]:
    """The method class for ``sid:ENCODER+TOKENIZER[@METHOD]`` (e.g. ``sid:text-st+hkmeans``).

    ``@METHOD`` takes the generator's settings from that SID method instead of the shared defaults:
    ``sid:famae+rqvae@resid`` is ReSID's Q1 ablation with ReSID's generator, under its own name (so its
    records never replace those of ``sid:famae+rqvae``).
    """
    body, at, generator_of = name[len("sid:"):].partition("@")
    encoder, plus, tokenizer = body.partition("+")
    if not (name.startswith("sid:") and plus and encoder and tokenizer) or (at and not generator_of):
        raise ConfigError("a SID composition is written sid:ENCODER+TOKENIZER[@METHOD] (e.g. sid:text-st+hkmeans, "
                          f"or sid:famae+rqvae@resid for resid's generator), found {name!r}")
    if encoder != "text":
        registry.get("encoder", encoder)  # unknown names fail here, with suggestions
    generator, described = None, "the shared generator"
    if generator_of:
        source = registry.get("method", generator_of)
        if not (isinstance(source, type) and issubclass(source, SIDMethod)):
            raise ConfigError(f"{name}: @{generator_of} must name a SID method, whose generator settings are taken; "
                              f"{generator_of} is not one (SID methods: resid, tiger, ...)")
        ours, base = source.Config(), GeneratorConfig()
        generator = {f.name: getattr(ours, f.name) for f in dataclasses.fields(GeneratorConfig)
                     if getattr(ours, f.name) != getattr(base, f.name)}
        described = f"{generator_of}'s generator"
    return sid_method(name, encoder, tokenizer, f"{encoder} + {tokenizer} + {described}", generator=generator)
