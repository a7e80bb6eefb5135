"""Dataset recipes: TOML files naming source files, a reader, item fields, protocol and SID defaults.

Built-in recipes live in the top-level ``datasets/`` folder of a checkout; a
wheel ships the same files as ``bench/_recipes``. ``SIDBENCH_RECIPES`` adds
folders of users' own recipes (``os.pathsep``-separated).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.core.errors import ConfigError
from bench.core.options import parse_options, parse_value, unknown_option
from bench.data.fetch import SourceFile
from bench.data.protocol import Protocol

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    reader: str
    files: dict[str, SourceFile] = field(default_factory=dict)
    reader_options: dict[str, Any] = field(default_factory=dict)  # passed to the reader
    items: dict[str, Any] = field(default_factory=dict)  # item-field options for build_dataset
    protocol: dict[str, Any] = field(default_factory=dict)  # protocol defaults
    expected: dict[str, int] = field(default_factory=dict)  # statistics to check after processing
    sid: dict[str, Any] = field(default_factory=dict)  # SID defaults, e.g. text_encoder
    path: str = ""


# what a recipe's [items] table may hold (``build_dataset``'s options) and their defaults
ITEM_OPTIONS: dict[str, Any] = {
    "fields": ["brand", "cat1", "cat2", "cat3", "price"],  # single-valued item fields to build
    "drop_root_category": False,  # drop the first category level when every item shares it
    "min_interactions": 3,  # users with fewer are dropped
    "price_buckets": 10,  # price quantile buckets
}


SID_OPTIONS: dict[str, Any] = {"text_encoder": "text-st"}  # the [sid] table: the encoder that "text" means


TABLES = ("files", "reader_options", "items", "protocol", "expected", "sid")


class RecipeError(ConfigError):
    """A recipe file that cannot be used; ``names``: what a user may ask for it by (its name, else its file stem)."""

    def __init__(self, message: str, names: set[str]):
        super().__init__(message)
        self.names = names


def recipe_dirs() -> list[Path]:
    package = Path(__file__).resolve().parents[1]  # bench/
    dirs = [p for p in os.environ.get("SIDBENCH_RECIPES", "").split(os.pathsep) if p]
    found = [Path(p) for p in dirs]
    for candidate in (package / "_recipes", package.parent / "datasets"):
        if candidate.is_dir():
            found.append(candidate)
    return found


def _parse(path: Path) -> Recipe:
    """A recipe file, every field checked: wrong names or types are a ``RecipeError`` naming the file and field."""
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe {path} is not valid TOML: {exc}", {path.stem}) from exc
    names = {raw["name"] if isinstance(raw.get("name"), str) else path.stem}
    try:
        return _typed_recipe(raw, path)
    except ConfigError as exc:
        raise RecipeError(str(exc), names) from None


def _typed_recipe(raw: dict[str, Any], path: Path) -> Recipe:
    where = f"recipe {path}: "
    missing = {"name", "reader"} - raw.keys()
    if missing:
        raise ConfigError(f"recipe {path} lacks the key(s) {sorted(missing)}; every recipe needs name and reader")
    known = {"name": "", "description": "", "reader": ""}
    if unknown := [k for k in raw if k not in known and k not in TABLES]:
        raise unknown_option(unknown[0], [*known, *TABLES], f"recipe {path}")
    top = parse_options({k: v for k, v in raw.items() if k in known}, known, where)
    if not top["name"] or not top["reader"]:
        raise ConfigError(f"recipe {path}: name and reader must not be empty")
    tables = {name: parse_value(raw.get(name, {}), {}, where + name) for name in TABLES}
    files = {}
    for role, spec in tables["files"].items():
        spec = parse_value(spec, {}, f"{where}files.{role}")
        if not {"url", "sha256"} <= spec.keys():
            raise ConfigError(f"recipe {path}: file {role!r} needs url and sha256, found {sorted(spec)}")
        spec = parse_options(spec, {"url": "", "sha256": "", "size": 0}, f"{where}files.{role}.")
        files[role] = SourceFile(spec["url"], spec["sha256"].lower(), spec.get("size"))
    protocol = parse_options(tables["protocol"], {f.name: f.default for f in fields(Protocol)}, f"{where}protocol.")
    try:
        Protocol(**protocol)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return Recipe(
        name=top["name"],
        description=top.get("description", ""),
        reader=top["reader"],
        files=files,
        reader_options=tables["reader_options"],
        items=parse_options(tables["items"], ITEM_OPTIONS, f"{where}items."),
        protocol=protocol,
        expected={k: parse_value(v, 0, f"{where}expected.{k}") for k, v in tables["expected"].items()},
        sid=parse_options(tables["sid"], SID_OPTIONS, f"{where}sid."),
        path=str(path),
    )


def discover(broken: list[RecipeError] | None = None) -> dict[str, Recipe]:
    """All recipes by name; an earlier folder wins over a later one with the same name.

    A recipe file with an error is left out, so that ``list`` and the other datasets still work: its error
    goes into ``broken`` if given (``get_recipe`` raises it when that recipe is asked for), else into the log.
    """
    recipes: dict[str, Recipe] = {}
    for folder in recipe_dirs():
        for path in sorted(folder.glob("*.toml")):
            try:
                recipe = _parse(path)
            except RecipeError as exc:
                if broken is None:
                    log.warning("%s; the recipe is left out", exc)
                else:
                    broken.append(exc)
                continue
            recipes.setdefault(recipe.name, recipe)
    return recipes
