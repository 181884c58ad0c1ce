"""From the ``data`` config to checked, split, standardized sample sets and an ``InputSpec``.

Everything here runs before any model or tensor exists, so a bad file or shape stops the run with
a :class:`~deepscope.errors.DataError` before training starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepscope.components import LOSSES, SOURCES
from deepscope.config.data import SplitConfig
from deepscope.config.schema import ExperimentConfig
from deepscope.data.arrays import ArraySet
from deepscope.data.dataset import SampleStore
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.data.splits import split_indices
from deepscope.data.standardize import Standardizer
from deepscope.errors import ConfigError, DataError

__all__ = ["PreparedData", "check_target_standardization", "derive_spec", "describe_data", "prepare_data",
           "training_crop", "training_spec"]

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Sample stores per split, the split indices, the spec (of what the model trains on) and the fitted
    standardizer."""

    stores: dict[str, SampleStore]
    indices: dict[str, np.ndarray]
    spec: InputSpec
    standardizer: Standardizer
    data_spec: InputSpec | None = None  # the data's own spec when the model trains on crops of it

    def __post_init__(self) -> None:
        if self.data_spec is None:
            self.data_spec = self.spec

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.indices.items()}

    def training_store(self, split: str) -> tuple[SampleStore, Standardizer | None]:
        """The store to train on and the transform still to apply per batch.

        In-memory sets are standardized once (shared by the splits of one pool); lazy stores
        standardize each batch as it is read.
        """
        store = self.stores[split]
        if not isinstance(store, ArraySet):
            return store, self.standardizer
        cache = self.__dict__.setdefault("_standardized", {})
        if id(store) not in cache:
            cache[id(store)] = store.standardized(self.standardizer.transform)
        return cache[id(store)], None


def prepare_data(cfg: ExperimentConfig, data: Any = None) -> PreparedData:
    """Load, check, split and fit standardization, as ``cfg.data`` says.

    Args:
        cfg: the validated experiment config.
        data: in-memory arrays for the ``arrays`` source (DeepCalo layout).

    Raises:
        DataError: the data is missing, malformed, inconsistent or not finite.
        ConfigError: ``data.split`` given for data that is already split.
    """
    if data is not None and cfg.data.source != "arrays":
        raise ConfigError(
            f"data was passed in memory but data.source is '{cfg.data.source}': remove the data argument "
            "or set data.source: arrays"
        )
    loaded = SOURCES.get(cfg.data.source)(cfg.data, data)
    stores, indices = _arrange(cfg, loaded)
    _check_consistent(stores)
    if cfg.data.check_finite:
        # in-memory sets check their arrays; lazy stores (atlas_hdf5) stream their events in chunks
        seen: set[int] = set()
        for name, store in stores.items():
            check = getattr(store, "check_finite", None)
            if check is not None and id(store) not in seen:
                seen.add(id(store))
                check(f"data['{name}']" if len({id(s) for s in stores.values()}) > 1 else "data")
    loss = LOSSES.entry(cfg.train.loss_name)
    data_spec = derive_spec(stores, indices, loss.meta["task"], loss.name)
    spec = training_spec(cfg, data_spec)
    train_store = stores["train"]
    standardizer = Standardizer.fit(
        train_store.read, indices["train"], cfg.data.standardize,
        standardize_targets=cfg.data.standardize.targets and loss.meta["task"] == "regression",
    )
    for store in stores.values():
        close = getattr(store, "close", None)
        if close is not None:  # lazy stores: no open file handle for DataLoader workers to inherit
            close()
    return PreparedData(stores, indices, spec, standardizer, data_spec)


def describe_data(cfg: ExperimentConfig) -> InputSpec | None:
    """The :class:`InputSpec` that :func:`prepare_data` would derive, from the source's description
    (:func:`deepscope.data.sources.describe`) instead of its arrays; ``None`` when the source cannot
    be described so.

    The checks that need no more than the description run as :func:`prepare_data` runs them:
    ``data.split`` against the sets and the sample count, the validation set, per-sample shapes and
    the targets against the loss. Finite values are not checked.

    Raises:
        DataError, ConfigError: what :func:`prepare_data` would raise for those checks.
    """
    from deepscope.data.sources import describe

    loss = LOSSES.entry(cfg.train.loss_name)
    description = describe(cfg.data, loss.meta["task"])
    if description is None:
        return None
    stand_in = description.stand_in
    stores, indices = _arrange(cfg, stand_in, description.pool_size)
    indices = {k: np.arange(len(stores[k])) for k in indices}  # the stand-in's samples, not the real ones
    _check_consistent(stores)
    return training_spec(cfg, derive_spec(stores, indices, loss.meta["task"], loss.name))


def training_crop(cfg: ExperimentConfig) -> list[int] | None:
    """The size of the random windows the model trains on: ``data.augment.crop``, or the ``crop`` of a
    source that pairs whole images (``fits_dirs`` deconvolution); ``None`` for whole samples."""
    if cfg.data.augment.crop:
        return list(cfg.data.augment.crop)
    if getattr(cfg.data, "mode", None) == "deconvolution" and getattr(cfg.data, "crop", None):
        return list(cfg.data.crop)
    return None


def training_spec(cfg: ExperimentConfig, spec: InputSpec) -> InputSpec:
    """The spec of what the model trains on: the data's, or that of ``data.augment.crop`` windows.

    Raises:
        ConfigError: a crop whose number of entries is not the images' number of spatial dims.
    """
    crop = training_crop(cfg)
    if not crop:
        return spec
    if len(crop) != spec.spatial_dims:
        key = "data.augment.crop" if cfg.data.augment.crop else "data.crop"
        raise ConfigError(f"{key} {list(crop)} has {len(crop)} entries but the images are "
                          f"{spec.spatial_dims}D {tuple(spec.spatial)}: give one size per spatial axis")
    from deepscope.data.windows import cropped_spec

    return cropped_spec(spec, crop)


def check_target_standardization(cfg: ExperimentConfig, spec: InputSpec) -> None:
    """Targets are not standardized when the output is multiplied by a per-sample factor.

    Raises:
        ConfigError: ``data.standardize.targets`` with ``multiply_output_with`` in the data.
    """
    if spec.multiply_output_with and cfg.data.standardize.targets:
        raise ConfigError("data.standardize.targets must be false when the data has multiply_output_with "
                          "(the model predicts a correction factor in data units)")


def _arrange(cfg: ExperimentConfig, loaded: ArraySet | dict[str, SampleStore],
             pool_size: int | None = None) -> tuple[dict[str, SampleStore], dict[str, np.ndarray]]:
    """The store and the sample indices of each split, for sets as loaded (a pool of ``pool_size``
    samples, its length by default, is split by ``data.split``).

    Raises:
        ConfigError: ``data.split`` for data that is already split.
        DataError: a split out of range, or no validation set while one is monitored.
    """
    if isinstance(loaded, dict):
        if cfg.data.split is not None:
            raise ConfigError(
                "data.split: the data is already split into " + "/".join(loaded) +
                "; remove data.split (or pass one pool of samples to split)"
            )
        stores: dict[str, SampleStore] = dict(loaded)
        indices = {k: np.arange(len(v)) for k, v in loaded.items()}
    else:
        split = cfg.data.split or SplitConfig()
        indices = split_indices(len(loaded) if pool_size is None else pool_size, split, cfg.seed)
        stores = {k: loaded for k in indices}
    if "val" not in indices and (cfg.train.monitor.startswith("val_") or cfg.train.early_stopping.use):
        raise DataError(
            f"the data has no validation set but train.monitor is '{cfg.train.monitor}': "
            "add a 'val' set (or data.split.val) or monitor a train_ value"
        )
    return stores, indices


def _per_sample_shapes(store: SampleStore) -> dict[str, tuple[int, ...]]:
    one = store.read(np.arange(1))
    shapes = {f"images/{k}": v.shape[1:] for k, v in one.get("images", {}).items()}
    shapes.update({k: v.shape[1:] for k, v in one.items() if k != "images"})
    return shapes


def _check_consistent(stores: dict[str, SampleStore]) -> None:
    ref = _per_sample_shapes(stores["train"])
    for name, store in stores.items():
        if name == "train":
            continue
        shapes = _per_sample_shapes(store)
        for key in sorted(set(ref) | set(shapes)):
            if key not in shapes or key not in ref:
                has, lacks = ("train", name) if key in ref else (name, "train")
                raise DataError(f"data['{has}'] has '{key}' but data['{lacks}'] does not; every set needs the same keys")
            if key != "tracks" and shapes[key] != ref[key]:
                raise DataError(f"data['{name}']['{key}'] has per-sample shape {shapes[key]} but "
                                f"data['train'] has {ref[key]}")
            if key == "tracks" and shapes[key][-1] != ref[key][-1]:
                raise DataError(f"data['{name}']['tracks'] has {shapes[key][-1]} features per track but "
                                f"data['train'] has {ref[key][-1]}")


def _all_targets(stores: dict[str, SampleStore], indices: dict[str, np.ndarray]) -> list[np.ndarray]:
    out = []
    for name, store in stores.items():
        if isinstance(store, ArraySet) and store.targets is not None:
            out.append(store.targets[indices[name]])
        elif hasattr(store, "read_targets"):  # lazy stores read the targets alone, not the images
            out.append(store.read_targets(indices[name]))
        else:
            out.append(store.read(indices[name])["targets"])
    return out


def derive_spec(stores: dict[str, SampleStore], indices: dict[str, np.ndarray], task: str,
                loss_name: str) -> InputSpec:
    """Derive the :class:`InputSpec` and check the targets suit the loss."""
    one = stores["train"].read(indices["train"][:1])
    images = {k: ImageSpec(int(v.shape[1]), tuple(int(s) for s in v.shape[2:]))
              for k, v in one.get("images", {}).items()}
    # gate_<name> images and images of different sizes are the model builder's to check (gate net, upsampling)
    targets = one["targets"]
    target_shape = tuple(int(s) for s in targets.shape[1:])
    kind, n_classes = "value", None
    if np.issubdtype(targets.dtype, np.integer) or task == "binary":
        all_targets = _all_targets(stores, indices)  # only when labels or ranges are checked
    if np.issubdtype(targets.dtype, np.integer):
        lo = min(int(t.min()) for t in all_targets)
        if task == "multiclass":
            if target_shape:
                raise DataError(f"targets: integer labels must be one per sample (N,), found per-sample shape "
                                f"{target_shape}; give one-hot targets as floats")
            if lo < 0:
                raise DataError(f"targets: class labels must be 0..K-1, found {lo}")
            kind, n_classes = "label", max(int(t.max()) for t in all_targets) + 1
    if task == "multiclass" and kind == "value":
        if len(target_shape) != 1 or target_shape[0] < 2:
            raise DataError(
                f"train.loss '{loss_name}' needs integer class labels (N,) or one-hot targets (N, K); "
                f"found float targets of per-sample shape {target_shape}"
            )
        n_classes = target_shape[0]
    if task == "binary":
        lo = min(float(t.min()) for t in all_targets)
        hi = max(float(t.max()) for t in all_targets)
        if lo < 0 or hi > 1:
            raise DataError(f"train.loss '{loss_name}' needs targets in [0, 1]; found values in [{lo:g}, {hi:g}]")
    tracks = one.get("tracks")
    return InputSpec(
        images=images,
        scalars=int(one["scalars"].shape[1]) if "scalars" in one else None,
        tracks=(int(tracks.shape[1]), int(tracks.shape[2])) if tracks is not None else None,
        target_shape=target_shape,
        target_kind=kind,
        n_classes=n_classes,
        sample_weights="sample_weights" in one,
        multiply_output_with="multiply_output_with" in one,
        target_names=tuple(getattr(stores["train"], "target_names", ()) or ()),
    )
