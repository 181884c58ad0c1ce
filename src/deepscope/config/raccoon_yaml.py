"""RACCOON / PENGUIN run files (``temp.yaml``) read as they are.

The seed's file has three sections (``shared/reference/SEED-FACTS.md`` §2)::

    model_params: {architecture: RACCOON | PENGUIN, layer_param, dropout, name}
    data_params:  {datafile, train_seeds, test_seeds, newton_augmentation}
    train_params: {epochs, lr, log_dir}

:func:`from_raccoon_yaml` turns it into the native config, which ``deepscope validate --resolved``
prints: the ``raccoon`` / ``penguin`` net, the ``cube_hdf5`` source with seeds [0, train_seeds) for
training and [train_seeds, train_seeds + test_seeds) scored every epoch and choosing the best
checkpoint (the seed's test set; deepscope's ``val`` split), 2D slices along the cubes' first axis
(the seed's 2D networks), Newtonian cubes (class 0) multiplied by ``newton_augmentation``, one
logit with BCE-with-logits, Adam with betas (0.5, 0.999), accuracy and AUC, and the run named
``model_params.name`` in ``train_params.log_dir``, so running the same file again resumes the run and
a changed setting is refused with a diff. Torch-free: the config layer calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from deepscope.errors import ConfigError, did_you_mean

__all__ = ["SECTIONS", "from_raccoon_yaml", "is_raccoon_yaml"]

log = logging.getLogger("deepscope")

SECTIONS = {
    "model_params": ("architecture", "layer_param", "dropout", "name"),
    "data_params": ("datafile", "train_seeds", "test_seeds", "newton_augmentation"),
    "train_params": ("epochs", "lr", "log_dir"),
}
_ARCHITECTURES = {"raccoon": "raccoon", "penguin": "penguin"}


def is_raccoon_yaml(raw: Mapping[str, Any]) -> bool:
    """Whether a raw config is a RACCOON/PENGUIN run file (one of its sections and no native one)."""
    native = {"name", "seed", "task", "data", "model", "train", "log"}
    return any(k in raw for k in SECTIONS) and not any(k in raw for k in native)


def _section(raw: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, Mapping):
        problems.append(f"{name}: found {value!r}; expected a mapping of {', '.join(SECTIONS[name])}")
        return {}
    for key in value:
        if key not in SECTIONS[name]:
            problems.append(f"{name}.{key}: unknown key{did_you_mean(str(key), list(SECTIONS[name]))} "
                            f"(allowed: {', '.join(SECTIONS[name])})")
    return dict(value)


def _number(section: dict[str, Any], where: str, key: str, kind: type, problems: list[str],
            required: bool = True) -> Any:
    if key not in section:
        if required:
            problems.append(f"{where}.{key}: required key is missing")
        return None
    value = section[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if not ok:
        problems.append(f"{where}.{key}: found {value!r}; expected {'an integer' if kind is int else 'a number'}")
        return None
    return value


def from_raccoon_yaml(raw: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """The native config (a raw dict, validated by the caller) of a RACCOON/PENGUIN run file.

    Raises:
        ConfigError: unknown sections or keys (with did-you-mean), missing or mistyped values, an
            unknown architecture.
    """
    problems: list[str] = []
    for key in raw:
        if key not in SECTIONS:
            problems.append(f"{key}: unknown section{did_you_mean(str(key), list(SECTIONS))} "
                            f"(a RACCOON/PENGUIN file has {', '.join(SECTIONS)})")
    model = _section(raw, "model_params", problems)
    data = _section(raw, "data_params", problems)
    train = _section(raw, "train_params", problems)
    arch = model.get("architecture")
    if not isinstance(arch, str) or arch.lower() not in _ARCHITECTURES:
        hint = did_you_mean(str(arch).lower(), list(_ARCHITECTURES)) if isinstance(arch, str) else ""
        problems.append(f"model_params.architecture: found {arch!r}{hint}; expected \"RACCOON\" or \"PENGUIN\"")
    train_seeds = _number(data, "data_params", "train_seeds", int, problems)
    test_seeds = _number(data, "data_params", "test_seeds", int, problems)
    if "datafile" not in data:
        problems.append("data_params.datafile: required key is missing")
    if problems:
        raise ConfigError(problems=problems)
    native: dict[str, Any] = {
        "model": {"architecture": _ARCHITECTURES[arch.lower()]},
        "data": {"source": "cube_hdf5", "path": data["datafile"], "slices": {"axes": [0]},
                 "seeds": {"train": [0, train_seeds]}},
        "train": {"loss": "bce_with_logits", "metrics": ["accuracy", "auc"],
                  "optimizer": {"class_name": "adam", "config": {"beta_1": 0.5, "beta_2": 0.999}}},
    }
    if test_seeds:  # scored every epoch and choosing the best model, as the seed's test set: deepscope's val
        native["data"]["seeds"]["val"] = [train_seeds, train_seeds + test_seeds]
    else:
        native["train"]["monitor"] = "train_loss"
    for key in ("layer_param", "dropout"):
        if key in model:
            native["model"][key] = model[key]
    if "name" in model:
        native["name"] = model["name"]
    if data.get("newton_augmentation", 1.0) != 1.0:
        native["data"]["amplitude"] = {0: data["newton_augmentation"]}  # the Newtonian cubes are class 0
    for key, native_key in (("epochs", "epochs"), ("lr", "lr")):
        if key in train:
            native["train"][native_key] = train[key]
    if "log_dir" in train:
        native["log"] = {"dir": train["log_dir"]}
    log.info(f"{where}: a {arch.upper()} run file (model_params, data_params, train_params), read as the native "
             "config that 'deepscope validate --resolved' prints")
    return native
