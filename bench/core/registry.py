"""One registry for methods, tokenizers, item encoders, datasets and readers.

Entries are either loaded objects (registered with the ``register`` decorator)
or lazy ``"module:attr"`` strings, so ``python -m bench list`` imports no model
code. Third-party packages add entries through the ``sidbench.plugins``
entry-point group: each entry point names a module (or callable) that
registers its objects when loaded.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from bench.core.errors import ConfigError

log = logging.getLogger(__name__)


KINDS = ("method", "tokenizer", "encoder", "dataset", "reader")


ENTRY_POINT_GROUP = "sidbench.plugins"


@dataclass
class Entry:
    kind: str
    name: str
    target: Any  # the object, or a "module:attr" string until first use
    description: str = ""

    def load(self) -> Any:
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                obj = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(
                    f"{self.kind} {self.name!r} points at {self.target!r}, which could not be "
                    f"imported ({exc}). Check that its package is installed."
                ) from exc
            self.target = obj
        return self.target


_entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}


_plugins_loaded = False


def _check_kind(kind: str) -> None:
    if kind not in _entries:
        raise ConfigError(f"unknown registry kind {kind!r}; expected one of {', '.join(KINDS)}")


def _first_doc_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def register(kind: str, name: str, description: str | None = None) -> Callable[[Any], Any]:
    """Decorator: ``@register("tokenizer", "rqvae")`` registers a class or function."""
    _check_kind(kind)

    def decorate(obj: Any) -> Any:
        _entries[kind][name] = Entry(kind, name, obj, description or _first_doc_line(obj))
        return obj

    return decorate


def register_lazy(kind: str, name: str, target: str, description: str) -> None:
    """Register ``"module:attr"`` without importing it (for ``list`` and startup speed)."""
    _check_kind(kind)
    current = _entries[kind].get(name)
    if current is None or isinstance(current.target, str):
        _entries[kind][name] = Entry(kind, name, target, description)


def load_plugins() -> None:
    """Load built-in entries and the ``sidbench.plugins`` entry points, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    importlib.import_module("bench.builtins")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the suite
            log.warning("plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        if callable(loaded) and not isinstance(loaded, type):
            loaded()


def names(kind: str) -> list[str]:
    load_plugins()
    _check_kind(kind)
    return sorted(_entries[kind])


def entries(kind: str) -> list[Entry]:
    return [_entries[kind][n] for n in names(kind)]


def unknown_name_error(kind: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(
        f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known) or '(none)'}. "
        f"Run `python -m bench list` to see them with descriptions."
    )


def get_entry(kind: str, name: str) -> Entry:
    known = names(kind)
    if name not in _entries[kind]:
        raise unknown_name_error(kind, name, known)
    return _entries[kind][name]


def get(kind: str, name: str) -> Any:
    """The registered object (class, function or recipe) for ``kind``/``name``."""
    return get_entry(kind, name).load()
