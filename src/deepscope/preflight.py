"""Pre-flight checks: every check ``deepscope train`` makes before its first step that reads no data.

``deepscope validate`` and ``Experiment.train`` both call :func:`check` (train first thing, before
it opens the run folder), so the two give the same verdict with the same message by construction.
One problem raises its own error unchanged (the class and words ``train`` always used); several
raise one :class:`~deepscope.errors.ConfigError` listing every problem, each line starting with its
dotted key. Nothing here imports Lightning; torch is imported only when there is something to build:
a component with options, a learning-rate schedule with kwargs, a pretrained model, or data whose
shapes the source can tell without reading them (the model is then built for them).

What ``Experiment.train`` checks before ``trainer.fit``, top to bottom, and where:

1. ``load_config`` (``Experiment(...)``): schema, names, cross-field checks. Both, before this module.
2. ``check_environment``: ``16-mixed`` on a CPU, an unknown ``train.compile.backend``, ``log.mlflow``
   without mlflow. **Here** (:mod:`deepscope.training.environment`), judged on this machine.
3. ``device_problem``: GPUs asked for that this machine lacks. **Here**, judged on this machine.
4. ``open_run`` / ``_resume_state``: a run folder holding another config, or not a run, an unreadable
   ``last.ckpt``. Train only: they are about the run folder, not the config.
5. ``prepare_data``: the file (missing, not a zip), its layout, ``data.split`` against the sets and the
   sample count, the validation set, per-sample shapes, the targets against the loss (labels, one-hot,
   binary range). **Here** where the source describes itself without reading its arrays
   (:func:`deepscope.data.sources.describe`: ``sklearn_digits``, ``calorimeter``, ``npz`` from its
   ``.npy`` headers and targets, ``atlas_hdf5`` from its metadata and one event per set, for a
   regression loss). Train only: ``arrays`` (given by the caller), ``atlas_hdf5`` with a
   classification loss and ``calorimeter`` with a binary loss (their checks read every target), non-finite
   values, sample counts that differ inside an ``npz`` set, ``npz`` members that are not plain
   ``.npy`` arrays, an existing ``calorimeter`` ``hdf5_path`` written with other settings. A missing
   ``npz`` file fails both (exit 2).
6. ``multiply_output_with`` with ``data.standardize.targets``. **Here** when the data is described.
7. ``build_model(cfg.model, spec, loss)``: activations, normalizations, initializers, layer_reg
   regularizers and constraints, DropBlock, kernel sizes and conv_dim against the images, cardinality,
   squeeze-and-excite, FiLM wiring, gate images, upsampling, the output size against the targets
   (``check_output``). **Here**: every component with options is built on dummies (each problem is
   listed), then, when the data is described, the model is built exactly as train builds it.
8. ``pretrained_model``: ``load_pretrained`` for a new run (paths, the earlier config, input spec and
   checkpoint, ``layers_to_load`` names and shapes), ``freeze_pretrained`` for a resumed one (names).
   **Here** (a run resumes when ``<log.dir>/<name>/checkpoints/last.ckpt`` exists); the paths alone
   when the data is not described.
9. ``make_loss``: loss options against the loss's signature. **Here**. Option *values* (a
   ``label_smoothing`` of 2) fail in the first step's forward; not checked.
10. ``configure_optimizers``: ``make_optimizer`` (option names with did-you-mean, values: a negative
    lr, betas of the wrong length, Yogi's and PAdam's options) and ``make_scheduler`` (schedule kwargs
    names and values, ``cyclical_momentum`` against the optimizer, the warm-up). **Here** when the
    optimizer or the schedule has options, or the model was built and there is a schedule, a
    warm-up or frozen pretrained layers: on the model's trainable parameters (a dummy one without a
    model). A named optimizer without options takes any parameters (constructing one imports
    ``torch._dynamo``, about a second).
11. Metrics: names and their family against the loss are config checks (1); ``Task`` takes them as
    they are. ``channels_last``, ``summarize``, ``compile_net`` (lazy) and ``auto_lr``: nothing to check.
12. ``build_trainer``: Lightning's own checks of its options. Train only (they need Lightning); the
    settings deepscope knows Lightning to refuse with a traceback are checked in 2 and 3.
13. ``train.lr_finder``: its options are config checks (1); the scan trains on the data and a resumed
    run reads its ``suggestion.json``. Train only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from deepscope.config.common import Component
from deepscope.config.train import LossTerm
from deepscope.errors import ConfigError, DeepscopeError

__all__ = ["COMPONENT_FIELDS", "check", "components", "last_checkpoint"]

# the exceptions a factory raises for a bad option value, reported under the option's dotted key
_VALUE_ERRORS = (TypeError, ValueError, RuntimeError, IndexError)
_KEYED = re.compile(r"(name|seed|data|model|train|log)[.:\[]")  # a line that starts with its dotted key

# what each config key holding a component builds (the key is the field's name)
COMPONENT_FIELDS = {
    "activation": "activation", "final_activation": "activation", "dense_activation": "activation",
    "initialization": "initializer",
    "normalization": "normalization", "kernel_regularizer": "regularizer", "bias_regularizer": "regularizer",
    "activity_regularizer": "regularizer", "kernel_constraint": "constraint", "bias_constraint": "constraint",
    "loss": "loss", "optimizer": "optimizer",
}


class _Problems:
    """The problems found so far: each error, and the lines it contributes."""

    def __init__(self) -> None:
        self.errors: list[DeepscopeError] = []
        self.lines: list[str] = []

    def add(self, error: DeepscopeError, key: str) -> None:
        """Record ``error``; a line of it that does not start with a dotted key gets ``key``."""
        lines = list(error.problems) if isinstance(error, ConfigError) and error.problems else [str(error)]
        self.errors.append(error)
        self.lines += [line if _KEYED.match(line) else f"{key}: {line}" for line in lines]

    @contextlib.contextmanager
    def catch(self, key: str) -> Iterator[None]:
        """Record a user error raised inside, and a factory's own error for a bad value under ``key``."""
        try:
            yield
        except DeepscopeError as exc:
            self.add(exc, key)
        except _VALUE_ERRORS as exc:
            error = ConfigError(f"{key}: {exc}")
            error.__cause__ = exc
            self.add(error, key)

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigError(problems=self.lines)


def check(cfg: Any) -> None:
    """Run every check ``train`` makes before its first step that needs no data read.

    Args:
        cfg: the validated :class:`~deepscope.config.ExperimentConfig`.

    Raises:
        DeepscopeError: the one problem found (``ConfigError``, ``DataError``, ``CheckpointError``),
            or a :class:`ConfigError` listing every problem when there are several.
    """
    from deepscope.training.environment import check_environment, device_problem

    problems = _Problems()
    with problems.catch("train"):
        check_environment(cfg)  # e.g. 16-mixed precision on a CPU, log.mlflow without mlflow
    if (problem := device_problem(cfg.train)) is not None:
        problems.add(ConfigError(problem), "train")
    spec = None
    with problems.catch("data"):
        spec = _describe(cfg)
    if spec is not None:
        from deepscope.tasks import family_for

        with problems.catch("train"):
            family_for(cfg).check_data(cfg, spec)  # the task family's checks of the config against the data
    # a component without options is its name, which the config checked
    parts = [(path, part) for path, part in components(cfg)
             if part.config and COMPONENT_FIELDS[_field(path)] != "optimizer"]
    if spec is not None or parts or _needs_torch(cfg):
        import torch

        with torch.random.fork_rng(devices=[]):  # the checks leave the random state of a run alone
            before = len(problems.lines)
            for path, part in parts:
                with problems.catch(f"{path}.config"):
                    _build_component(path, part)
            net = None
            # the model would stop at the first of the problems already listed
            if spec is not None and not any(line.startswith("model.") for line in problems.lines[before:]):
                with problems.catch("model"):
                    net = _build_model(cfg, spec)
            _check_pretrained(cfg, net, spec, problems)
            _check_optimizer(cfg, net, problems)
    problems.raise_any()


def components(cfg: Any) -> list[tuple[str, Component]]:
    """Every component (the "str or config dict" form) in the ``model`` and ``train`` sections, with
    its dotted key, in the order of the config."""
    found: list[tuple[str, Component]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Component):
            found.append((path, node))
        elif isinstance(node, LossTerm):  # a term of a weighted sum of losses
            found.append((path, node.component()))
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name), f"{path}.{name}")
        elif isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
        elif isinstance(node, dict) and path == "train.loss":  # a loss per named output
            for output, item in node.items():
                walk(item, f"{path}.{output}")

    walk(cfg.model, "model")
    walk(cfg.train, "train")
    return found


# --- the steps ---------------------------------------------------------------------------------------


def _describe(cfg: Any) -> Any:
    """The data's spec from the source's description, or ``None``; with the spec's own check."""
    from deepscope.components import SOURCES

    if "describe" not in SOURCES.entry(cfg.data.source).meta:
        return None  # (preparing the description imports torch)
    from deepscope.data.prepare import check_target_standardization, describe_data

    spec = describe_data(cfg)
    if spec is not None:
        check_target_standardization(cfg, spec)
    return spec


def _field(path: str) -> str:
    if path.startswith("train.loss.") or path.startswith("train.loss["):
        return "loss"  # a term of a weighted sum, or the loss of a named output
    return re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])


def _needs_torch(cfg: Any) -> bool:
    """Options of the optimizer or the lr schedule, or a pretrained model to find."""
    train = cfg.train
    schedule_kwargs = train.lr_schedule is not None and bool(train.lr_schedule.kwargs)
    from deepscope.config.model import pretrained_sections

    return bool(train.optimizer.config or schedule_kwargs or pretrained_sections(cfg.model))


def _dummy_input(path: str) -> Any:
    import torch

    conv = path.startswith(("model.cnn.", "model.network_in_network."))
    return torch.zeros(2, 4, 3, 3) if conv else torch.zeros(2, 4)  # (B, C, H, W) or (B, F)


def _build_component(path: str, spec: Component) -> None:
    """Build one component from its options, as the builders do, on dummies of 4 channels."""
    import torch

    kind = COMPONENT_FIELDS[_field(path)]
    if kind == "loss":
        from deepscope.losses import make_loss

        make_loss(spec, path)
    elif kind in ("activation", "normalization"):
        from deepscope.models.layers import make_activation, make_normalization

        x = _dummy_input(path)
        layer = make_activation(spec, 4, path) if kind == "activation" else \
            make_normalization(spec, 4, x.ndim - 2, path)
        layer(x)
    elif kind == "initializer":
        from deepscope.models.layers import make_initializer

        init = make_initializer(spec, path)
        if init is not None:
            init(torch.empty(4, 3))
    else:
        from deepscope.models.regularization import make_constraint, make_regularizer

        make = make_regularizer if kind == "regularizer" else make_constraint
        make(spec, path)(torch.ones(4, 3))


def _build_model(cfg: Any, spec: Any) -> Any:
    from deepscope.models.build import build_model

    return build_model(cfg.model, spec, cfg.train.loss_name)


def last_checkpoint(cfg: Any) -> Path:
    """The ``last.ckpt`` that ``train`` would resume from (``<log.dir>/<name>/checkpoints/last.ckpt``)."""
    from deepscope.training.run import RunDir  # Lightning-free

    return RunDir(Path(cfg.log.dir) / cfg.name).last


def _resumes(cfg: Any) -> bool:
    """Whether ``train`` would resume this run (without ``--new-version``)."""
    return last_checkpoint(cfg).is_file()


def _check_pretrained(cfg: Any, net: Any, spec: Any, problems: _Problems) -> None:
    from deepscope.config.model import pretrained_sections

    sections = pretrained_sections(cfg.model)
    if not sections:
        return
    from deepscope.training.pretrained import freeze_pretrained, load_pretrained, resolve_pretrained_paths

    resumes = _resumes(cfg)
    for key, pretrained in sections:
        with problems.catch(key):
            if resumes:  # a resumed run has the loaded weights in its checkpoint
                if net is not None:
                    freeze_pretrained(net, pretrained, key)
            elif net is not None:
                load_pretrained(net, pretrained, spec, key)
            else:
                resolve_pretrained_paths(pretrained, key)


def _check_optimizer(cfg: Any, net: Any, problems: _Problems) -> None:
    """The optimizer over the model's trainable parameters (a dummy one without a model) and the lr
    schedule on it, as ``configure_optimizers`` makes them."""
    train = cfg.train
    schedule_kwargs = train.lr_schedule is not None and bool(train.lr_schedule.kwargs)
    from deepscope.config.model import pretrained_sections

    # with a model: also the schedule's needs of the optimizer, and frozen parameters (none left to train)
    with_model = net is not None and (train.lr_schedule is not None or train.warmup is not None
                                      or bool(pretrained_sections(cfg.model)))
    if not (train.optimizer.config or schedule_kwargs or with_model):
        return  # a named optimizer without options takes any parameters; constructing one costs ~1 s
    import torch

    from deepscope.optim.optimizers import make_optimizer
    from deepscope.optim.schedules import build_schedule, make_scheduler, schedule_spec
    from deepscope.training.task import monitor_mode

    params = [p for p in net.parameters() if p.requires_grad] if net is not None else \
        [torch.nn.Parameter(torch.zeros(2))]
    optimizer = None
    with problems.catch("train.optimizer.config"):
        optimizer = make_optimizer(train.optimizer, params, train.lr)
    schedule = schedule_spec(train, 10, None, monitor_mode(train.monitor))  # any number of batches does
    if schedule is None or (optimizer is None and schedule.name is None):
        return
    with problems.catch("train.lr_schedule.kwargs"):
        # without an optimizer, the schedule alone (not what it needs of the optimizer)
        make_scheduler(optimizer, schedule) if optimizer is not None else build_schedule(schedule)
