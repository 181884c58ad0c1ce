"""The ``data`` section of the ``root`` source: events of a ROOT TTree with jagged per-hit branches.

Each named view is a 2D histogram of one event's hits over two branches (integer cell indices, or a
float branch binned over a range); targets are a scalar branch mapped to class labels or jagged
index branches as multi-hot vectors. Read with uproot (no ROOT install). See docs/root-data.md.

Kept torch-, numpy- and uproot-free so that validating a config stays fast.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_serializer, model_validator

from deepscope.config.common import AbsolutePath, StrictModel, fail
from deepscope.config.data import DataCommon
from deepscope.errors import did_you_mean

__all__ = ["RootAxis", "RootData", "RootTarget", "RootView"]

_SPLITS = ("train", "val", "test")
# uproot's memory sizes: "100 MB", "1.5 GiB", "512kB"
_MEMORY = re.compile(r"^\s*(\d+(\.\d*)?|\.\d+)\s*([kmgt]?i?b)\s*$", re.IGNORECASE)


class RootAxis(StrictModel):
    """One axis of a view: a branch of integer cell indices, or a float branch binned over a range."""

    branch: str = Field(description="the per-hit (jagged) branch")
    range: tuple[float, float] | None = Field(
        None, description="[low, high]: bin the branch's values uniformly over this range into the axis' size "
                          "(values outside are dropped, high itself falls in the last bin); null: the values are "
                          "integer cell indices 0..size-1")

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not value:
            raise fail("branch_name", "found an empty branch name")
        return value

    @field_validator("range")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise fail("bin_range", f"found {list(value)}; expected [low, high] with low < high")
        return value

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> Any:
        # a plain branch name when there is no range, as the user wrote it
        return self.branch if self.range is None else handler(self)


def _axis_form(value: Any) -> Any:
    if isinstance(value, str):
        return {"branch": value}
    if isinstance(value, dict) or isinstance(value, RootAxis):
        return value
    raise fail("axis_form", f"found {value!r}; expected a branch name (integer cells) or {{branch: NAME, "
                            "range: [low, high]} (a float branch binned over the range)")


Axis = Annotated[RootAxis, BeforeValidator(_axis_form)]


class RootView(StrictModel):
    """One image: a 2D histogram of each event's hits, rows × cols."""

    rows: Axis = Field(description="the branch along the image's rows: a branch name (integer cells) or "
                                   "{branch, range} (float values binned over the range)")
    cols: Axis = Field(description="the branch along the image's columns, as rows")
    shape: tuple[int, int] = Field(description="[R, C]: the number of rows and columns (cells or bins)")
    mode: Literal["binary", "counts"] = Field("binary", description="binary: 1 where a cell has a hit; counts: "
                                                                    "the number of hits in each cell")
    select: dict[str, float] = Field(
        default_factory=dict, description="per-hit branch -> value: only hits where every such branch equals its "
                                          "value are histogrammed (e.g. {tracker_side: 0})")

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1:
            raise fail("view_shape", f"found {list(value)}; rows and columns must be at least 1")
        return value

    def branches(self) -> list[str]:
        """The per-hit branches this view reads, rows first, each once."""
        return list(dict.fromkeys([self.rows.branch, self.cols.branch, *self.select]))


class RootTarget(StrictModel):
    """The target: a scalar branch as class labels, jagged index branches as multi-hot vectors, or a per-hit
    track branch as an image of one track's hits (clustering)."""

    branch: str | None = Field(None, description="a per-event (scalar) branch whose values are mapped to class "
                                                 "labels by classes")
    classes: list[int] | None = Field(None, description="with branch: the branch values in label order; value "
                                                        "classes[k] becomes label k (e.g. [1, 2, 3, 4] tracks)")
    multi_hot: str | list[str] | None = Field(
        None, description="a jagged branch of integer indices: each event's (N, size) multi-hot vector; or two "
                          "such branches [a, b] of equal per-event length: their product index a * size_b + b")
    size: int | list[int] | None = Field(None, description="with multi_hot: the number of labels (one per "
                                                           "branch: [size_a, size_b] for two branches)")
    mask: str | None = Field(
        None, description="a per-hit branch of track numbers (-1 for noise): the target is the image, in the "
                          "binning of view, of the hits of one track (per-hit masks for clustering)")
    view: str | None = Field(None, description="with mask: the view (a data.views name) whose image the mask is")
    track: Literal["longest"] | int = Field(
        "longest", description="with mask: which track: the one with the most hits in the view (ties: the "
                               "lowest number), or a track number")

    @model_validator(mode="after")
    def _one_form(self) -> "RootTarget":
        labels, multi, mask = self.branch is not None, self.multi_hot is not None, self.mask is not None
        if labels + multi + mask != 1:
            raise fail("target_form", "expected {branch: NAME, classes: [...]} (class labels), {multi_hot: NAME, "
                                      "size: K} (multi-hot vectors) or {mask: NAME, view: VIEW} (one track's hits)"
                                      + (", only one of them" if labels + multi + mask > 1 else ""))
        if not mask and (self.view is not None or self.track != "longest"):
            raise fail("target_form", "data.target.view and track go with mask")
        if mask:
            if not self.mask or self.view is None:
                raise fail("target_form", "data.target.mask needs view: the data.views name whose binning the "
                                          "mask image has (e.g. {mask: tracker_track, view: top})")
            if any(v is not None for v in (self.classes, self.size)):
                raise fail("target_form", "data.target.mask takes view and track; classes and size go with "
                                          "branch and multi_hot")
            return self
        if labels:
            if self.size is not None:
                raise fail("target_form", "data.target.size goes with multi_hot; with branch give classes")
            if not self.classes:
                raise fail("target_classes", "data.target.branch needs classes: the branch values in label order "
                                             "(e.g. [1, 2, 3, 4])")
            if len(set(self.classes)) != len(self.classes):
                raise fail("target_classes", f"data.target.classes {self.classes} repeats a value")
            return self
        if self.classes is not None:
            raise fail("target_form", "data.target.classes goes with branch; with multi_hot give size")
        names = [self.multi_hot] if isinstance(self.multi_hot, str) else list(self.multi_hot or [])
        sizes = [self.size] if isinstance(self.size, int) else list(self.size or [])
        if not 1 <= len(names) <= 2 or not all(names) or len(set(names)) != len(names):
            raise fail("target_form", f"data.target.multi_hot: found {self.multi_hot!r}; expected a branch name or "
                                      "two different ones")
        if len(sizes) != len(names) or min(sizes) < 1:
            n = len(names)
            raise fail("target_form", f"data.target.size: found {self.size!r}; expected {n} size{'s' * (n > 1)} ≥ 1 "
                                      "(one per multi_hot branch)")
        return self

    def multi_hot_branches(self) -> list[tuple[str, int]]:
        """(branch, size) of each multi-hot branch, in order (empty for class labels)."""
        if self.multi_hot is None:
            return []
        names = [self.multi_hot] if isinstance(self.multi_hot, str) else list(self.multi_hot)
        sizes = [self.size] if isinstance(self.size, int) else list(self.size)  # type: ignore[arg-type]
        return list(zip(names, sizes))

    def branches(self) -> list[str]:
        if self.mask is not None:
            return [self.mask]
        return [self.branch] if self.branch is not None else [b for b, _ in self.multi_hot_branches()]


class RootData(DataCommon):
    """Events of a ROOT TTree (read with uproot, no ROOT install): per-event hits in jagged branches
    histogrammed into named 2D views, (N, 1, R, C) each; class labels or multi-hot targets."""

    source: Literal["root"]
    path: AbsolutePath | None = Field(
        None, description="a ROOT file or a glob of files (read in sorted order, one pool split by data.split); "
                          "stored absolute. Give path or files")
    files: dict[str, AbsolutePath] | None = Field(
        None, description="split (train, val, test) -> a file or glob of that split's files, instead of path; "
                          "train is required")
    tree: str = Field("hit_tree", description="the TTree holding the events (one entry per event)")
    views: dict[str, RootView] = Field(description="image name -> its view: a 2D histogram of each event's hits")
    target: RootTarget = Field(description="{branch, classes}: class labels from a scalar branch; {multi_hot, "
                                           "size}: multi-hot vectors from jagged index branches")
    step_size: int | str = Field(
        "100 MB", description="events read per chunk: a number of events or a memory size such as '100 MB'")

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        for key in value:
            if key not in _SPLITS:
                raise fail("set_name", f"unknown split '{key}'{did_you_mean(key, _SPLITS)} (allowed: train, val, test)")
        if "train" not in value:
            raise fail("set_name", "needs 'train' (the files to train on)")
        return {k: value[k] for k in _SPLITS if k in value}

    @field_validator("tree")
    @classmethod
    def _tree(cls, value: str) -> str:
        if not value:
            raise fail("tree_name", "found an empty tree name")
        return value

    @field_validator("views", mode="before")
    @classmethod
    def _each_view(cls, value: Any) -> Any:
        # Each view is validated here so that its problems carry the view's name: the dotted paths of
        # the error report follow fields, not the keys of a mapping.
        if not isinstance(value, dict):
            return value
        from pydantic import ValidationError
        from pydantic_core import PydanticCustomError

        from deepscope.config.io import format_errors

        views, problems = {}, []
        for name, view in value.items():
            try:
                views[name] = RootView.model_validate(view)
            except ValidationError as exc:
                for line in format_errors(exc, RootView):
                    problems.append(f"data.views.{name}" + (f": {line.removeprefix('(top level): ')}"
                                                            if line.startswith("(top level)") else f".{line}"))
        if problems:
            raise PydanticCustomError("cross_check", "{msgs}", {"msgs": "\n".join(problems)})
        return views

    @field_validator("views")
    @classmethod
    def _views(cls, value: dict[str, RootView]) -> dict[str, RootView]:
        if not value:
            raise fail("no_inputs", "found no views; name at least one, e.g. {top: {rows: tracker_layer, "
                                    "cols: tracker_column, shape: [9, 113]}}")
        if any(not name for name in value):
            raise fail("empty_name", "found an empty view name")
        return value

    @field_validator("step_size")
    @classmethod
    def _step_size(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise fail("step_size", f"found {value}; expected at least 1 event per chunk")
        if isinstance(value, str) and not _MEMORY.match(value):
            raise fail("step_size", f"found {value!r}; expected a number of events or a memory size like '100 MB'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "RootData":
        if (self.path is None) == (self.files is None):
            raise fail("root_files", "give data.path (one pool, split by data.split) or data.files (the files of "
                                     "each split)" + (", not both" if self.path is not None else ""))
        if self.files is not None and self.split is not None:
            raise fail("split_given", "data.files names the files of each split; remove data.split (or give "
                                      "data.path to split one pool of events)")
        view = self.target.view
        if view is not None and view not in self.views:
            raise fail("target_view", f"data.target.view: no view '{view}'{did_you_mean(view, list(self.views))} "
                                      f"(views: {', '.join(self.views)})")
        return self

    def file_patterns(self) -> dict[str, str]:
        """Split (``pool`` for data.path) -> its file or glob pattern."""
        if self.files is not None:
            return {k: str(v) for k, v in self.files.items()}
        return {"pool": str(self.path)}

    def branches(self) -> list[str]:
        """Every branch the config reads, each once: the views' first, then the target's."""
        names = [b for view in self.views.values() for b in view.branches()]
        return list(dict.fromkeys([*names, *self.target.branches()]))
