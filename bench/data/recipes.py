"""Dataset recipes: TOML files naming source files, a reader, item fields, protocol and SID defaults.

Built-in recipes live in the top-level ``datasets/`` folder of a checkout; a
wheel ships the same files as ``bench/_recipes``. ``SIDBENCH_RECIPES`` adds
folders of users' own recipes (``os.pathsep``-separated).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import ConfigError
from bench.data.fetch import SourceFile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


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


def recipe_dirs() -> list[Path]:
    package = Path(__file__).resolve().parents[1]  # bench/
    dirs = [p for p in os.environ.get("SIDBENCH_RECIPES", "").split(os.pathsep) if p]
    found = [Path(p) for p in dirs]
    for candidate in (package / "_recipes", package.parent / "datasets"):
        if candidate.is_dir():
            found.append(candidate)
    return found


def _parse(path: Path) -> Recipe:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {path} is not valid TOML: {exc}") from exc
    missing = {"name", "reader"} - raw.keys()
    if missing:
        raise ConfigError(f"recipe {path} lacks the key(s) {sorted(missing)}; every recipe needs name and reader")
    files = {}
    for role, spec in raw.get("files", {}).items():
        if not {"url", "sha256"} <= spec.keys():
            raise ConfigError(f"recipe {path}: file {role!r} needs url and sha256, found {sorted(spec)}")
        files[role] = SourceFile(spec["url"], spec["sha256"].lower(), spec.get("size"))
    return Recipe(
        name=raw["name"],
        description=raw.get("description", ""),
        reader=raw["reader"],
        files=files,
        reader_options=raw.get("reader_options", {}),
        items=raw.get("items", {}),
        protocol=raw.get("protocol", {}),
        expected=raw.get("expected", {}),
        sid=raw.get("sid", {}),
        path=str(path),
    )


def discover() -> dict[str, Recipe]:
    """All recipes by name; an earlier folder wins over a later one with the same name."""
    recipes: dict[str, Recipe] = {}
    for folder in recipe_dirs():
        for path in sorted(folder.glob("*.toml")):
            recipe = _parse(path)
            recipes.setdefault(recipe.name, recipe)
    return recipes
