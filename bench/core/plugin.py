"""What encoders and tokenizers share: every hyperparameter is a constructor argument with a default."""

from __future__ import annotations

import inspect
from typing import Any

from bench.core.errors import ConfigError


class Plugin:
    """Parameter introspection in the scikit-learn spirit (``Encoder`` and ``Tokenizer`` derive from it)."""

    @classmethod
    def param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as constructor arguments (what the stage cache keys on)."""
        return {name: getattr(self, name) for name in self.param_names()}


def plugin_defaults(cls: type, kind: str) -> dict[str, Any]:
    """The constructor's defaults of ``kind`` (encoder or tokenizer) ``cls``; every hyperparameter needs one."""
    out = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is inspect.Parameter.empty:
            raise ConfigError(f"{kind} {cls.__name__}: parameter {name!r} needs a default value; "
                              f"give it one in {cls.__name__}.__init__")
        out[name] = param.default
    return out
