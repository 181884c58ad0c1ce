"""The ``data`` section of the generic ``hdf5`` source: any HDF5 file, datasets mapped by name.

Every dataset holds samples along its first axis. The config says which datasets are the images,
scalars, tracks, targets and sample weights; splits are groups of the file (``sets``) or one pool
split by ``data.split``. See docs/hdf5.md.

Kept torch-, numpy- and h5py-free so that validating a config stays fast.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from deepscope.config.common import AbsolutePath, fail
from deepscope.config.data import DataBase
from deepscope.errors import did_you_mean

__all__ = ["HDF5Data"]

_SPLITS = ("train", "val", "test")


def _dataset_name(value: Any, where: str = "") -> str:
    """A dataset path; ``where`` names the entry inside the key (pydantic names the key itself)."""
    if not isinstance(value, str) or not value.strip("/"):
        raise fail("dataset_name", f"{where}found {value!r}; expected a dataset path in the file (e.g. 'images')")
    return value.strip("/")


def _dataset_list(value: Any, where: str = "") -> list[str]:
    names = [_dataset_name(v, where) for v in ([value] if isinstance(value, str) else value)]
    if not names:
        raise fail("dataset_name", f"{where}found an empty list; expected at least one dataset")
    for name in names:
        if names.count(name) > 1:
            raise fail("dataset_name", f"{where}dataset '{name}' is listed twice")
    return names


class HDF5Data(DataBase):
    """Any HDF5 file: datasets mapped to images, scalars, tracks, targets and weights, read in whole
    batches (lazily for data larger than memory)."""

    source: Literal["hdf5"]
    path: AbsolutePath = Field(description="the HDF5 file; a relative path is taken from the current folder and "
                                           "stored absolute, so evaluate/predict work from anywhere")
    sets: dict[str, str] | None = Field(
        None, description="split name (train, val, test) -> the group holding that split's datasets; null: the "
                          "datasets are at the file's root and form one pool split by data.split")
    images: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="image name -> its dataset, (N, H, W) / (N, D, H, W) or with a channel axis (see "
                    "data.channels), or a list of such datasets without channel axis, one channel each")
    scalars: list[str] = Field(default_factory=list, description="scalar datasets, (N,) or (N, S) each, "
                                                                 "concatenated to (N, S) in this order")
    tracks: str | list[str] | None = Field(
        None, description="a zero-padded (N, T, F) track dataset, or a list of (N, T) datasets, one per track "
                          "feature, stacked to (N, T, F) in this order")
    targets: str | list[str] = Field(
        description="the target dataset ((N,) labels or values, (N, K), or images like the inputs), or a list "
                    "of (N,) datasets stacked to (N, K) columns named after them")
    weights: str | None = Field(None, description="(N,) dataset of per-sample weights for the loss and metrics")
    lazy: Literal["auto"] | bool = Field(
        "auto", description="read batches from the file as training goes (true) or load the data into memory "
                            "once (false); auto: in memory when it takes less than 1 GiB")
    shuffle: Literal["samples", "chunks"] = Field(
        "samples", description="how training batches are shuffled in lazy mode: 'samples' draws every batch from "
                               "the whole split; 'chunks' shuffles the order of the datasets' storage chunks and "
                               "the samples within a few neighbouring chunks, so each batch reads few chunks "
                               "(for splits that are groups or 'start:stop' ranges)")
    chunk_cache_mb: float | None = Field(
        None, gt=0, description="HDF5 chunk cache per dataset, in MiB, in each process reading the file; "
                                "null: for compressed datasets room for 8 of the largest chunks (1 to 64 MiB), else HDF5's default (1 MiB)")

    @field_validator("sets")
    @classmethod
    def _sets(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        for key, group in value.items():
            if key not in _SPLITS:
                raise fail("set_name", f"unknown split '{key}'{did_you_mean(key, _SPLITS)} (allowed: train, val, test)")
            if not isinstance(group, str) or not group.strip("/"):
                raise fail("set_name", f"'{key}': found {group!r}; expected a group name in the file")
        if "train" not in value:
            raise fail("set_name", "needs 'train' (the group to train on)")
        return {k: value[k].strip("/") for k in _SPLITS if k in value}

    @field_validator("images", mode="before")
    @classmethod
    def _images(cls, value: Any) -> Any:
        if isinstance(value, (str, list)):
            return {"images": value}  # one image: its dataset(s)
        if isinstance(value, dict):
            return {name: (_dataset_name(d, f"image '{name}': ") if isinstance(d, str)
                           else _dataset_list(d, f"image '{name}': ") if isinstance(d, list) else d)
                    for name, d in value.items()}
        return value

    @field_validator("scalars", mode="before")
    @classmethod
    def _scalars(cls, value: Any) -> Any:
        return _dataset_list(value) if isinstance(value, (str, list)) and value else value

    @field_validator("tracks", "targets", mode="before")
    @classmethod
    def _one_or_list(cls, value: Any, info: Any) -> Any:
        if isinstance(value, (str, list)):
            names = _dataset_list(value)
            return names[0] if isinstance(value, str) else names
        return value

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        return _dataset_name(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> "HDF5Data":
        if not self.images and not self.scalars and not self.tracks:
            raise fail("no_inputs", "data.images, data.scalars and data.tracks are all empty; map at least one "
                                    "dataset to an input")
        if self.shuffle == "chunks" and self.sets is None:
            split = self.split
            if split is None or (split.uses_fractions and split.shuffle):
                raise fail("shuffle_chunks", "data.shuffle: chunks keeps each batch's reads within a few storage "
                                             "chunks, but a shuffled data.split scatters every split over the "
                                             "file; split by groups (data.sets), by 'start:stop' ranges, or with "
                                             "data.split.shuffle: false")
        if self.sets is not None and self.split is not None:
            raise fail("split_given", "data.sets names the groups of the splits; remove data.split (or remove "
                                      "data.sets to split one pool of samples)")
        return self

    def input_datasets(self) -> list[str]:
        """Every dataset the config names, inputs first, each once."""
        names: list[str] = []
        for value in (*self.images.values(), self.scalars, self.tracks, self.targets, self.weights):
            for name in ([value] if isinstance(value, str) else value or []):
                if name not in names:
                    names.append(name)
        return names
