"""What the ``atlas_hdf5`` source reads from one set group: the datasets, checked once against the config.

Images come in two forms (``data.images``):

* a stack name ``img``: the datasets ``{set}/{img}_Lr{k}``, one channel each in increasing k
  (DeepCalo's ``load_atlas_data``);
* a mapping ``name -> [dataset, ...]``: one channel per dataset, in that order, any names. Real
  ATLAS files hold one dataset per calorimeter layer and the layers differ in granularity, so the
  strips (``em_barrel_Lr1``, (N, 56, 11)) become one image and the coarser layers another.

The datasets of one image share a size. An image's gate partner (DeepCalo's gate net) is exposed
as ``gate_<name>``, the data contract's name, wherever its datasets come from:

* ``gate_images: true`` with a stack name and no ``gate_prefix``: the stack ``gate_{img}_Lr{k}``
  when the file has one; its layers must be the image's;
* ``gate_images: true`` otherwise: the datasets ``prefix + d`` for each channel dataset ``d`` of
  the image (``prefix`` = ``gate_prefix``, else ``gate_``), for every image that has all of them; a
  partly present set is an error, and so is a ``gate_prefix`` that finds no gate at all;
* ``gate_images: {name: [dataset, ...]}``: those datasets, for the images named;
* ``gate_images: false``: none.

A gate image must match its image's channel count and size. Every problem raises a
:class:`~deepscope.errors.DataError` naming the file, the dataset and the config key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.errors import DataError, did_you_mean

__all__ = ["SetPlan", "listing", "longest_tracks", "plan_set", "same_images", "selected_rows"]

GATE_PREFIX = "gate_"  # the data contract's name of a gate partner (deepscope.models.nets.combined)
_LAYER = re.compile(r"^(?P<img>.+)_Lr(?P<k>\d+)$")
_SHOWN = 25  # dataset names listed in an error


@dataclass(frozen=True)
class SetPlan:
    """The checked dataset names of one set group, in the order they are stacked."""

    group: str
    n_events: int
    images: dict[str, tuple[str, ...]]  # image name (gate images included) -> its datasets, channel order
    image_shapes: dict[str, tuple[int, ...]]  # per-channel size, (H, W) or (D, H, W)
    scalars: tuple[str, ...]
    tracks: tuple[str, ...]
    ragged: bool  # tracks are vlen datasets (else (N, T) padded ones)
    max_tracks: int
    target: tuple[str, ...]  # one name, or (numerator, denominator)
    target_shape: tuple[int, ...]
    target_integer: bool
    multiply_output_with: str | None
    sample_weights: str | None

    def sample_bytes(self) -> int:
        """Bytes one event takes in memory."""
        n = sum(len(layers) * int(np.prod(self.image_shapes[k])) for k, layers in self.images.items())
        n += len(self.scalars) + self.max_tracks * len(self.tracks)
        n += int(np.prod(self.target_shape)) * (2 if self.target_integer else 1)
        n += (self.multiply_output_with is not None) + (self.sample_weights is not None)
        return 4 * n


def listing(names: list[str]) -> str:
    """Sorted names for an error message, cut after a few dozen."""
    shown = ", ".join(sorted(names)[:_SHOWN])
    return (shown + f", … ({len(names)} in all)") if len(names) > _SHOWN else (shown or "nothing")


class _Checker:
    """Looks up and checks the datasets of one set group; every problem names the file and dataset."""

    def __init__(self, path: Path, group: Any) -> None:
        import h5py

        self.path, self.group = path, group
        self.name = group.name.strip("/")
        self.datasets = [k for k, v in group.items() if isinstance(v, h5py.Dataset)]
        self.lengths: dict[str, int] = {}

    def where(self, name: str) -> str:
        return f"data file '{self.path}', dataset '{self.name}/{name}'"

    def quoted(self, names: tuple[str, ...] | list[str]) -> str:
        return ", ".join(f"'{self.name}/{n}'" for n in names)

    def get(self, name: str, option: str) -> Any:
        import h5py

        obj = self.group.get(name)
        if not isinstance(obj, h5py.Dataset):
            hint = did_you_mean(name, self.datasets)
            raise DataError(
                f"data file '{self.path}': no dataset '{self.name}/{name}' ({option}){hint}; "
                f"group '{self.name}' has: {listing(self.datasets)}"
            )
        if obj.ndim == 0:
            raise DataError(f"{self.where(name)} ({option}): found a single value; expected one entry per event")
        self.lengths[name] = int(obj.shape[0])
        return obj

    def numeric(self, ds: Any, name: str, option: str) -> None:
        if ds.dtype.kind not in "fiub":
            raise DataError(f"{self.where(name)} ({option}): found dtype {ds.dtype}; expected numbers")

    def per_event(self, name: str, option: str) -> Any:
        ds = self.get(name, option)
        self.numeric(ds, name, option)
        if not (ds.ndim == 1 or (ds.ndim == 2 and ds.shape[1] == 1)):
            raise DataError(f"{self.where(name)} ({option}): found shape {ds.shape}; "
                            "expected (N,), one value per event")
        return ds

    def layers(self, img: str) -> dict[int, str]:
        """The ``{img}_Lr{k}`` datasets by k, increasing."""
        found: dict[int, str] = {}
        for name in self.datasets:
            m = _LAYER.match(name)
            if m and m.group("img") == img:
                k = int(m.group("k"))
                if k in found:
                    raise DataError(f"{self.where(name)}: layer {k} of image '{img}' also appears as "
                                    f"'{self.name}/{found[k]}'")
                found[k] = name
        return dict(sorted(found.items()))

    def image_names(self) -> list[str]:
        return sorted({m.group("img") for n in self.datasets if (m := _LAYER.match(n))})

    def stack(self, img: str, option: str) -> tuple[tuple[str, ...], tuple[int, ...], list[int]]:
        """Image ``img`` by the ``_Lr{k}`` rule: its datasets, their size and the layer numbers."""
        layers = self.layers(img)
        if not layers:
            known = self.image_names()
            raise DataError(
                f"data file '{self.path}': no datasets '{self.name}/{img}_Lr<k>' for image '{img}' ({option})"
                f"{did_you_mean(img, known)}; group '{self.name}' has images: {listing(known)} "
                f"(and datasets: {listing(self.datasets)}); name datasets of other names in a mapping "
                "data.images: {name: [dataset, ...]}"
            )
        names = tuple(layers.values())
        shape = self._sizes(names, option, "layer shape", "the layers of one image need the same size; give "
                                                          "layers of different sizes as separate images in a mapping "
                                                          "data.images: {name: [dataset, ...]}")
        return names, shape, list(layers)

    def channels(self, datasets: list[str] | tuple[str, ...], option: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """An image given as a list of datasets, one channel each: the names and their common size."""
        names = tuple(datasets)
        shape = self._sizes(names, option, "size", "the datasets of one image need the same size; put datasets "
                                                   "of another granularity in an image of their own")
        return names, shape

    def _sizes(self, names: tuple[str, ...], option: str, noun: str, rule: str) -> tuple[int, ...]:
        shape: tuple[int, ...] = ()
        for i, name in enumerate(names):
            ds = self.get(name, option)
            self.numeric(ds, name, option)
            if ds.ndim not in (3, 4):
                raise DataError(f"{self.where(name)} ({option}): found shape {ds.shape}; an image layer is "
                                "(N, H, W) or (N, D, H, W)")
            size = tuple(int(s) for s in ds.shape[1:])
            if i == 0:
                shape = size
            elif size != shape:
                raise DataError(f"{self.where(name)} ({option}): found {noun} {size} but '{self.name}/{names[0]}' "
                                f"has {shape}; {rule}")
        return shape

    def same_length(self) -> int:
        lengths = self.lengths
        ref_name, ref = next(iter(lengths.items()))
        for name, n in lengths.items():
            if n != ref:
                raise DataError(
                    f"data file '{self.path}': '{self.name}/{name}' has {n} events but '{self.name}/{ref_name}' "
                    f"has {ref}; every dataset of a set needs the same number of events"
                )
        if ref == 0:
            raise DataError(f"data file '{self.path}': group '{self.name}' holds no events")
        return ref


# --- images and their gates ------------------------------------------------------------------------


def _images(c: _Checker, cfg: Any) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[int, ...]],
                                          dict[str, list[int] | None]]:
    """The configured images: datasets, size and (stack rule only) layer numbers per image."""
    images: dict[str, tuple[str, ...]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    ks: dict[str, list[int] | None] = {}
    for img, datasets in cfg.image_datasets().items():
        if datasets is None:
            images[img], shapes[img], ks[img] = c.stack(img, "data.images")
        else:
            images[img], shapes[img] = c.channels(datasets, f"data.images.{img}")
            ks[img] = None
    return images, shapes, ks


def _gate_datasets(c: _Checker, cfg: Any, img: str, datasets: tuple[str, ...],
                   ks: list[int] | None) -> tuple[tuple[str, ...], tuple[int, ...], str] | None:
    """Image ``img``'s gate datasets, their size and the key that named them; None: it has no gate."""
    gates, prefix = cfg.gate_images, cfg.gate_prefix
    if isinstance(gates, dict):
        if img not in gates:
            return None
        option = f"data.gate_images.{img}"
        return (*c.channels(gates[img], option), option)
    gate = GATE_PREFIX + img
    if prefix is None and ks is not None:  # a stack name: the stack gate_{img}_Lr{k}, when there is one
        if not c.layers(gate):
            return None
        g_names, g_shape, g_ks = c.stack(gate, "data.gate_images")
        if g_ks != ks:
            raise DataError(
                f"data file '{c.path}': gate image '{c.name}/{gate}' has layers {g_ks} of size {g_shape} but image "
                f"'{img}' has layers {ks}; a gate image matches its image (or set data.gate_images: false)"
            )
        return g_names, g_shape, "data.gate_images"
    option = "data.gate_prefix" if prefix is not None else "data.gate_images"
    wanted = [(prefix or GATE_PREFIX) + d for d in datasets]
    present = [w for w in wanted if w in c.datasets]
    if not present:
        return None
    if len(present) < len(wanted):
        missing = [w for w in wanted if w not in present]
        raise DataError(
            f"data file '{c.path}': image '{img}' has gate dataset(s) {c.quoted(present)} ({option} "
            f"'{prefix or GATE_PREFIX}' + its datasets) but not {c.quoted(missing)}; a gate image needs one "
            "dataset per channel of its image: "
            "add them, name the gate datasets in a mapping data.gate_images, or set data.gate_images: false"
        )
    return (*c.channels(wanted, option), option)


def _with_gates(c: _Checker, cfg: Any, images: dict[str, tuple[str, ...]], shapes: dict[str, tuple[int, ...]],
                ks: dict[str, list[int] | None]) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[int, ...]]]:
    """The images with the ``gate_<name>`` partner of every image that has one (right after it), checked."""
    if cfg.gate_images is False:
        return images, shapes
    out: dict[str, tuple[str, ...]] = {}
    out_shapes: dict[str, tuple[int, ...]] = {}
    for img in images:
        out[img], out_shapes[img] = images[img], shapes[img]
        gate = GATE_PREFIX + img
        if img.startswith(GATE_PREFIX) or gate in images:  # a gate image itself, or one listed in data.images
            continue
        found = _gate_datasets(c, cfg, img, images[img], ks[img])
        if found is None:
            continue
        g_names, g_shape, option = found
        if len(g_names) != len(images[img]) or g_shape != shapes[img]:
            image_key = f"data.images.{img}" if ks[img] is None else "data.images"
            raise DataError(
                f"data file '{c.path}': gate image '{gate}' ({option}: {c.quoted(g_names)}) has {len(g_names)} "
                f"channel(s) of size {g_shape} but image '{img}' ({image_key}: {c.quoted(images[img])}) has "
                f"{len(images[img])} of size {shapes[img]}; a gate image matches its image's channels and size"
            )
        out[gate], out_shapes[gate] = g_names, g_shape
    if cfg.gate_prefix is not None and not any(GATE_PREFIX + img in out for img in cfg.image_datasets()):
        first = cfg.gate_prefix + next(iter(images.values()))[0]
        raise DataError(
            f"data file '{c.path}': data.gate_prefix is '{cfg.gate_prefix}' but group '{c.name}' has no gate "
            f"datasets for any image (looked for '{c.name}/{first}', …){did_you_mean(first, c.datasets)}; "
            f"group '{c.name}' has: {listing(c.datasets)}"
        )
    return out, out_shapes


# --- one set ----------------------------------------------------------------------------------------


def _tracks(c: _Checker, cfg: Any) -> tuple[list[Any], bool]:
    """The track datasets and whether they are ragged (vlen)."""
    import h5py

    tracks = [c.get(name, "data.tracks") for name in cfg.tracks]
    kinds = set()
    for name, ds in zip(cfg.tracks, tracks):
        base = h5py.check_vlen_dtype(ds.dtype)
        if base is not None and ds.ndim == 1:
            if np.dtype(base).kind not in "fiub":
                raise DataError(f"{c.where(name)} (data.tracks): found ragged entries of {base}; expected numbers")
            kinds.add("ragged")
        elif ds.ndim == 2 and ds.dtype.kind in "fiub":
            kinds.add("padded")
        else:
            raise DataError(f"{c.where(name)} (data.tracks): found shape {ds.shape} of {ds.dtype}; a track feature "
                            "is a ragged (vlen) (N,) dataset of per-event tracks, or a padded (N, T) one")
    if len(kinds) > 1:
        raise DataError(f"data file '{c.path}': the track features {', '.join(cfg.tracks)} of '{c.name}' mix "
                        "ragged (vlen) and padded (N, T) datasets; use one kind")
    return tracks, kinds == {"ragged"}


def plan_set(path: Path, f: Any, key: str, group_name: str, cfg: Any) -> tuple[SetPlan, list[Any]]:
    """Check one set group against an ``atlas_hdf5`` config.

    Args:
        path: the file (for messages).
        f: the open h5py file.
        key: the split (``train``, ``val``, ``test``).
        group_name: its group in the file (``data.sets.<key>``).
        cfg: the ``AtlasHDF5Data`` config.

    Returns:
        The plan (``max_tracks`` still 0) and the group's track datasets.

    Raises:
        DataError: a missing group or dataset, a wrong shape or dtype, images or gates that do not
            fit together, or datasets of different lengths.
    """
    import h5py

    group = f.get(group_name)
    if not isinstance(group, h5py.Group):
        groups = [k for k, v in f.items() if isinstance(v, h5py.Group)]
        raise DataError(
            f"data file '{path}': no group '{group_name}' (data.sets.{key}){did_you_mean(group_name, groups)}; "
            f"the file has groups: {listing(groups)}"
            + ("" if key == "train" else f" (leave {key} out of data.sets to go without it)")
        )
    c = _Checker(path, group)
    images, shapes, ks = _images(c, cfg)
    images, shapes = _with_gates(c, cfg, images, shapes, ks)
    for name in cfg.scalars:
        c.per_event(name, "data.scalars")
    tracks, ragged = _tracks(c, cfg)
    target_names = (cfg.target,) if isinstance(cfg.target, str) else tuple(cfg.target)
    target_shape: tuple[int, ...] = ()
    target_integer = False
    for i, name in enumerate(target_names):
        ds = c.get(name, "data.target")
        c.numeric(ds, name, "data.target")
        shape = tuple(int(s) for s in ds.shape[1:])
        if i == 0:
            target_shape, target_integer = shape, ds.dtype.kind in "iub" and len(target_names) == 1
        elif shape != target_shape:
            raise DataError(f"{c.where(name)} (data.target): the denominator has per-event shape {shape} but the "
                            f"numerator '{group_name}/{target_names[0]}' has {target_shape}")
    for option in ("multiply_output_with", "sample_weights"):
        name = getattr(cfg, option)
        if name is not None:
            c.per_event(name, f"data.{option}")
    plan = SetPlan(
        group=group_name, n_events=c.same_length(), images=images, image_shapes=shapes, scalars=tuple(cfg.scalars),
        tracks=tuple(cfg.tracks), ragged=ragged, max_tracks=0, target=target_names,
        target_shape=target_shape, target_integer=target_integer,
        multiply_output_with=cfg.multiply_output_with, sample_weights=cfg.sample_weights,
    )
    return plan, tracks


def same_images(path: Path, plans: dict[str, SetPlan]) -> None:
    """Every set has the gate images the training set has (the configured images are there by now).

    Raises:
        DataError: a set has a gate image another lacks, naming the groups and the gate datasets.
    """
    ref = plans["train"]
    for key, plan in plans.items():
        for a, b in ((ref, plan), (plan, ref)):
            extra = [n for n in a.images if n not in b.images]
            if extra:
                shown = ", ".join(f"'{a.group}/{d}'" for d in a.images[extra[0]])
                raise DataError(
                    f"data file '{path}': group '{a.group}' has gate image '{extra[0]}' ({shown}) but group "
                    f"'{b.group}' does not; every set needs the same images: add its gate datasets to "
                    f"'{b.group}', or set data.gate_images: false"
                )


def longest_tracks(path: Path, group: str, ds: Any) -> int:
    """The most tracks of any event in a track dataset (ragged: one chunked scan; padded: T)."""
    if ds.ndim == 2:
        return int(ds.shape[1])
    longest = 0
    step = 65536
    try:
        for start in range(0, ds.shape[0], step):
            entries = ds[start:start + step]
            if len(entries):
                longest = max(longest, max(len(e) for e in entries))
    except (OSError, RuntimeError, ValueError) as exc:
        name = ds.name.rsplit("/", 1)[-1]
        raise DataError(f"data file '{path}', dataset '{group}/{name}': cannot be read ({exc})") from None
    return longest


def selected_rows(n_points: Any, n_events: int, key: str, path: Path, group: str) -> tuple[np.ndarray | None, int]:
    """``data.n_points.<key>`` as (file rows or None for the first n, number of events).

    Raises:
        DataError: more events, or an index beyond the events, of the group.
    """
    if n_points is None:
        return None, n_events
    if isinstance(n_points, int):
        if n_points > n_events:
            raise DataError(f"data.n_points.{key} is {n_points} but group '{group}' of '{path}' holds "
                            f"{n_events} events")
        return None, n_points
    rows = np.unique(np.asarray(n_points, dtype=np.int64))
    if rows[-1] >= n_events:
        raise DataError(f"data.n_points.{key}: index {int(rows[-1])} is outside the {n_events} events of group "
                        f"'{group}' in '{path}'")
    return rows, len(rows)
