"""User-facing errors.

Everything a user can cause (a wrong config, a bad file, a missing checkpoint) raises a subclass of
:class:`DeepscopeError`. The CLI prints its message without a traceback and exits with
:attr:`DeepscopeError.exit_code`; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeepscopeError",
    "RunInUse",
    "TrainingDiverged",
    "did_you_mean",
]


class DeepscopeError(Exception):
    """Base class of every error a user can cause and fix."""

    exit_code = 2


class ConfigError(DeepscopeError):
    """The config is invalid. ``problems`` holds one line per problem (``path: message``)."""

    def __init__(self, message: str | None = None, problems: Iterable[str] = ()) -> None:
        self.problems = list(problems)
        if message is None:
            n = len(self.problems)
            head = f"invalid config ({n} problem{'s' if n != 1 else ''}):"
            message = "\n".join([head, *(f"  - {p}" for p in self.problems)])
        super().__init__(message)


class DataError(DeepscopeError):
    """The data does not match what the config or the data contract expects."""


class CheckpointError(DeepscopeError):
    """A run folder or checkpoint is missing, corrupt or incompatible."""


class RunInUse(DeepscopeError):
    """Another process is writing the run folder (it holds the folder's lock)."""


class TrainingDiverged(DeepscopeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 1


def did_you_mean(name: str, options: Iterable[str], n: int = 1) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest option, or ``""`` when nothing is close.

    Matching ignores case, ``_`` and ``-`` so that Keras-style names (``BatchNormalization``)
    find their snake_case counterparts.
    """

    def norm(s: str) -> str:
        return s.lower().replace("_", "").replace("-", "")

    by_norm: dict[str, str] = {}
    for o in options:
        by_norm.setdefault(norm(o), o)  # the first spelling wins (canonical names before aliases)
    close = difflib.get_close_matches(norm(str(name)), list(by_norm), n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{by_norm[c]}'" for c in close) + "?"
