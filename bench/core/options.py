"""Typing option values given as text (``--set``, ``--protocol``, recipe values) against their defaults."""

from __future__ import annotations

from typing import Any

from bench.core.errors import ConfigError


def _coerce(value: Any, default: Any, name: str) -> Any:
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            return tuple(type(default[0])(v) if default else v for v in value.split(","))
    except ValueError:
        raise ConfigError(f"option {name} expects a {type(default).__name__}, found {value!r}") from None
    return value
