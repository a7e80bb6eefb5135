"""The one option parser: text (``--set``, ``--protocol``, ``encoder_options``) or TOML values, typed by defaults.

Every option has a default, and the default says what a value must be: a
boolean (only true/false/1/0/yes/no, any case), an integer, a number, a string
(optionally one of a few choices), or a tuple of these written comma-separated
(items of an empty default tuple read as an integer, a number or a string). A
``None`` default (e.g. "the run's seed") takes an integer, a number, a string,
or ``none``. Values read from TOML are already typed and are only checked (an
integer is a number but never a boolean; an array is a tuple). Anything else is
a ``ConfigError`` naming the option, what was expected and what was found::

    --protocol exclude_history: expected a boolean (true/false/1/0/yes/no), found 'ture'

``parse_value`` types one value, ``parse_options`` a mapping checked by name
(an unknown name gets a "did you mean"), ``parse_pairs`` splits ``key=value``
lists, ``check_positive`` rejects counts below 1. Names in messages are
``prefix + key``: the prefix says where the value came from and ends in its
separator (``"--protocol "``, ``"--set sasrec."``).
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping, Sequence

from bench.core.errors import ConfigError

BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
NONE_WORDS = ("none", "null")
# options that count something and must be positive wherever they appear (configs, encoder and tokenizer options)
POSITIVE = ("epochs", "batch_size", "ks")


KINDS = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (dict, "table"))


def _kind(default: Any) -> str:
    return next((word for kind, word in KINDS if isinstance(default, kind)), type(default).__name__)


def expected(default: Any, choices: Sequence[Any] | None = None) -> str:
    """What a value for an option with this default must be, in words."""
    if choices:
        return f"one of {', '.join(map(str, choices))}"
    if isinstance(default, bool):
        return f"a boolean ({'/'.join(BOOLEANS)})"
    if isinstance(default, (tuple, list)):
        return f"a comma-separated list of {_kind(default[0]) + 's' if default else 'values'}"
    if default is None:
        return "an integer, a number, a string or none"
    kind = _kind(default)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def parse_value(value: Any, default: Any, name: str, choices: Sequence[Any] | None = None) -> Any:
    """``value`` typed like ``default``: text is parsed, typed values (TOML, Python) are checked."""
    if isinstance(default, (tuple, list)):
        parsed = _parse_items(value, default, name)
    elif isinstance(value, str):
        parsed = _from_text(value, default, name)
    elif default is None:
        parsed = value
    elif isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        parsed = float(value)  # an integer is a number
    elif isinstance(value, type(default)) and (isinstance(default, bool) or not isinstance(value, bool)):
        parsed = value  # a boolean is not an integer
    else:
        raise _bad(value, default, name)
    if choices and parsed not in choices:
        raise _bad(value, default, name, choices)
    return parsed


def _parse_items(value: Any, default: tuple | list, name: str) -> tuple | list:
    """A tuple (or list) option: comma-separated text or a TOML array, each item typed like the default's first."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")] if value.strip() else []
    elif isinstance(value, (tuple, list)):
        parts = list(value)
    else:
        raise _bad(value, default, name)
    try:
        return type(default)(parse_value(p, default[0], name) if default else _literal(p) for p in parts)
    except ConfigError:
        raise _bad(value, default, name) from None


def _from_text(text: str, default: Any, name: str) -> Any:
    value = text.strip()
    if default is None:
        return _literal(value)
    if isinstance(default, str):
        return text
    if isinstance(default, bool):
        if value.lower() in BOOLEANS:
            return BOOLEANS[value.lower()]
        raise _bad(text, default, name)
    try:
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise _bad(text, default, name) from None
    raise _bad(text, default, name)  # e.g. a table


def _literal(text: Any) -> Any:
    """A value with nothing to go by (a None default, an empty tuple's items): integer, number, none or string."""
    if not isinstance(text, str):
        return text
    value = text.strip()
    if value.lower() in NONE_WORDS:
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _bad(value: Any, default: Any, name: str, choices: Sequence[Any] | None = None) -> ConfigError:
    found = repr(value) if isinstance(value, str) else f"{value!r} ({type(value).__name__})"
    return ConfigError(f"{name}: expected {expected(default, choices)}, found {found}")


def unknown_option(key: str, known: Iterable[str], where: str) -> ConfigError:
    """``where: unknown option 'x' (did you mean 'y'?); known options are a, b, c``."""
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown option {key!r}{hint}; known options are {', '.join(known) or '(none)'}")


def parse_options(values: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str,
                  choices: Mapping[str, Sequence[Any]] | None = None, where: str | None = None) -> dict[str, Any]:
    """``values`` checked by name against ``defaults`` and typed by them (only the given keys are returned).

    An option is called ``prefix + key`` in errors: ``prefix`` says where the values came from and ends in its
    separator (``"--protocol "``, ``"--set sasrec."``); an unknown key is reported for ``where`` (default: the
    prefix without its separator).
    """
    out = {}
    for key, value in values.items():
        if key not in defaults:
            raise unknown_option(key, defaults, where or prefix.rstrip(" .:") or "options")
        out[key] = parse_value(value, defaults[key], prefix + key, (choices or {}).get(key))
    check_positive(out, prefix)
    return out


def parse_pairs(pairs: str | Iterable[str], where: str, sep: str = ";") -> dict[str, str]:
    """``key=value`` items (a list, or one text joined by ``sep``) as ``{key: text}``; a later key wins."""
    items = pairs.split(sep) if isinstance(pairs, str) else list(pairs)
    out = {}
    for pair in items:
        if isinstance(pairs, str) and not pair.strip():
            continue
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{where}: expected KEY=VALUE, found {pair!r}")
        out[key.strip()] = value.strip()
    return out


def check_positive(values: Mapping[str, Any], prefix: str, names: Sequence[str] = POSITIVE) -> None:
    """Counts such as ``epochs``, ``batch_size`` and every one of ``ks`` must be positive integers."""
    for key in names:
        if key not in values or values[key] is None:
            continue
        value = values[key]
        items = value if isinstance(value, (tuple, list)) else [value]
        if not items or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items):
            kind = "a non-empty list of positive integers" if isinstance(value, (tuple, list)) else "a positive integer"
            raise ConfigError(f"{prefix}{key}: expected {kind}, found {_shown(value)}")


def check_numbers(values: Mapping[str, Any], prefix: str, names: Sequence[str], *, minimum: float = 0.0,
                  inclusive: bool = False) -> None:
    """Real-valued options (rates, loss weights) must be numbers above ``minimum`` (at least it, if ``inclusive``)."""
    for key in names:
        value = values.get(key)
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not (value >= minimum if inclusive else value > minimum):
            bound = f"a number {'>=' if inclusive else '>'} {minimum:g}"
            raise ConfigError(f"{prefix}{key}: expected {bound}, found {_shown(value)}")


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) if value else "an empty list"
    return repr(value)
