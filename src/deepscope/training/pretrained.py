"""Loading submodels or layers of an earlier run into a new model, and freezing them.

DeepCalo's ``pretrained_model``: the earlier model is rebuilt from its own saved config (the run
folder's ``config.yaml``, or ``params_path``) and its checkpoint, then the named submodels or layers
are copied into the new model. Names are dotted module paths, as ``model_summary.txt`` lists them:
``cnn``, ``scalar_net``, ``top``, ``cnn.blocks.0``.

Freezing sets ``requires_grad = False`` on the loaded parameters, so the optimizer never changes
them (torch optimizers skip parameters without gradients, weight decay included). Batch-norm layers
inside a frozen submodel still update their running mean and variance while training, as Keras 2.2
(DeepCalo's) did; freeze those statistics by using another normalization if that matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
import torch
from torch import nn

from deepscope.config.model import PretrainedModelConfig
from deepscope.data.spec import InputSpec
from deepscope.errors import CheckpointError, ConfigError, did_you_mean

__all__ = ["available_names", "freeze_pretrained", "load_pretrained", "resolve_pretrained_paths"]

KEY = "model.pretrained_model"


def resolve_pretrained_paths(cfg: PretrainedModelConfig, key: str = KEY) -> tuple[Path, Path, Path]:
    """(checkpoint, config.yaml, run folder) of the earlier run named by ``cfg``.

    ``weights_path`` is a run folder (its ``checkpoints/best.ckpt``, else ``last.ckpt``) or a
    checkpoint file; the run folder of a file is the folder holding ``config.yaml`` beside it or
    one level up (``<run>/checkpoints/best.ckpt``). ``params_path`` overrides the config: a
    ``config.yaml`` file or a folder holding one.

    Raises:
        CheckpointError: a path that does not exist, or a run folder without a checkpoint/config.
    """
    if cfg.weights_path is None:
        raise ConfigError(f"{key}.weights_path: missing; give the earlier run's folder or checkpoint")
    weights = Path(cfg.weights_path).expanduser()
    if weights.is_dir():
        run = weights
        checkpoint = next((p for p in (run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt")
                           if p.is_file()), None)
        if checkpoint is None:
            raise CheckpointError(f"{key}.weights_path: run folder '{run}' has no checkpoint "
                                  "(checkpoints/best.ckpt or checkpoints/last.ckpt)")
    elif weights.is_file():
        checkpoint = weights
        parent = weights.parent
        run = next((d for d in (parent, parent.parent) if (d / "config.yaml").is_file()),
                   parent.parent if parent.name == "checkpoints" else parent)
    else:
        raise CheckpointError(f"{key}.weights_path: '{weights}' not found (give a run folder or a checkpoint file)")
    if cfg.params_path is not None:
        params = Path(cfg.params_path).expanduser()
        config = params / "config.yaml" if params.is_dir() else params
        if not config.is_file():
            raise CheckpointError(f"{key}.params_path: '{config}' not found (give the earlier run's config.yaml)")
    else:
        config = run / "config.yaml"
        if not config.is_file():
            raise CheckpointError(f"{key}: the earlier run's config '{config}' not found; it is written beside "
                                  "checkpoints/ in every run folder, or name it with params_path")
    return checkpoint, config, run


def _read_state(checkpoint: Path, key: str = KEY) -> dict[str, torch.Tensor]:
    """The net's tensors from a Lightning checkpoint (``net.`` prefix) or a plain state dict."""
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{key}.weights_path: checkpoint '{checkpoint}' cannot be read "
                              f"({type(exc).__name__}: {exc})") from None
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
        state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    elif isinstance(ckpt, Mapping) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = dict(ckpt)
    else:
        state = {}
    if not state:
        raise CheckpointError(f"{key}.weights_path: '{checkpoint}' holds no model weights "
                              "(expected a deepscope checkpoint with a state_dict of 'net.*' tensors)")
    return state


def _earlier_model(checkpoint: Path, config: Path, run: Path, current_spec: InputSpec,
                   key: str = KEY) -> tuple[nn.Module, list[str]]:
    """Rebuild the earlier model from its config and input spec and load its checkpoint."""
    from deepscope.config import load_config
    from deepscope.models.build import build_model

    notes: list[str] = []
    try:
        old_cfg = load_config(config)
    except ConfigError as exc:
        raise CheckpointError(f"{key}: the earlier run's config '{config}' is not valid: {exc}") from None
    spec_path = next((p for p in (run / "input_spec.json", config.parent / "input_spec.json") if p.is_file()), None)
    if spec_path is not None:
        old_spec = InputSpec.load(spec_path)  # CheckpointError naming the file when corrupt
    else:
        old_spec = current_spec
        notes.append(f"no input_spec.json beside '{config}': the earlier model is rebuilt for the current data's shapes")
    try:
        old_net = build_model(old_cfg.model, old_spec)
    except ConfigError as exc:
        raise CheckpointError(f"{key}: the earlier model cannot be rebuilt from '{config}': {exc}") from None
    state = _read_state(checkpoint, key)
    try:
        old_net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{key}.weights_path: checkpoint '{checkpoint}' does not fit the model built from "
                              f"'{config}' ({first})") from None
    return old_net, notes


def available_names(net: nn.Module, depth: int = 2) -> list[str]:
    """Dotted names of the submodules of ``net`` down to ``depth`` levels (``cnn``, ``cnn.blocks``)."""
    return [name for name, _ in net.named_modules() if name and name.count(".") < depth]


def _freeze_flags(cfg: PretrainedModelConfig, key: str = KEY) -> list[bool]:
    flags = cfg.freeze_loaded_layers
    if isinstance(flags, bool):
        return [flags] * len(cfg.layers_to_load)
    if len(flags) != len(cfg.layers_to_load):  # the config checks this too
        raise ConfigError(f"{key}.freeze_loaded_layers has {len(flags)} entries but layers_to_load has "
                          f"{len(cfg.layers_to_load)}; give one bool per name, or a single bool")
    return list(flags)


def _check_names(names: list[str], old_net: nn.Module, net: nn.Module, checkpoint: Path, key: str = KEY) -> None:
    old_modules, new_modules = dict(old_net.named_modules()), dict(net.named_modules())
    shared = [n for n in available_names(net) if n in old_modules]
    for name in names:
        in_old, in_new = name in old_modules and name != "", name in new_modules and name != ""
        if in_old and in_new:
            continue
        where = ("either model" if not in_old and not in_new
                 else "the pretrained model" if not in_old else "the current model")
        raise ConfigError(
            f"{key}.layers_to_load: '{name}' is not a submodel or layer of {where} "
            f"(pretrained: '{checkpoint}'){did_you_mean(name, shared)} "
            f"(available in both: {', '.join(shared) or 'none'})"
        )


def _check_shapes(names: list[str], old_net: nn.Module, net: nn.Module, checkpoint: Path, key: str = KEY) -> None:
    problems: list[str] = []
    for name in names:
        old_state = old_net.get_submodule(name).state_dict()
        new_state = net.get_submodule(name).state_dict()
        for key in sorted(set(old_state) | set(new_state)):
            full = f"{name}.{key}"
            if key not in new_state:
                problems.append(f"{full}: only in the pretrained model")
            elif key not in old_state:
                problems.append(f"{full}: only in the current model")
            elif old_state[key].shape != new_state[key].shape:
                problems.append(f"{full}: pretrained {tuple(old_state[key].shape)}, current {tuple(new_state[key].shape)}")
    if problems:
        shown = "; ".join(problems[:12]) + (f"; … {len(problems) - 12} more" if len(problems) > 12 else "")
        raise CheckpointError(f"{key}: the layers to load differ between the pretrained model ('{checkpoint}') "
                              f"and the current one: {shown}")


def load_pretrained(net: nn.Module, cfg: PretrainedModelConfig, current_spec: InputSpec, key: str = KEY) -> list[str]:
    """Copy the submodels/layers named in ``cfg.layers_to_load`` from an earlier run into ``net``.

    Args:
        net: the freshly built model (changed in place).
        cfg: the ``model.pretrained_model`` section. Nothing happens when ``use`` is false.
        current_spec: the current data's shapes; used to rebuild the earlier model only when its
            run folder has no ``input_spec.json``.

    Returns:
        Human-readable lines saying what was loaded and frozen (for the log).

    Raises:
        ConfigError: a name that is not a module of both models (lists those that are).
        CheckpointError: missing or corrupt checkpoint, config or input spec of the earlier run, or
            loaded layers whose tensors differ in shape (all differing tensors are listed).
    """
    if not cfg.use:
        return []
    names = list(cfg.layers_to_load)
    freeze = _freeze_flags(cfg, key)
    checkpoint, config, run = resolve_pretrained_paths(cfg, key)
    old_net, lines = _earlier_model(checkpoint, config, run, current_spec, key)
    _check_names(names, old_net, net, checkpoint, key)
    _check_shapes(names, old_net, net, checkpoint, key)  # everything is checked before anything is copied
    for name, frozen in zip(names, freeze):
        target = net.get_submodule(name)
        source_state = old_net.get_submodule(name).state_dict()
        with torch.no_grad():
            target.load_state_dict(source_state)
        n_params = sum(p.numel() for p in target.parameters())
        lines.append(f"loaded '{name}' ({n_params:,} parameters, {len(source_state)} tensors) from '{checkpoint}'")
        if frozen:
            for p in target.parameters():
                p.requires_grad_(False)
            lines.append(f"froze '{name}': its {n_params:,} parameters are not trained")
    return lines


def freeze_pretrained(net: nn.Module, cfg: PretrainedModelConfig, key: str = KEY) -> list[str]:
    """Only freeze the layers ``cfg`` names, without reading the earlier run.

    For a resumed run: its checkpoint already holds the loaded weights, but ``requires_grad`` is
    not saved in checkpoints, so the freezing has to be applied again.

    Returns:
        One line per frozen name.

    Raises:
        ConfigError: a name that is not a module of ``net``.
    """
    if not cfg.use:
        return []
    modules = dict(net.named_modules())
    lines = []
    for name, frozen in zip(cfg.layers_to_load, _freeze_flags(cfg, key)):
        if name not in modules or not name:
            options = available_names(net)
            raise ConfigError(f"{key}.layers_to_load: '{name}' is not a submodel or layer of the model"
                              f"{did_you_mean(name, options)} (available: {', '.join(options)})")
        if frozen:
            params = list(modules[name].parameters())
            for p in params:
                p.requires_grad_(False)
            lines.append(f"froze '{name}': its {sum(p.numel() for p in params):,} parameters are not trained")
    return lines
