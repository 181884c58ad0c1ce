"""Reading configs (YAML file, dict or model), dotted overrides, and readable validation errors."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, Tag, ValidationError

from deepscope.errors import ConfigError, did_you_mean

__all__ = ["apply_overrides", "dump_yaml", "format_errors", "load_config", "read_yaml", "set_path", "to_dict"]

SECTIONS_HINT = "a mapping with the sections name, seed, data, model, train, log"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *anchor' may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice in the same mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: Any, index: Any) -> Any:
        # PyYAML composes recursively: refuse deep nesting before it nears Python's recursion limit
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_NESTING:
                raise YAMLLimitError(f"it is nested more than {MAX_NESTING} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# YAML 1.1 reads 1e-3 (no dot) as a string; configs mean a float (e.g. optimizer: {config: {lr: 1e-3}})
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


# Limits that keep a hostile or broken file from hanging the loader ("billion laughs": nested aliases
# that expand to 10^9 values from a few hundred bytes). Real configs are a few KB with a few hundred
# values; anchors and aliases in them expand to far fewer than these.
MAX_CONFIG_BYTES = 10 * 2**20
MAX_EXPANDED_VALUES = 100_000
MAX_NESTING = 50


class YAMLLimitError(ValueError):
    """A YAML document over :data:`MAX_EXPANDED_VALUES` once aliases are expanded, nested deeper than
    :data:`MAX_NESTING`, or with a recursive alias."""


def _check_expansion(root: yaml.Node) -> None:
    """Count the values ``root`` expands to, aliases included, without expanding anything.

    An alias is the same node object as its anchor, so the expanded size of a node is computed once
    per node (memoized) and reused: linear in the file's size however far the aliases would expand.
    Iterative, so a deeply nested file cannot exhaust Python's stack here.

    Raises:
        YAMLLimitError: more than :data:`MAX_EXPANDED_VALUES` values, deeper than :data:`MAX_NESTING`,
            or an alias inside its own anchor.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            if total > MAX_EXPANDED_VALUES:
                raise YAMLLimitError(f"its anchors and aliases expand to more than {MAX_EXPANDED_VALUES:,} values "
                                     "(a 'billion laughs' file?); a config needs far fewer")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YAMLLimitError("an alias refers to a value that contains it (a recursive alias)")
        on_path.add(key)  # the node's ancestors and itself: the current nesting
        if len(on_path) > MAX_NESTING:
            raise YAMLLimitError(f"it is nested more than {MAX_NESTING} levels deep")
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _load_checked(text: str) -> Any:
    """Parse one YAML document with :class:`_UniqueKeyLoader`, refusing it before construction when
    it breaks the limits above (:class:`YAMLLimitError`); other problems raise ``yaml.YAMLError``."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()  # nesting is limited while composing (compose_node)
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML config file safely.

    Files over :data:`MAX_CONFIG_BYTES`, and documents whose aliases expand past
    :data:`MAX_EXPANDED_VALUES` values or that nest deeper than :data:`MAX_NESTING`, are refused
    before anything is built from them.

    Raises:
        ConfigError: missing, unreadable, too large, malformed or empty file, or not a mapping.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file '{path}' not found")
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a folder; expected a YAML file")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file '{path}' is {size / 2**20:.1f} MiB; a config is at most "
                              f"{MAX_CONFIG_BYTES // 2**20} MiB (put data in a data file, not in the config)")
        with path.open("rb") as f:  # the size may change after stat(): never read past the limit
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file '{path}' is over {MAX_CONFIG_BYTES // 2**20} MiB; a config is at most "
                              f"{MAX_CONFIG_BYTES // 2**20} MiB")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{path}' cannot be read: {exc}") from None
    try:
        raw = _load_checked(text)
    except YAMLLimitError as exc:
        raise ConfigError(f"config file '{path}' is refused: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    if raw is None:
        raise ConfigError(f"config file '{path}' is empty; expected {SECTIONS_HINT}")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{path}' holds a {type(raw).__name__}; expected {SECTIONS_HINT}")
    return raw


def _parse_value(text: str, item: str) -> Any:
    try:
        return _load_checked(text) if text.strip() else ""
    except YAMLLimitError as exc:
        raise ConfigError(f"override '{item[:80]}' is refused: {exc}") from None
    except yaml.YAMLError:
        return text


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw config dict (values parsed as YAML).

    Raises:
        ConfigError: an override without ``=`` or one that descends into a non-mapping.
    """
    out = _deep_copy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}': expected key.path=value (e.g. train.epochs=3)")
        set_path(out, key, _parse_value(value, item), where=f"override '{item}'")
    return out


def set_path(raw: dict[str, Any], key: str, value: Any, where: str | None = None) -> None:
    """Set ``key.sub`` in a raw config dict, in place, creating mappings on the way.

    A DeepCalo "str or config dict" value (``optimizer: adam``) becomes ``{class_name: adam, config: {}}``
    when a key under it is set (``optimizer.config.lr``).

    Raises:
        ConfigError: the path descends into a value that is not a mapping (``where`` names the source).
    """
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            # 'str or config dict' fields: 'optimizer=adam' then 'optimizer.config.lr=...'
            if isinstance(child, str) and parts[i + 1] in ("config", "class_name"):
                child = node[part] = {"class_name": child, "config": {}}
            else:
                at = ".".join(parts[: i + 1])
                raise ConfigError(f"{where or key}: {at} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = value


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def load_config(source: Any, overrides: Iterable[str] = ()) -> Any:
    """Validate a config from a YAML path, a dict or an ``ExperimentConfig``.

    Args:
        source: path to a YAML file, a mapping, or an already validated config.
        overrides: ``key.path=value`` strings applied before validation.

    Returns:
        The validated :class:`~deepscope.config.schema.ExperimentConfig`, defaults filled.

    Raises:
        ConfigError: every problem at once, each with its dotted key path.
    """
    from deepscope.config.schema import ExperimentConfig

    overrides = list(overrides)
    if isinstance(source, ExperimentConfig):
        if not overrides:
            return source
        raw = to_dict(source)
    elif isinstance(source, (str, Path)):
        raw = read_yaml(source)
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        raise ConfigError(f"config: found a {type(source).__name__}; expected a YAML path, a dict or an ExperimentConfig")
    from deepscope.config.raccoon_yaml import from_raccoon_yaml, is_raccoon_yaml

    if is_raccoon_yaml(raw):  # the seed's model_params / data_params / train_params file, as it is
        raw = from_raccoon_yaml(raw, str(source) if isinstance(source, (str, Path)) else "config")
    raw = apply_overrides(raw, overrides)
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(problems=format_errors(exc, ExperimentConfig)) from None


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    """The config as plain YAML/JSON-able data (canonical names, defaults filled)."""
    return cfg.model_dump(mode="json")


def dump_yaml(cfg: BaseModel | Mapping[str, Any]) -> str:
    """The config as YAML, keys in schema order."""
    data = to_dict(cfg) if isinstance(cfg, BaseModel) else dict(cfg)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


# --- error formatting -----------------------------------------------------------------------------


def _candidates(annotation: Any, discriminator: str | None = None) -> tuple[list[type[BaseModel]], dict[str, type[BaseModel]] | None]:
    """Model classes inside an annotation, and the tag map when it is a discriminated union."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        args = typing.get_args(annotation)
        for meta in args[1:]:
            discriminator = discriminator or getattr(meta, "discriminator", None)
        return _candidates(args[0], discriminator)
    if origin in (list, tuple, set, dict):
        inner = typing.get_args(annotation)
        return _candidates(inner[-1])[0] if inner else [], None
    if origin in (Union, types.UnionType):
        found: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            found += _candidates(arg)[0]
        tags = None
        if isinstance(discriminator, str):
            tags = {tag: m for m in found for tag in _tags(m, discriminator)}
        else:  # a callable discriminator: the branches carry pydantic Tags (e.g. train.loss: one | sum)
            tags = {}
            for arg in typing.get_args(annotation):
                inner = _candidates(arg)[0]
                metas = typing.get_args(arg)[1:] if typing.get_origin(arg) is typing.Annotated else ()
                tags.update({meta.tag: inner[0] for meta in metas if isinstance(meta, Tag) and inner})
            tags = tags or None
        return found, tags
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if isinstance(discriminator, str) and discriminator in annotation.model_fields:
            return [annotation], {tag: annotation for tag in _tags(annotation, discriminator)}
        return [annotation], None
    return [], None


def _tags(model: type[BaseModel], discriminator: str) -> list[str]:
    field = model.model_fields.get(discriminator)
    return [str(a) for a in typing.get_args(field.annotation)] if field is not None else []


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """Clean dotted path (union tags and branch labels dropped) and the model class at its end."""
    parts: list[str] = []
    current: list[type[BaseModel]] = [root]
    tags: dict[str, type[BaseModel]] | None = None
    for item in loc:
        if tags is not None and isinstance(item, str) and item in tags:
            current, tags = [tags[item]], None
            continue
        if isinstance(item, int):
            if parts:
                parts[-1] += f"[{item}]"
            continue
        model = next((m for m in current if item in m.model_fields), None)
        if model is None:
            if current:
                parts.append(str(item))  # an unknown key: keep it
                current = []
            continue  # a union branch label such as 'int' or 'list[int]'
        parts.append(str(item))
        field = model.model_fields[item]
        current, tags = _candidates(field.annotation, field.discriminator if isinstance(field.discriminator, str) else None)
    return parts, (current[0] if len(current) == 1 else None)


def format_errors(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem: ``dotted.path: what was found; what is expected``."""
    grouped: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        ctx = err.get("ctx") or {}
        if kind == "cross_check":
            for line in str(ctx.get("msgs", err["msg"])).splitlines():
                grouped.setdefault(line, [])
            continue
        parts, _ = _walk(root, loc)
        path = ".".join(parts) or "(top level)"
        if kind == "extra_forbidden":
            parent_parts, parent = _walk(root, loc[:-1])
            allowed = list(parent.model_fields) if parent is not None else []
            key = str(loc[-1])
            hint = did_you_mean(key, allowed)
            msg = f"unknown key{hint}" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "union_tag_invalid":
            disc = str(ctx.get("discriminator", "")).strip("'")
            path = f"{path}.{disc}"
            expected = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
            tag = ctx.get("tag")
            from deepscope.components import ARCHITECTURES, SOURCES

            registry = {"source": SOURCES, "architecture": ARCHITECTURES}.get(disc)
            hint = registry.did_you_mean(str(tag)) if registry is not None else did_you_mean(str(tag), expected)
            kind_name = registry.kind if registry is not None else "name"
            msg = f"unknown {kind_name} '{tag}'{hint} (available: {', '.join(expected)})"
        elif kind == "union_tag_not_found":
            disc = str(ctx.get("discriminator", "")).strip("'")
            path = f"{path}.{disc}"
            msg = "required key is missing"
        elif kind == "literal_error":
            expected = str(ctx.get("expected", ""))
            options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",")]
            found = err.get("input")
            hint = did_you_mean(str(found), options) if isinstance(found, str) else ""
            msg = f"found {found!r}; expected {expected}{hint}"
        elif kind == "string_pattern_mismatch" and path == "name":
            msg = f"found {err.get('input')!r}; expected a folder-safe name (letters, digits, '.', '_', '-')"
        elif kind == "path_type":
            msg = f"found {_show(err.get('input'))}; expected a path (a string)"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            msg = f"found {_show(err.get('input'))}; expected a mapping of keys"
        elif kind.startswith(("value_error", "assertion_error")):
            msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        elif "input" in err and not kind.startswith("deepscope_"):  # our own messages are complete
            msg = f"found {_show(err['input'])}; expected {_lower_first(err['msg'].removeprefix('Input should be '))}"
        else:
            msg = err["msg"]
        grouped.setdefault(path, []).append(msg)
    lines: list[str] = []
    for path, msgs in grouped.items():
        if not msgs:
            lines.append(path)
            continue
        unique = list(dict.fromkeys(msgs))
        if len(unique) > 1 and all(m.startswith("found ") for m in unique):
            found = unique[0].split(";")[0]
            expected = [m.split("; expected ", 1)[-1] for m in unique]
            lines.append(f"{path}: {found}; expected {' or '.join(expected)}")
        else:
            # messages that already start with a dotted key (cross-key checks) stand on their own
            lines.extend(m if m.startswith(f"{path}.") else f"{path}: {m}" for m in unique)
    return lines


def _show(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})" if not isinstance(value, (dict, list)) else text


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text
