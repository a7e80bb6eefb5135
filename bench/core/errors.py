"""User-facing errors: what was expected, what was found, what to do."""

from __future__ import annotations


class SidbenchError(Exception):
    """An error caused by input or configuration; the CLI prints it without a traceback."""


class DataError(SidbenchError):
    """A dataset file is missing, corrupt or malformed."""


class ConfigError(SidbenchError):
    """An unknown name or option, or a value of the wrong kind."""
