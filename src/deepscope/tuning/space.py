"""The search space: config values of one trial from Optuna's ``suggest_*`` calls, grids, checks.

Optuna's categorical parameters hold numbers, strings, booleans and ``None`` only; a choice among
other values (block depths ``[1, 2, 2]``, mappings) is offered to Optuna as the values' JSON text and
turned back into the value here, so trial tables and figures show ``[1, 2, 2]`` as written.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from deepscope.config.io import _deep_copy, load_config, set_path
from deepscope.config.tune import SpaceEntry
from deepscope.errors import ConfigError

__all__ = ["apply_values", "check_space", "choice_label", "grid_space", "lookup", "sample"]

_MISSING = object()
_PRIMITIVE = (type(None), bool, int, float, str)


def choice_label(value: Any) -> Any:
    """What Optuna stores for a choice: the value itself when it is a primitive, else its JSON text."""
    return value if isinstance(value, _PRIMITIVE) else json.dumps(value, sort_keys=True)


def lookup(raw: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a raw config dict, or a private missing marker. A component in its
    short form (``optimizer: adam``) reads as ``{class_name: adam, config: {}}``."""
    node: Any = raw
    for part in path.split("."):
        if isinstance(node, str) and part in ("class_name", "config"):
            node = {"class_name": node, "config": {}}
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _holds(entry: SpaceEntry, values: dict[str, Any], base: dict[str, Any]) -> bool:
    for key, wanted in (entry.when or {}).items():
        got = values[key] if key in values else lookup(base, key)
        if got is _MISSING:
            return False
        if not (got == wanted or (isinstance(wanted, list) and got in wanted)):
            return False
    return True


def suggest(trial: Any, path: str, entry: SpaceEntry) -> Any:
    """One value of ``entry`` from an Optuna trial, named by its dotted path."""
    if entry.float_range is not None:
        low, high = entry.float_range
        value = trial.suggest_float(path, low, high, log=entry.log, step=entry.step)
        # low + k * step in binary floating point: 0.30000000000000004 is written 0.3
        return float(f"{value:.12g}") if entry.step is not None else value
    if entry.int_range is not None:
        low, high = entry.int_range
        return trial.suggest_int(path, low, high, step=int(entry.step or 1), log=entry.log)
    labels = [choice_label(v) for v in entry.choice]
    picked = trial.suggest_categorical(path, labels)
    return _deep_copy(entry.choice[labels.index(picked)])


def sample(trial: Any, space: dict[str, SpaceEntry], base: dict[str, Any]) -> dict[str, Any]:
    """The trial's value of every entry whose ``when`` holds, in the order of the space."""
    values: dict[str, Any] = {}
    for path, entry in space.items():
        if _holds(entry, values, base):
            values[path] = suggest(trial, path, entry)
    return values


def apply_values(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw config ``base`` with each dotted path set to its value."""
    raw = _deep_copy(base)
    for path, value in values.items():
        set_path(raw, path, _deep_copy(value), where=f"tune.space.{path}")
    return raw


def decode_params(space: dict[str, SpaceEntry], params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's stored params of a trial -> config values (choice labels turned back into values)."""
    out = {}
    for path, label in params.items():
        entry = space.get(path)
        if entry is not None and entry.choice is not None:
            labels = [choice_label(v) for v in entry.choice]
            out[path] = _deep_copy(entry.choice[labels.index(label)]) if label in labels else label
        else:
            out[path] = label
    return out


def grid_space(space: dict[str, SpaceEntry], where: str) -> dict[str, list[Any]]:
    """Every value of every entry, for Optuna's grid sampler.

    Raises:
        ConfigError: a float range without a step, or a log-scale range (no grid of its own).
    """
    grid: dict[str, list[Any]] = {}
    for path, entry in space.items():
        if entry.choice is not None:
            grid[path] = [choice_label(v) for v in entry.choice]
            continue
        rng = entry.float_range or entry.int_range
        if entry.log or (entry.float_range is not None and entry.step is None):
            raise ConfigError(f"{where}.{path}: sampler grid needs a finite set of values; give this range a step, "
                              f"or list the values with choice: [...]")
        step = entry.step or 1
        count = int(np.floor((rng[1] - rng[0]) / step + 1e-9)) + 1
        values = [rng[0] + i * step for i in range(count)]
        grid[path] = [int(v) for v in values] if entry.int_range is not None else [float(v) for v in values]
    return grid


def check_space(base: dict[str, Any], space: dict[str, SpaceEntry], where: str) -> None:
    """Problems of the space that would fail every trial, found before any trial starts: a key the config
    has no place for (with the closest one), a ``when`` naming a later entry, repeated choices.

    Each entry is tried alone on the base config with its first value; only problems at or above its
    path that say the key is unknown are reported here: a value that fits only some combinations is
    left for the trials (a failed trial with its message).

    Raises:
        ConfigError: every problem, each named by ``<where>.<path>``.
    """
    problems: list[str] = []
    order = list(space)
    for i, (path, entry) in enumerate(space.items()):
        for key in entry.when or {}:
            if key == path:
                problems.append(f"{where}.{path}.when: an entry cannot depend on itself")
            elif key in space and order.index(key) > i:
                problems.append(f"{where}.{path}.when: '{key}' is searched after '{path}'; list it before")
            elif key not in space and lookup(base, key) is _MISSING:
                problems.append(f"{where}.{path}.when: '{key}' is neither an earlier entry of the space nor a key "
                                "of the config, so the condition could never hold")
        if entry.choice is not None:
            labels = [json.dumps(choice_label(v)) for v in entry.choice]
            if len(set(labels)) != len(labels):
                problems.append(f"{where}.{path}.choice: a value is listed twice")
        first = entry.choice[0] if entry.choice is not None else (entry.float_range or entry.int_range)[0]
        try:
            load_config(apply_values(base, {path: first}))
        except ConfigError as exc:
            for line in exc.problems or [str(exc)]:
                at = line.split(":", 1)[0]
                if path.startswith(at) and ("unknown key" in line or "not a mapping" in line):
                    problems.append(f"{where}.{path}: {line}")
    if problems:
        raise ConfigError(problems=problems)
