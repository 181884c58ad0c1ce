"""Building blocks shared by every config section.

``StrictModel`` forbids unknown keys. ``Component`` is DeepCalo's "str or config dict" form
(``'relu'`` or ``{class_name: relu, config: {...}}``), checked against a registry and stored under
its canonical name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_serializer
from pydantic_core import PydanticCustomError

from deepscope.registry import Registry

__all__ = ["AbsolutePath", "Component", "StrictModel", "component", "fail", "registry_name"]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())


def fail(kind: str, message: str) -> PydanticCustomError:
    """A validation error with a finished message (no template fields); its type is ``deepscope_<kind>``."""
    return PydanticCustomError(f"deepscope_{kind}", message)  # no context: braces are kept as written


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _check_name(registry: Registry, name: Any) -> str:
    if not isinstance(name, str):
        raise fail("name_type", f"found {name!r}; expected {_article(registry.kind)} name (a string)")
    if name not in registry:
        raise fail(
            "unknown_name",
            f"unknown {registry.kind} '{name}'{registry.did_you_mean(name)}"
            f" (available: {', '.join(registry.names())})",
        )
    return registry.canonical(name)


class Component(StrictModel):
    """A component named in the "str or config dict" form.

    Attributes:
        class_name: registered name or alias (stored canonical).
        config: keyword arguments for the component; checked against its signature when built.
    """

    class_name: str
    config: dict[str, Any] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> Any:
        # Dump the plain-string form when there are no options: configs stay readable.
        return self.class_name if not self.config else handler(self)


def component(registry: Registry) -> Any:
    """Annotated type of a :class:`Component` whose name must be in ``registry``."""

    def coerce(value: Any) -> Any:
        if isinstance(value, Component):
            value = {"class_name": value.class_name, "config": value.config}
        if isinstance(value, str):
            return {"class_name": _check_name(registry, value), "config": {}}
        if isinstance(value, dict) and "class_name" in value:
            value = dict(value)
            value["class_name"] = _check_name(registry, value["class_name"])
            if value.get("config") is None:
                value["config"] = {}
            return value
        form = f"expected {_article(registry.kind)} name or a mapping with class_name and config"
        if isinstance(value, dict):
            raise fail("component_form", f"found a mapping without 'class_name' (keys: {', '.join(map(str, value))}); {form}")
        raise fail("component_form", f"found {value!r}; {form}")

    return Annotated[Component, BeforeValidator(coerce)]


def registry_name(registry: Registry) -> Any:
    """Annotated ``str`` that must name an entry of ``registry`` (stored canonical)."""
    return Annotated[str, BeforeValidator(lambda v: _check_name(registry, v))]


# A path made absolute from the current folder at validation, so a run's stored config.yaml still
# points at the same file when evaluate/predict run from another folder.
AbsolutePath = Annotated[Path, AfterValidator(lambda p: p.expanduser().absolute())]
