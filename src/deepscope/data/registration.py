"""The ``registration_hdf5`` and ``registration_demo`` sources: atlalign's supervised-registration file.

The file holds ``img`` uint8 (n, H, W) moving images, ``deltas_xy`` (n, H, W, 2) forward fields
(mov2reg), optionally ``inv_deltas_xy`` (n, H, W, 2), ``p`` (n,) coronal positions in µm and
``dataset_id`` (n,) (``image_id`` is not read). A reference volume (D, H, W) (a .npy file or an
HDF5 dataset) gives each sample its reference section ``round(p / section_thickness)``; a single
(H, W) image is the reference of every sample.

Fields are in pixels, channel 0 = Δx (columns), 1 = Δy (rows), and warp backward:
``out(x, y) = img(x + Δx, y + Δy)`` (bilinear, zero outside), so the moving image warped by
``deltas_xy`` is the reference section.

A batch (the data contract, channels first)::

    images:  reference (B, 1, H, W) float32 in [0, 1]   the section at each sample's p
             moving    (B, 1, H, W) float32 = img / 255
    targets: (B, C, H, W) float32, channels named by the store's ``target_names``:
             registered, dx, dy            the reference section (what the warped moving image
                                           should match, as atlalign's generator yields) and deltas_xy
             + inv_dx, inv_dy              with data.inverse: inv_deltas_xy
             + reference_labels,           with data.annotation: the label section, and the labels
               moving_labels               warped into the moving image by inv_deltas_xy (nearest)

The splits are drawn here (``data.holdout``, by sample or by ``dataset_id``), so that the training
split alone gets the intensity augmentation of ``data.augment_reference`` / ``augment_moving``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.data.arrays import ArraySet
from deepscope.data.h5read import H5Handle, LazyStore, open_h5, take_rows
from deepscope.data.sources import Description
from deepscope.errors import ConfigError, DataError, did_you_mean

__all__ = ["RegistrationPlan", "RegistrationStore", "Volume", "augment_intensity", "describe_registration_demo",
           "describe_registration_hdf5", "load_registration_demo", "load_registration_hdf5", "plan_registration",
           "split_rows", "target_names"]

IMAGE_NAMES = ("reference", "moving")
_LAYOUT = ("img", "deltas_xy", "inv_deltas_xy", "p", "image_id", "dataset_id")


def target_names(inverse: bool, labels: bool) -> tuple[str, ...]:
    """The target channels, in order: ``registered, dx, dy`` [+ ``inv_dx, inv_dy``] [+ ``reference_labels,
    moving_labels``]."""
    names = ("registered", "dx", "dy")
    if inverse:
        names += ("inv_dx", "inv_dy")
    if labels:
        names += ("reference_labels", "moving_labels")
    return names


# --- volumes ----------------------------------------------------------------------------------------


class Volume:
    """A reference or label volume, (D, H, W), read once per process (a .npy file memory-mapped, an
    HDF5 dataset read whole); an (H, W) image is held as (1, H, W).

    Args:
        path: the .npy or HDF5 file.
        dataset: the dataset's name inside an HDF5 file.
        key: the config key naming the file (for errors).
    """

    def __init__(self, path: Path, dataset: str, key: str) -> None:
        self.path, self.dataset, self.key = Path(path), dataset, key
        self._array: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # each process maps the file itself

    def _is_hdf5(self) -> bool:
        import h5py

        return self.path.suffix.lower() != ".npy" and h5py.is_hdf5(self.path)

    def _where(self) -> str:
        return f"{self.key}: '{self.path}'" + (f", dataset '{self.dataset}'" if self._is_hdf5() else "")

    def _check_exists(self) -> None:
        if not self.path.exists():
            raise DataError(f"{self.key}: '{self.path}' not found; expected a .npy volume (D, H, W) or an HDF5 file "
                            "holding one")
        if self.path.is_dir():
            raise DataError(f"{self.key}: '{self.path}' is a folder; expected a .npy or HDF5 file")

    def _hdf5_dataset(self, f: Any) -> Any:
        import h5py

        obj = f.get(self.dataset)
        if not isinstance(obj, h5py.Dataset):
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            raise DataError(f"{self.key}: '{self.path}' has no dataset '{self.dataset}'"
                            f"{did_you_mean(self.dataset, names)} "
                            f"(datasets: {', '.join(names[:8]) or 'none'}); set {self.key}_dataset")
        return obj

    @property
    def shape(self) -> tuple[int, ...]:
        """(D, H, W), without reading the values."""
        self._check_exists()
        if self._is_hdf5():
            with open_h5(self.path, self.key) as f:
                shape = tuple(int(s) for s in self._hdf5_dataset(f).shape)
        else:
            shape = tuple(int(s) for s in self._load(mmap=True).shape)
        if len(shape) not in (2, 3):
            raise DataError(f"{self._where()} has shape {shape}; expected a volume (D, H, W) or an image (H, W)")
        return shape if len(shape) == 3 else (1, *shape)

    def _load(self, mmap: bool) -> np.ndarray:
        try:
            arr = np.load(self.path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{self.key}: '{self.path}' is neither a readable .npy file nor HDF5 ({exc})") from None
        if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise DataError(f"{self.key}: '{self.path}' holds {getattr(arr, 'dtype', type(arr).__name__)}; "
                            "expected a numeric array")
        return arr

    @property
    def array(self) -> np.ndarray:
        """The values, (D, H, W)."""
        if self._array is None:
            shape = self.shape
            if self._is_hdf5():
                with open_h5(self.path, self.key) as f:
                    arr = np.asarray(self._hdf5_dataset(f)[()])
            else:
                arr = self._load(mmap=True)
            self._array = arr.reshape(shape)
        return self._array


# --- the plan: datasets, shapes, sections, splits ----------------------------------------------------


@dataclass
class RegistrationPlan:
    """The file's checked layout.

    Attributes:
        path: the HDF5 file.
        n: samples in the file.
        shape: (H, W) of every image.
        sections: (n,) the reference section of each sample.
        dataset_id: (n,) int64, or None when the file has none (and it is not needed).
        has_inverse: whether ``inv_deltas_xy`` is read (for ``inverse`` or the moving labels).
        reference, annotation: the volumes (annotation None without labels).
        names: the target channels.
    """

    path: Path
    n: int
    shape: tuple[int, int]
    sections: np.ndarray
    dataset_id: np.ndarray | None
    has_inverse: bool
    reference: Volume
    annotation: Volume | None
    names: tuple[str, ...]


def _dataset(f: Any, name: str, path: Path, why: str) -> Any:
    import h5py

    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        others = [n for n in names if n not in _LAYOUT]  # atlalign's own names are not misspellings of each other
        raise DataError(f"'{path}': no dataset '{name}'{did_you_mean(name, others)} ({why}); the file holds "
                        f"{', '.join(names[:8]) or 'no datasets'}")
    return obj


def _check_field(ds: Any, name: str, img_shape: tuple[int, ...], path: Path) -> None:
    shape = tuple(int(s) for s in ds.shape)
    if len(shape) != 4 or shape[-1] != 2:
        raise DataError(f"'{path}': dataset '{name}' has shape {shape}; expected (n, H, W, 2), the last axis "
                        "holding (Δx, Δy)")
    if shape[:3] != img_shape:
        raise DataError(f"'{path}': dataset '{name}' has shape {shape} but 'img' has {img_shape}; expected "
                        f"{(*img_shape, 2)}")


def _sections(p: np.ndarray, cfg: Any, depth: int, path: Path) -> np.ndarray:
    """The reference section of every sample, checked against the volume's depth."""
    index = np.rint(np.asarray(p, np.float64) / cfg.section_thickness).astype(np.int64)
    bad = np.flatnonzero((index < 0) | (index >= depth))
    if len(bad):
        i = int(bad[0])
        top = (depth - 1) * cfg.section_thickness
        raise DataError(f"'{path}': dataset 'p' holds p = {p[i]:g} µm (sample {i}, {len(bad)} sample(s) in all), "
                        f"section {int(index[i])} at data.section_thickness {cfg.section_thickness:g} µm, outside "
                        f"the reference volume '{cfg.reference}' of {depth} sections: p must be in "
                        f"[0, {top:g}] µm (within half a section)")
    return index


def plan_registration(cfg: Any) -> RegistrationPlan:
    """Check the file and the volumes against each other (metadata, ``p`` and ``dataset_id`` only).

    Args:
        cfg: a validated ``registration_hdf5`` data section.

    Raises:
        DataError: a missing file or dataset; ``img`` not (n, H, W); a field not (n, H, W, 2);
            ``p`` not (n,) or outside the reference volume; a reference of another (H, W); an
            annotation of another shape than the reference; ``inv_deltas_xy`` missing while
            ``inverse`` or the labels need it; ``dataset_id`` missing with ``group_by``.
    """
    path = Path(cfg.path)
    reference = Volume(cfg.reference, cfg.reference_dataset, "data.reference")
    annotation = Volume(cfg.annotation, cfg.annotation_dataset, "data.annotation") if cfg.annotation else None
    needs_inverse = bool(cfg.inverse or annotation is not None)
    with open_h5(path, "data.path") as f:
        img = _dataset(f, "img", path, "the moving images (n, H, W)")
        img_shape = tuple(int(s) for s in img.shape)
        if len(img_shape) != 3:
            raise DataError(f"'{path}': dataset 'img' has shape {img_shape}; expected (n, H, W) grayscale images")
        _check_field(_dataset(f, "deltas_xy", path, "the forward fields (n, H, W, 2)"), "deltas_xy", img_shape, path)
        if needs_inverse:
            why = ("data.inverse: true reads the inverse fields" if cfg.inverse else
                   "data.annotation's moving labels are the labels warped by the inverse fields")
            _check_field(_dataset(f, "inv_deltas_xy", path, why), "inv_deltas_xy", img_shape, path)
        n = img_shape[0]
        p_ds = _dataset(f, "p", path, "the coronal position of each sample in µm, (n,)")
        if tuple(p_ds.shape) != (n,):
            raise DataError(f"'{path}': dataset 'p' has shape {tuple(p_ds.shape)}; expected ({n},), one position "
                            "per image of 'img'")
        p = np.asarray(p_ds[()], np.float64)
        dataset_id = None
        if cfg.group_by == "dataset_id" or "dataset_id" in f:
            ds = _dataset(f, "dataset_id", path, "data.group_by: dataset_id keeps each dataset in one split")
            if tuple(ds.shape) != (n,):
                raise DataError(f"'{path}': dataset 'dataset_id' has shape {tuple(ds.shape)}; expected ({n},)")
            dataset_id = np.asarray(ds[()]).astype(np.int64)
    if n == 0:
        raise DataError(f"'{path}': dataset 'img' holds no images")
    ref_shape = reference.shape
    if ref_shape[1:] != img_shape[1:]:
        raise DataError(f"data.reference: '{cfg.reference}' has sections {ref_shape[1:]} (shape {ref_shape}) but the "
                        f"images of '{path}' dataset 'img' are {img_shape[1:]}; both need one (H, W)")
    if annotation is not None and annotation.shape != ref_shape:
        raise DataError(f"data.annotation: '{cfg.annotation}' has shape {annotation.shape} but the reference "
                        f"'{cfg.reference}' has {ref_shape}; the labels need the reference's shape")
    if _single_image(reference):
        sections = np.zeros(n, np.int64)  # one image: the reference of every sample
    else:
        sections = _sections(p, cfg, ref_shape[0], path)
    return RegistrationPlan(path, n, (img_shape[1], img_shape[2]), sections, dataset_id, needs_inverse, reference,
                            annotation, target_names(cfg.inverse, annotation is not None))


def _single_image(volume: Volume) -> bool:
    """Whether the file holds one (H, W) image rather than a (D, H, W) volume."""
    if volume._is_hdf5():
        with open_h5(volume.path, volume.key) as f:
            return len(volume._hdf5_dataset(f).shape) == 2
    return volume._load(mmap=True).ndim == 2


def split_rows(cfg: Any, n: int, dataset_id: np.ndarray | None, path: Path | str) -> dict[str, np.ndarray]:
    """The file rows of each split (increasing), by ``data.holdout`` and ``data.group_by``.

    Fractions of samples (or of ``dataset_id`` groups) go to val and test after a shuffle seeded by
    ``data.seed`` (file order without ``shuffle``); train gets the rest. Empty val or test splits
    are left out when holding out samples.

    Raises:
        DataError: grouping leaves train, or a val/test split asked for, without a group.
    """
    hold = cfg.holdout
    rng = np.random.default_rng([int(cfg.seed), 1])
    if cfg.group_by == "dataset_id":
        assert dataset_id is not None  # plan_registration reads it
        groups = np.unique(dataset_id)
        order = rng.permutation(groups) if hold.shuffle else groups
        g = len(groups)
        n_val, n_test = int(round(hold.val * g)), int(round(hold.test * g))
        parts = {"train": order[:g - n_val - n_test], "val": order[g - n_val - n_test:g - n_test],
                 "test": order[g - n_test:]}
        for name, members in parts.items():
            asked = name == "train" or getattr(hold, name) > 0
            if asked and not len(members):
                raise DataError(f"'{path}': data.group_by: dataset_id leaves the {name} split empty: the file holds "
                                f"{g} dataset_id value(s) and data.holdout gives val {hold.val:g}, test "
                                f"{hold.test:g} of them ({n_val} and {n_test}); lower the fractions, set one to 0, "
                                "or hold out samples (group_by: null)")
        return {name: np.flatnonzero(np.isin(dataset_id, members)) for name, members in parts.items()
                if len(members)}
    order = rng.permutation(n) if hold.shuffle else np.arange(n)
    n_val, n_test = int(round(hold.val * n)), int(round(hold.test * n))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise DataError(f"'{path}': data.holdout (val {hold.val:g}, test {hold.test:g}) leaves no training sample "
                        f"of {n}")
    out = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: np.sort(v) for k, v in out.items() if len(v)}


# --- augmentation -----------------------------------------------------------------------------------


def augment_intensity(images: np.ndarray, aug: Any, rng: np.random.Generator) -> np.ndarray:
    """atlalign-style intensity augmentation, one draw per sample.

    ``clip(((x - 0.5) * c + 0.5 + b) ** g + noise, 0, 1)`` (see
    :class:`deepscope.config.registration.IntensityAugment`).

    Args:
        images: (B, 1, H, W) float32 in [0, 1].
        aug: the ranges (``brightness``, ``contrast``, ``gamma``, ``noise``).
        rng: the generator.

    Returns:
        (B, 1, H, W) float32 in [0, 1].
    """
    b = len(images)
    shape = (b,) + (1,) * (images.ndim - 1)
    bright = rng.uniform(-aug.brightness, aug.brightness, b).reshape(shape)
    contrast = rng.uniform(1 - aug.contrast, 1 + aug.contrast, b).reshape(shape)
    gamma = np.exp(rng.uniform(-aug.gamma, aug.gamma, b)).reshape(shape)
    out = np.clip((images - 0.5) * contrast + 0.5 + bright, 0.0, 1.0) ** gamma
    if aug.noise > 0:
        out = out + rng.standard_normal(images.shape) * rng.uniform(0, aug.noise, b).reshape(shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# --- the store --------------------------------------------------------------------------------------


class RegistrationStore(LazyStore):
    """The pairs of one split, read from the file batch by batch (the ``SampleStore`` protocol).

    Position ``i`` is file row ``rows[i]``. A batch reads ``img`` and the fields in increasing row
    order (h5py needs it; :meth:`read` puts them back in the order asked) and takes the reference
    (and label) sections from the volumes. The training split may augment the intensities of
    reference and moving images: each read draws from a generator seeded by ``data.seed``, a call
    counter and the rows, so every batch gets its own draw.

    Args:
        plan: the checked file (:func:`plan_registration`).
        rows: the split's file rows, increasing.
        inverse: add the ``inv_dx, inv_dy`` channels.
        augment_reference, augment_moving: intensity ranges (None: off).
        seed: the augmentation's seed.
    """

    def __init__(self, plan: RegistrationPlan, rows: np.ndarray, inverse: bool = False,
                 augment_reference: Any = None, augment_moving: Any = None, seed: int = 0) -> None:
        self.plan = plan
        self.rows = np.asarray(rows, np.int64)
        self.inverse = inverse
        self.augment_reference = augment_reference if augment_reference is not None and augment_reference.enabled \
            else None
        self.augment_moving = augment_moving if augment_moving is not None and augment_moving.enabled else None
        self.seed = int(seed)
        self.target_names = plan.names
        self._n = len(self.rows)
        self._calls = 0
        self.h5 = H5Handle(plan.path)
        self.rows_read = 0

    def __repr__(self) -> str:
        return f"RegistrationStore('{self.plan.path}', {self._n} pairs)"

    def sample_bytes(self) -> int:
        h, w = self.plan.shape
        return (2 + len(self.target_names)) * h * w * 4

    def _read_field(self, name: str, rows: np.ndarray) -> np.ndarray:
        values, read = take_rows(self.h5.file[name], rows, f"'{self.plan.path}', dataset '{name}'")
        self.rows_read += read
        return np.moveaxis(np.asarray(values, np.float32), -1, 1)  # (B, H, W, 2) -> (B, 2, H, W)

    def _read_sorted(self, positions: np.ndarray) -> dict[str, Any]:
        from deepscope.data.simulators.registration import warp

        rows = self.rows[positions]
        img, read = take_rows(self.h5.file["img"], rows, f"'{self.plan.path}', dataset 'img'")
        self.rows_read += read
        moving = (np.asarray(img, np.float32) / np.float32(255.0))[:, None]  # (B, 1, H, W)
        sections = self.plan.sections[rows]
        reference = np.asarray(self.plan.reference.array[sections], np.float32)[:, None]  # (B, 1, H, W)
        targets = [reference, self._read_field("deltas_xy", rows)]
        inv = self._read_field("inv_deltas_xy", rows) if self.plan.has_inverse else None
        if self.inverse:
            targets.append(inv)
        if self.plan.annotation is not None:
            labels = np.asarray(self.plan.annotation.array[sections])  # (B, H, W)
            fields = np.moveaxis(inv, 1, -1)  # (B, H, W, 2)
            moved = np.stack([warp(lab, f, order=0) for lab, f in zip(labels, fields)])
            targets += [labels[:, None].astype(np.float32), moved[:, None].astype(np.float32)]
        inputs = {"reference": reference.copy(), "moving": moving}
        if self.augment_reference is not None or self.augment_moving is not None:
            self._calls += 1
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, self._calls, *rows.tolist()]))
            if self.augment_reference is not None:
                inputs["reference"] = augment_intensity(inputs["reference"], self.augment_reference, rng)
            if self.augment_moving is not None:
                inputs["moving"] = augment_intensity(inputs["moving"], self.augment_moving, rng)
        return {"images": inputs, "targets": np.concatenate(targets, axis=1)}

    def describe_sample(self, key: str, position: int) -> str:
        return f"'{self.plan.path}', row {int(self.rows[position])}"


# --- the sources ------------------------------------------------------------------------------------


def load_registration_hdf5(cfg: Any, data: Any = None) -> dict[str, RegistrationStore]:
    """The ``registration_hdf5`` source: train and (when their fractions leave any) val and test stores.

    Args:
        cfg: a validated ``registration_hdf5`` data section.
        data: unused (the source reads its file).

    Returns:
        ``{"train": ..., "val": ..., "test": ...}`` of :class:`RegistrationStore`; only train
        augments intensities.

    Raises:
        DataError: what :func:`plan_registration` and :func:`split_rows` raise.
    """
    plan = plan_registration(cfg)
    splits = split_rows(cfg, plan.n, plan.dataset_id, plan.path)
    return {name: RegistrationStore(plan, rows, cfg.inverse,
                                    cfg.augment_reference if name == "train" else None,
                                    cfg.augment_moving if name == "train" else None, cfg.seed)
            for name, rows in splits.items()}


def _stand_in(names: list[str], shape: tuple[int, int], channels: tuple[str, ...]) -> Description:
    h, w = shape
    return Description({name: ArraySet(images={k: np.zeros((1, 1, h, w), np.float32) for k in IMAGE_NAMES},
                                       targets=np.zeros((1, len(channels), h, w), np.float32),
                                       target_names=channels)
                        for name in names})


def describe_registration_hdf5(cfg: Any, task: str) -> Description:
    """Stand-in sets of one zero sample per split with the real shapes and target channels, from the
    file's metadata, ``p`` and ``dataset_id``.

    Raises:
        DataError: what :func:`load_registration_hdf5` raises before reading images.
    """
    plan = plan_registration(cfg)
    splits = split_rows(cfg, plan.n, plan.dataset_id, plan.path)
    return _stand_in(list(splits), plan.shape, plan.names)


def _demo_options(cfg: Any) -> Any:
    from deepscope.data.simulators.registration import RegistrationOptions

    try:
        return RegistrationOptions(**cfg.simulator_options())
    except ValueError as exc:
        raise ConfigError(f"data: the registration demo refuses these options ({exc})") from None


def load_registration_demo(cfg: Any, data: Any = None) -> dict[str, RegistrationStore]:
    """Write the demo's files when missing (``path``, ``<stem>_reference.npy``, ``<stem>_annotation.npy``),
    then read them as ``registration_hdf5``.

    Raises:
        DataError: a file there was written with other settings (delete it, or change ``data.path``),
            or cannot be written.
        ConfigError: the simulator refuses an option.
    """
    from deepscope.data.simulators.registration import ensure_registration_demo

    ensure_registration_demo(cfg.path, _demo_options(cfg), cfg.reference_file, cfg.annotation_file)
    return load_registration_hdf5(cfg.as_hdf5())


def describe_registration_demo(cfg: Any, task: str) -> Description:
    """From the settings alone (nothing is written before training), after checking that a file
    already there holds these settings.

    Raises:
        DataError: ``path`` holds another file.
    """
    from deepscope.data.simulators.registration import check_registration_demo

    opts = _demo_options(cfg)
    check_registration_demo(cfg.path, opts)
    dataset_id = np.arange(opts.n_pairs, dtype=np.int64) % opts.n_datasets
    splits = split_rows(cfg, opts.n_pairs, dataset_id, cfg.path)
    return _stand_in(list(splits), tuple(opts.shape), target_names(cfg.inverse, cfg.annotation_file is not None))
