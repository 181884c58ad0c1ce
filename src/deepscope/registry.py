"""String-keyed registries of components.

One :class:`Registry` per kind of component (architectures, losses, metrics, optimizers, …).
An entry is either registered live (``@LOSSES.register("mse")``) or *declared* lazily with a
``"module:attribute"`` target. Declared entries keep the names, aliases and parameter models
importable without torch, so ``deepscope validate``, ``list`` and ``schema`` answer in well under a
second; the implementation is imported on first :meth:`Registry.get`.

Names are matched ignoring case, ``_`` and ``-``; aliases (DeepCalo's and Keras' names) are
declared once, here, and resolve to the canonical name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from deepscope.errors import ConfigError, did_you_mean

__all__ = ["Entry", "Registry", "check_kwargs", "normalize_name"]


def normalize_name(name: str) -> str:
    """The matching key of a name: lowercase, without ``_``, ``-`` or spaces."""
    return str(name).lower().replace("_", "").replace("-", "").replace(" ", "")


@dataclass
class Entry:
    """One registered component."""

    name: str
    target: str | Callable[..., Any]
    aliases: tuple[str, ...] = ()
    params: Any = None  # pydantic model of the component's options, if it has any
    doc: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., Any]:
        """Import (once) and return the implementation."""
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            self.target = getattr(importlib.import_module(module), attr)
        return self.target


class Registry:
    """A named collection of components of one kind.

    Args:
        kind: what the entries are, in the user's words (``"loss"``); used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._keys: dict[str, str] = {}  # normalized name or alias -> canonical name

    def declare(
        self,
        name: str,
        target: str | Callable[..., Any],
        *,
        aliases: Iterable[str] = (),
        params: Any = None,
        doc: str = "",
        **meta: Any,
    ) -> None:
        """Add an entry whose implementation is ``target`` (a callable or ``"module:attr"``)."""
        entry = Entry(name, target, tuple(aliases), params, doc, dict(meta))
        for key in (name, *entry.aliases):
            k = normalize_name(key)
            if k in self._keys and self._keys[k] != name:
                raise ValueError(f"{self.kind} name '{key}' is already used by '{self._keys[k]}'")
            self._keys[k] = name
        self._entries[name] = entry

    def register(self, name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`declare` for live objects (plugins, tests)."""

        def wrap(obj: Callable[..., Any]) -> Callable[..., Any]:
            self.declare(name, obj, **kwargs)
            return obj

        return wrap

    def canonical(self, name: str, path: str | None = None) -> str:
        """Resolve a name or alias to its canonical name.

        Raises:
            ConfigError: unknown name; the message names ``path``, the closest option and all options.
        """
        key = normalize_name(name)
        if key in self._keys:
            return self._keys[key]
        where = f"{path}: " if path else ""
        message = f"{where}unknown {self.kind} '{name}'{self.did_you_mean(name)} (available: {', '.join(self.names())})"
        raise ConfigError(message, problems=[message])

    def did_you_mean(self, name: str) -> str:
        """``"; did you mean 'x'?"`` for the closest name or alias (a misspelt Keras name finds its
        alias), or ``""`` when nothing is close."""
        aliases = [a for entry in self._entries.values() for a in entry.aliases]
        return did_you_mean(name, [*self.names(), *aliases])

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` for a name or alias."""
        return self._entries[self.canonical(name)]

    def get(self, name: str) -> Callable[..., Any]:
        """The implementation for a name or alias (imported on first use)."""
        return self.entry(name).load()

    def names(self) -> list[str]:
        """Canonical names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """All entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._keys

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def check_kwargs(target: Callable[..., Any], kwargs: dict[str, Any], path: str,
                 ignore: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` if ``kwargs`` has a key ``target`` does not accept.

    Args:
        target: the function or class the options are passed to.
        kwargs: the user's ``config`` dict.
        path: dotted config path of that dict, for the message.
        ignore: parameter names the caller fills itself (not for the user).
    """
    import inspect

    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if n not in ("self", "params", *ignore)
               and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(
                f"{path}.{key}: unknown option{did_you_mean(key, allowed)} "
                + (f"(allowed: {', '.join(allowed)})" if allowed else "(it takes no options)")
            )
