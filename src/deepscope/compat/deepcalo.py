"""DeepCalo's Python API on top of deepscope: ``get_default_params`` and ``ModelContainer``.

A DeepCalo script keeps working::

    params = get_default_params()
    params.update({"epochs": 10, "top": {"units": [32, 1]}})
    mc = ModelContainer(data, params, dirs)
    mc.train()
    mc.evaluate()

The flat params dict is merged in depth into DeepCalo's defaults (as DeepCalo did), translated
into deepscope's native config (:func:`params_to_config`) and run by
:class:`deepscope.training.experiment.Experiment` — there is no second implementation. The data
dict is DeepCalo's (images channels last) and is passed through unchanged.

Where things end up: the run folder is ``<dirs['log']>/<name>/`` with the usual deepscope layout
(``checkpoints/``, ``figures/`` — including ``architecture.png`` when ``save_figs`` — ``metrics.csv``,
``predictions/``, ``config.yaml``). ``dirs['fig']``, ``dirs['saved_models']`` and
``dirs['lr_finder']`` are accepted but not written to. ``name`` is DeepCalo's time stamp,
``<UTC time>_<epochs>_epochs``, unless ``params['name']`` gives one (the same name again resumes
that run).

Differences from DeepCalo, on purpose:

- no standardization is applied (DeepCalo applied none; standardize the arrays yourself, as
  with DeepCalo, or use ``deepscope.train`` with ``data.standardize``);
- ``n_gpus: 0`` trains on the CPU, ``1`` on one device of ``train.accelerator: auto``, ``N > 1`` on N
  GPUs with DDP (one process per GPU: Lightning starts the script again for each) with
  ``batch_size / N`` samples per GPU, so that a step sees DeepCalo's batch;
- ``lr_finder``, ``lr_schedule`` and ``auto_lr`` map onto ``train.lr_finder``, ``train.lr_schedule``
  and ``train.auto_lr``; with ``prompt_for_input`` the range typed (or, without a terminal, the
  suggestion) is used;
- ``data_generator`` is refused with a message (its default passes);
- ``scalar_net['strides']`` (documented by DeepCalo, meaningless for dense layers) is ignored.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deepscope.config.model import (
    CNNConfig,
    FiLMGenConfig,
    GateNetConfig,
    NetworkInNetworkConfig,
    ScalarNetConfig,
    TopConfig,
    TrackNetConfig,
)
from deepscope.errors import CheckpointError, ConfigError, did_you_mean

__all__ = ["ModelContainer", "get_default_params", "merge_params", "params_to_config"]

log = logging.getLogger("deepscope")

_SUBMODEL_KEYS = {"initialization": "orthogonal", "activation": None, "normalization": None, "layer_reg": {},
                  "dropout": None}

# DeepCalo 0.2.x utils.get_default_params, key for key (SEED-FACTS §1)
_DEFAULTS: dict[str, Any] = {
    # Training
    "epochs": 1,
    "batch_size": 32,
    "loss": "mse",
    "metrics": None,
    "optimizer": "Nadam",
    "lr_finder": {"use": False, "scan_range": [1e-4, 1e-2], "epochs": 1, "scale": "linear",
                  "prompt_for_input": False},
    "lr_schedule": {"name": None, "range": [1e-3, 5e-3], "step_size_factor": 2, "kwargs": {}},
    "auto_lr": False,
    # Misc.
    "use_earlystopping": False,
    "restore_best_weights": False,
    "pretrained_model": {"use": False, "weights_path": "./weights.h5", "params_path": None, "layers_to_load": [],
                         "freeze_loaded_layers": []},
    "n_gpus": 0,
    "data_generator": {"use": False, "n_workers": 1, "max_queue_size": 10,
                       "n_points": {"train": None, "val": None, "test": None},
                       "load_kwargs": {"path": "./data.h5", "target_name": None, "img_names": None,
                                       "gate_img_prefix": None, "scalar_names": None, "track_names": None,
                                       "max_tracks": None, "multiply_output_name": None,
                                       "sample_weight_name": None}},
    "upsampling": {"use": False, "wanted_size": (100, 100), "interpolation": "nearest"},
    # Submodels
    "top": {**_SUBMODEL_KEYS, "units": [64, 1], "final_activation": None},
    "cnn": {**_SUBMODEL_KEYS, "cnn_type": "simple", "conv_dim": 2, "block_depths": [1], "n_init_filters": 4,
            "init_kernel_size": 5, "rest_kernel_size": 3, "init_strides": 1, "rest_strides": 1, "cardinality": 1,
            "use_squeeze_and_excite": False, "squeeze_and_excite_ratio": 16, "globalavgpool": False,
            "downsampling": None, "min_size_for_downsampling": 2},
    "network_in_network": {**_SUBMODEL_KEYS, "use": False, "units": [64], "strides": 1, "globalavgpool": False},
    "scalar_net": {**_SUBMODEL_KEYS, "units": [], "connect_to": []},
    "FiLM_gen": {**_SUBMODEL_KEYS, "use": False, "units": [64]},
    "track_net": {**_SUBMODEL_KEYS, "phi_units": [64], "rho_units": [64], "connect_to": []},
    "gate_net": {**_SUBMODEL_KEYS, "units": [], "use_res": False, "final_activation": None,
                 "final_activation_init": [1.0], "merge_method": "concatenate"},
}

# the native config of each submodel: its extra keys are accepted too
_SUBMODELS = {"top": TopConfig, "cnn": CNNConfig, "network_in_network": NetworkInNetworkConfig,
              "scalar_net": ScalarNetConfig, "FiLM_gen": FiLMGenConfig, "track_net": TrackNetConfig,
              "gate_net": GateNetConfig}
_EXTRA_KEYS = {"scalar_net": ["strides"]}  # documented by DeepCalo, ignored here
_TOP_EXTRAS = ["name"]  # deepscope's: the run folder's name
_OPEN = {"kwargs", "load_kwargs", "n_points", "layer_reg"}  # free-form dicts: not checked key by key
_PLACEHOLDER_WEIGHTS = "./weights.h5"

# native dotted path -> DeepCalo params key, to name both in error messages
_NATIVE_TO_PARAMS = [
    ("train.early_stopping.use", "use_earlystopping"), ("train.restore_best_weights", "restore_best_weights"),
    ("train.epochs", "epochs"), ("train.batch_size", "batch_size"), ("train.loss", "loss"),
    ("train.metrics", "metrics"), ("train.optimizer", "optimizer"), ("train.devices", "n_gpus"),
    ("train.lr_finder", "lr_finder"), ("train.lr_schedule", "lr_schedule"), ("train.auto_lr", "auto_lr"),
    ("model.pretrained_model", "pretrained_model"), ("model.upsampling", "upsampling"),
    *[(f"model.{name}", name) for name in _SUBMODELS],
]


def get_default_params() -> dict[str, Any]:
    """DeepCalo's default params dict (a fresh copy), exactly as ``deepcalo.utils.get_default_params``."""
    return copy.deepcopy(_DEFAULTS)


def _check_keys(params: Mapping[str, Any]) -> list[str]:
    """Every unknown key of a user params dict, with "did you mean" over DeepCalo's keys."""
    problems: list[str] = []
    allowed = [*_DEFAULTS, *_TOP_EXTRAS]
    for key in params:
        if key not in allowed:
            problems.append(f"params: unknown key '{key}'{did_you_mean(str(key), allowed)} "
                            f"(DeepCalo's keys: {', '.join(allowed)})")
    for section, default in _DEFAULTS.items():
        value = params.get(section)
        if not isinstance(default, dict) or value is None or section == "optimizer":
            continue
        if not isinstance(value, Mapping):
            problems.append(f"params['{section}']: found {value!r}; expected a dict with keys {', '.join(default)}")
            continue
        keys = [*default, *_EXTRA_KEYS.get(section, [])]
        if section in _SUBMODELS:
            keys += [k for k in _SUBMODELS[section].model_fields if k not in keys]
        for key in value:
            if key not in keys:
                problems.append(f"params['{section}']: unknown key '{key}'{did_you_mean(str(key), keys)} "
                                f"(allowed: {', '.join(keys)})")
    return problems


def merge_params(base: Mapping[str, Any], update: Mapping[str, Any] | None) -> dict[str, Any]:
    """DeepCalo's ``merge_dicts(base, update, in_depth=True)``: dicts are merged key by key, an empty
    dict or a non-dict in ``base`` is replaced, everything else is overwritten.

    Raises:
        ConfigError: unknown keys in ``update`` (checked against DeepCalo's params when ``base``
            is the defaults).
    """
    if update is None:
        return copy.deepcopy(dict(base))
    if not isinstance(update, Mapping):
        raise ConfigError(f"params: found a {type(update).__name__}; expected a dict (see get_default_params())")
    problems = _check_keys(update) if set(base) == set(_DEFAULTS) else []
    if problems:
        raise ConfigError(problems=problems)
    return _merge(base, update)


def _merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        old = merged.get(key)
        if isinstance(value, Mapping) and isinstance(old, dict) and old and key not in _OPEN:
            merged[key] = _merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _plain(value: Any) -> Any:
    """Tuples become lists, recursively: the native config is YAML-able."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _unavailable(p: Mapping[str, Any]) -> list[str]:
    problems = []
    n_gpus = p["n_gpus"]
    if not isinstance(n_gpus, int) or isinstance(n_gpus, bool) or n_gpus < 0:
        problems.append(f"params['n_gpus']: found {n_gpus!r}; expected 0 (CPU) or a number of GPUs")
    elif n_gpus > 1 and isinstance(p["batch_size"], int) and p["batch_size"] % n_gpus:
        # multi_gpu_model cut each batch into n_gpus parts; deepscope's batch_size is per GPU
        problems.append(f"params['batch_size']: {p['batch_size']} samples cannot be shared evenly by "
                        f"params['n_gpus'] {n_gpus} GPUs (DeepCalo split each batch over them); give a multiple "
                        f"of {n_gpus}")
    if p["data_generator"].get("use"):
        problems.append("params['data_generator']['use']: DeepCalo's DataGenerator is replaced by deepscope's lazy "
                        "HDF5 source: train from a config with data.source: atlas_hdf5 (deepscope.train), which "
                        "reads batches from the file as needed; set use to False to pass arrays here")
    return problems


def _submodel(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    out = _plain(values)
    for key in _EXTRA_KEYS.get(name, []):
        if key in out:
            log.info(f"params['{name}']['{key}'] is ignored: DeepCalo documents it, but dense layers have no strides")
            del out[key]
    return out


def _pretrained(values: Mapping[str, Any]) -> dict[str, Any]:
    out = _plain(values)
    if not out.get("use") and out.get("weights_path") == _PLACEHOLDER_WEIGHTS:
        out["weights_path"] = None  # DeepCalo's placeholder path, unused
    if out.get("freeze_loaded_layers") == [] and out.get("layers_to_load"):
        out["freeze_loaded_layers"] = False  # DeepCalo's default: freeze nothing
    return out


def _default_name(epochs: Any) -> str:
    # DeepCalo's create_directories: '<UTC isoformat>_<epochs>_epochs', with ':' made folder-safe
    return f"{datetime.now(timezone.utc):%Y-%m-%dT%H-%M-%S.%f}_{epochs}_epochs"


def params_to_config(params: Mapping[str, Any], dirs: Mapping[str, Any] | None = None, *, save_figs: bool = True,
                     verbose: bool | int = True, name: str | None = None) -> dict[str, Any]:
    """Translate a DeepCalo params dict into deepscope's native config dict.

    Args:
        params: DeepCalo's params; merged in depth into :func:`get_default_params` first.
        dirs: DeepCalo's ``dirs``; ``dirs['log']`` becomes ``log.dir`` (default ``runs``).
        save_figs: ``log.figures``.
        verbose: ``log.progress_bar`` (``2`` or false: no bar, as in Keras).
        name: the run name; default ``params['name']``, else DeepCalo's time stamp.

    Returns:
        A config dict for :func:`deepscope.load_config` / :class:`~deepscope.training.experiment.Experiment`.

    Raises:
        ConfigError: unknown keys, or features deepscope does not have yet.
    """
    p = merge_params(_DEFAULTS, params)
    problems = _unavailable(p)
    if dirs is not None and not isinstance(dirs, Mapping):
        problems.append(f"dirs: found {type(dirs).__name__}; expected a dict with 'log' (and 'fig', 'saved_models', "
                        "'lr_finder')")
    if problems:
        raise ConfigError(problems=problems)
    model: dict[str, Any] = {sub: _submodel(sub, p[sub]) for sub in _SUBMODELS}
    model["upsampling"] = _plain(p["upsampling"])
    model["pretrained_model"] = _pretrained(p["pretrained_model"])
    train: dict[str, Any] = {
        "epochs": p["epochs"],
        "batch_size": p["batch_size"],
        "loss": _plain(p["loss"]),
        "metrics": _plain(p["metrics"]) if p["metrics"] is not None else [],
        "optimizer": _plain(p["optimizer"]),
        "early_stopping": {"use": p["use_earlystopping"], "patience": 150, "min_delta": 1e-3},
        "restore_best_weights": p["restore_best_weights"],
        "devices": 1,
        "lr_finder": _plain(p["lr_finder"]),
        "auto_lr": p["auto_lr"],
    }
    if p["lr_schedule"].get("name") is not None:
        train["lr_schedule"] = _plain(p["lr_schedule"])
    if p["n_gpus"] == 0:
        train["accelerator"] = "cpu"
    elif p["n_gpus"] > 1:
        # Keras' multi_gpu_model split each batch over the GPUs; deepscope's batch_size is per GPU
        train.update(accelerator="gpu", devices=p["n_gpus"])
        if isinstance(p["batch_size"], int):
            train["batch_size"] = p["batch_size"] // p["n_gpus"]
    log_dir = (dirs or {}).get("log")
    return {
        "name": name or p.get("name") or _default_name(p["epochs"]),
        "data": {"source": "arrays", "channels": "last",
                 "standardize": {"images": "none", "scalars": False, "tracks": False, "targets": False}},
        "model": {"architecture": "combined", **model},
        "train": train,
        "log": {"dir": str(log_dir) if log_dir is not None else "runs", "figures": bool(save_figs),
                "progress_bar": "auto" if verbose and verbose != 2 else "none"},
    }


def _params_path(native: str) -> str | None:
    for prefix, key in _NATIVE_TO_PARAMS:
        if native == prefix or native.startswith(prefix + ".") or native.startswith(prefix + "["):
            rest = native[len(prefix):]
            parts = [f"['{part}']" for part in re.findall(r"[^.\[\]]+", rest)]
            return f"params['{key}']" + "".join(parts)
    return None


def _translated(exc: ConfigError) -> ConfigError:
    """The native config error, each problem also naming the DeepCalo params key."""
    if not exc.problems:
        return exc
    lines = []
    for line in exc.problems:
        path, sep, rest = line.partition(": ")
        ours = _params_path(path) if sep and " " not in path else None
        lines.append(f"{ours} ({path}): {rest}" if ours else line)
    return ConfigError(problems=lines)


def _has(data: Any, key: str) -> bool:
    """Whether the training set of a DeepCalo data dict has a non-empty ``key``."""
    train = data.get("train", data) if isinstance(data, Mapping) else None
    value = train.get(key) if isinstance(train, Mapping) else None
    if value is None:
        return False
    if isinstance(value, (Mapping, list, tuple)):
        return len(value) > 0
    return int(getattr(value, "size", 1)) > 0


class ModelContainer:
    """DeepCalo's model container, run by deepscope.

    Args:
        data: DeepCalo's data dict: ``{'train': {...}, 'val': {...}, 'test': {...}}`` with
            ``images`` (dict of channels-last arrays), ``scalars``, ``tracks``, ``targets``,
            ``sample_weights``, ``multiply_output_with``.
        params: DeepCalo's params dict (merged in depth into :func:`get_default_params`), plus
            an optional ``name`` for the run folder.
        dirs: DeepCalo's dirs dict; the run folder is ``<dirs['log']>/<name>/``.
        save_figs: write figures (learning curves, regression/confusion plots, architecture.png).
        verbose: progress bar (``2``: none, as in Keras).
        overrides: deepscope extra: ``key.path=value`` strings applied to the native config
            (e.g. ``log.tensorboard=false``).

    Attributes:
        params: the merged params.
        config: the native config dict it maps to.
        model: the built ``nn.Module`` after :meth:`get_model` (trained weights after :meth:`train`).
        result: the :class:`~deepscope.training.experiment.RunResult` after :meth:`train`.

    Raises:
        ConfigError: unknown params keys, unavailable features or invalid values, naming both the
            params key and the native one.
    """

    def __init__(self, data: Any, params: Mapping[str, Any] | None, dirs: Mapping[str, Any] | None = None,
                 save_figs: bool = True, verbose: bool | int = True, overrides: Sequence[str] = ()) -> None:
        from deepscope.training.experiment import Experiment

        self.data = data
        self.params = merge_params(_DEFAULTS, params)
        self.dirs = dict(dirs) if isinstance(dirs, Mapping) else dirs
        self.save_figs, self.verbose = save_figs, verbose
        self.config = params_to_config(self.params, self.dirs, save_figs=save_figs, verbose=verbose)
        try:
            self.experiment = Experiment(self.config, data=data, overrides=list(overrides))
        except ConfigError as exc:
            raise _translated(exc) from None
        for key in ("scalar_net", "track_net"):
            source = "scalars" if key == "scalar_net" else "tracks"
            if _has(data, source) and not self.params[key]["connect_to"]:
                log.warning(f"the data has {source} but params['{key}']['connect_to'] is empty, so they are not used "
                            f"(as in DeepCalo); add 'top' and/or 'FiLM_gen'")
        self.model: Any = None
        self.spec: Any = None
        self.result: Any = None

    @property
    def run_dir(self) -> Path:
        """The run folder: ``<dirs['log']>/<name>``."""
        if self.result is not None:
            return Path(self.result.run_dir)
        return Path(self.experiment.cfg.log.dir) / self.experiment.cfg.name

    def get_model(self) -> Any:
        """Build (once) and return the model for the data's shapes, pretrained layers loaded.

        Returns:
            The ``nn.Module``; after :meth:`train` it holds the weights used for evaluation.
        """
        if self.model is None:
            from deepscope.data.prepare import prepare_data
            from deepscope.models.build import build_model
            from deepscope.training.pretrained import load_pretrained

            cfg = self.experiment.cfg
            self.spec = prepare_data(cfg, self.data).spec
            self.model = build_model(cfg.model, self.spec, cfg.train.loss_name)
            for line in load_pretrained(self.model, cfg.model.pretrained_model, self.spec):
                log.info(line)
        return self.model

    def train(self) -> Any:
        """Train (or resume the run of the same name) and fill the run folder.

        Returns:
            The run's ``RunResult`` (run folder, metrics, checkpoint), as ``deepscope.train`` returns it.
        """
        from deepscope.evaluation.architecture import architecture_figure
        from deepscope.evaluation.predict import load_net_weights

        self.result = self.experiment.train()
        net = self.get_model()  # afterwards, get_model() returns the trained weights
        if self.result.checkpoint is not None:
            load_net_weights(net, Path(self.result.checkpoint))
        figure = Path(self.result.run_dir) / "figures" / "architecture.png"
        if self.save_figs and not figure.exists():
            architecture_figure(net, self.spec, figure)
        return self.result

    def evaluate(self, set_name: str | None = None) -> dict[str, float]:
        """Loss and metrics on a split, from the run's checkpoint (best, or last when
        ``restore_best_weights`` is false, as in DeepCalo).

        Args:
            set_name: ``'train'``, ``'val'`` or ``'test'``; by default the test set, or the
                validation set when the data has no test set (DeepCalo's choice).

        Raises:
            CheckpointError: nothing has been trained yet.
        """
        from deepscope.training.experiment import evaluate

        if set_name is None:
            split_data = isinstance(self.data, Mapping) and "train" in self.data
            set_name = "val" if split_data and "test" not in self.data else "test"
        run = self.run_dir
        if not (run / "config.yaml").is_file():
            raise CheckpointError(f"run folder '{run}' holds no trained model yet; call train() first")
        return evaluate(run, set_name, data=self.data)
