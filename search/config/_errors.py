"""The config's one error type and the pieces of its messages: a value quoted short, the
close matches of a typo, an unknown key with the valid ones, where to set a key.

The lowest module of :mod:`search.config`: every other one raises through it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message says how to fix it."""


#: The most characters of a value an error message quotes (a 900 KB value is cut, once).
QUOTE_MAX = 80


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to :data:`QUOTE_MAX` characters with its full length said: an
    error message names the value, never prints megabytes of it."""
    text = repr(value)
    if len(text) <= QUOTE_MAX:
        return text
    return f"{text[:QUOTE_MAX - 20]}... ({len(text)} characters)"


def did_you_mean(key: str, valid: Iterable[str], n: int = 3) -> str:
    """`` Did you mean 'a', 'b'?`` for the close matches of a mistyped ``key``, else ``""``."""
    close = difflib.get_close_matches(key, list(valid), n=n)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_keys(where: str, keys: Iterable[str], valid: Iterable[str], what: str = "key") -> None:
    """A ConfigError for the first of ``keys`` not in ``valid``, naming the close matches
    and every valid one."""
    valid = list(valid)
    for key in keys:
        if key not in valid:
            hint = did_you_mean(key, valid)
            raise ConfigError(
                f"unknown {what} {key!r} in {where}.{hint} Valid: {', '.join(sorted(valid))}"
            )


def fix(key: str) -> str:
    """The fix appended to every value error: where to set the key."""
    return f" Set it in the experiment YAML or as {key}=VALUE on the command line."


__all__ = ["QUOTE_MAX", "ConfigError", "check_keys", "did_you_mean", "fix", "short_repr"]
