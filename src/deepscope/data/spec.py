"""``InputSpec``: the shapes and kinds of the data, derived once and read by the model builder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.errors import CheckpointError

__all__ = ["ImageSpec", "InputSpec"]


@dataclass(frozen=True)
class ImageSpec:
    """One named image input: channels and spatial size (H, W) or (D, H, W)."""

    channels: int
    spatial: tuple[int, ...]

    @property
    def spatial_dims(self) -> int:
        return len(self.spatial)


@dataclass(frozen=True)
class InputSpec:
    """What the data holds, per sample.

    Attributes:
        images: image name -> :class:`ImageSpec`.
        scalars: number of scalar features, or None.
        tracks: (max tracks T, features F), or None.
        target_shape: per-sample target shape (``()`` for one number or an integer label).
        target_kind: ``"label"`` (integer class labels) or ``"value"`` (floats, incl. one-hot).
        n_classes: number of classes for labels or one-hot targets, else None.
        sample_weights: whether the data carries sample weights.
        multiply_output_with: whether the output is multiplied by a per-sample factor.
        target_names: names of the target columns (labels of a multi-label task, regressed
            parameters), when the data names them; ``()`` otherwise.
    """

    images: dict[str, ImageSpec] = field(default_factory=dict)
    scalars: int | None = None
    tracks: tuple[int, int] | None = None
    target_shape: tuple[int, ...] = ()
    target_kind: str = "value"
    n_classes: int | None = None
    sample_weights: bool = False
    multiply_output_with: bool = False
    target_names: tuple[str, ...] = ()

    @property
    def spatial(self) -> tuple[int, ...]:
        """The spatial size shared by the images (the first image's)."""
        return next(iter(self.images.values())).spatial if self.images else ()

    @property
    def spatial_dims(self) -> int:
        return len(self.spatial)

    @property
    def in_channels(self) -> int:
        """Channels of all images together (nets that take one stacked input concatenate them)."""
        return sum(v.channels for v in self.images.values())

    @property
    def dense(self) -> bool:
        """Whether the targets are images: per-sample shape (C, *spatial) with the inputs' spatial size."""
        return (self.target_kind == "value" and len(self.target_shape) >= 3
                and tuple(self.target_shape[1:]) == tuple(self.spatial))

    @property
    def out_channels(self) -> int:
        """Channels of a dense target; for other targets, the number of outputs."""
        return int(self.target_shape[0]) if self.dense else self.output_size

    def column_names(self) -> list[str]:
        """A name per output column: ``target_names`` when given, else ``0``, ``1``, …"""
        if self.target_names:
            return list(self.target_names)
        return [str(i) for i in range(self.output_size)]

    @property
    def output_size(self) -> int:
        """Number of model outputs the targets need."""
        if self.target_kind == "label":
            return int(self.n_classes or 1)
        return int(np.prod(self.target_shape)) if self.target_shape else 1

    def to_json(self) -> str:
        data = asdict(self)
        data["images"] = {k: {"channels": v.channels, "spatial": list(v.spatial)} for k, v in self.images.items()}
        return json.dumps(data, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputSpec":
        return cls(
            images={k: ImageSpec(int(v["channels"]), tuple(v["spatial"])) for k, v in data["images"].items()},
            scalars=data.get("scalars"),
            tracks=tuple(data["tracks"]) if data.get("tracks") else None,
            target_shape=tuple(data.get("target_shape", ())),
            target_kind=data.get("target_kind", "value"),
            n_classes=data.get("n_classes"),
            sample_weights=bool(data.get("sample_weights")),
            multiply_output_with=bool(data.get("multiply_output_with")),
            target_names=tuple(data.get("target_names", ())),
        )

    @classmethod
    def load(cls, path: Path) -> "InputSpec":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"'{path}' is missing or corrupt ({exc})") from None
