"""Random augmentation of numpy training batches (after standardization, before tensor conversion).

Every sample draws its own transform from its own generator, ``np.random.default_rng([seed, epoch,
index])``, where ``index`` is the sample's position in its source (``batch["index"]``). So a sample's
augmentation depends on nothing but the seed, the epoch and the sample: not on the batch it lands
in, the batch size, the number of DDP processes or loader workers, nor on where a resumed epoch
restarts. A batch without ``"index"`` numbers its samples by a running count instead, which
:meth:`Augmenter.set_epoch` resets: then the same seed and the same sequence of calls give the same
output.

Order per sample: flips, quarter turn, shift and crop (one window copy), intensity scale, noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepscope.config.augment import AXES, AugmentConfig
from deepscope.config.data import GATE_PREFIX
from deepscope.data.standardize import Standardizer
from deepscope.errors import ConfigError, DataError

__all__ = ["Augmenter", "SampleDraw"]


@dataclass(frozen=True)
class SampleDraw:
    """The random transform of one sample.

    Attributes:
        flips: spatial axes flipped, numbered from the first spatial axis (z in 3D, y in 2D).
        turns: quarter turns of the (y, x) plane, in ``np.rot90``'s direction (0 to 3).
        shift: per spatial axis, how far the content moves (pixels; zeros move in).
        offset: per spatial axis, where the crop starts in the shifted sample; negative where the
            sample is smaller than the crop (it is padded, centred). All zeros without ``crop``.
        scale: intensity factor (1.0 without ``scale``).
    """

    flips: tuple[int, ...]
    turns: int
    shift: tuple[int, ...]
    offset: tuple[int, ...]
    scale: float


class Augmenter:
    """Applies ``data.augment`` to numpy batches ``{"images": {name: (B, C, *spatial)}, "targets": ...}``.

    Geometric transforms move every image of a sample and its dense targets (``(B, C', *spatial)``
    with an image's spatial size) alike; noise and scale change the inputs (not ``gate_`` images,
    which hold times rather than intensities); scale also multiplies dense targets. Other keys
    (scalars, tracks, non-dense targets, weights) pass through untouched.

    Args:
        cfg: the ``data.augment`` section.
        seed: base seed (non-negative), e.g. the run's seed.
        standardizer: the statistics the batches were standardized with. When given, "zero" (the
            shift and padding fill) and ``scale`` are taken in data units: the fill is what a raw 0
            of each channel standardizes to, and ``scale`` maps ``z -> s * z + (s - 1) * mean / std``,
            so it stays a true intensity scale when standardization subtracts a mean. Without it
            both act on the standardized values.

    Raises:
        ValueError: a negative seed.
    """

    def __init__(self, cfg: AugmentConfig, seed: int, standardizer: Standardizer | None = None) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, found {seed}")
        self.cfg = cfg
        self.seed = int(seed)
        self.standardizer = standardizer
        self.epoch = 0
        self._counted = 0  # samples numbered so far this epoch, for batches without "index"
        self._checked: tuple[Any, ...] | None = None

    @property
    def enabled(self) -> bool:
        """Whether anything is configured (otherwise ``__call__`` returns the batch as it is)."""
        return self.cfg.enabled

    def set_epoch(self, epoch: int) -> None:
        """Draw the transforms of ``epoch`` from now on (and restart the running sample count)."""
        self.epoch = int(epoch)
        self._counted = 0

    def output_spatial(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """The spatial size of augmented samples: the crop size when cropping, else ``spatial``.

        Raises:
            DataError: ``crop`` has another number of axes than ``spatial``.
        """
        if self.cfg.crop is None:
            return tuple(spatial)
        self._check_crop("the images are", spatial)
        return tuple(self.cfg.crop)

    def check(self, images: Mapping[str, Sequence[int]], target_shape: Sequence[int] = ()) -> None:
        """Check that the config fits the data; called on every new batch layout, callable up front.

        Args:
            images: image name -> spatial size (H, W) or (D, H, W).
            target_shape: the per-sample target shape (dense targets are (C, *spatial)).

        Raises:
            DataError: ``flips`` names an axis the images lack, ``rot90`` meets non-square (y, x)
                planes, ``crop`` has the wrong number of axes, or ``shift``/``crop`` meet images of
                different sizes.
            ConfigError: dense targets standardized per pixel would be moved by geometric transforms.
        """
        cfg = self.cfg
        shapes = {name: tuple(s) for name, s in images.items()}
        for name, spatial in shapes.items():
            where = f"images['{name}']"
            if len(spatial) not in (2, 3):
                raise DataError(f"data.augment: {where} has spatial size {spatial}; augmentation handles 2D (y, x) "
                                "and 3D (z, y, x) images")
            names = AXES[-len(spatial):]
            if isinstance(cfg.flips, list):
                missing = [a for a in cfg.flips if a not in names]
                if missing:
                    raise DataError(f"data.augment.flips names axis '{missing[0]}' but {where} is {len(spatial)}D "
                                    f"({', '.join(names)}); flip only axes from {', '.join(names)}, or use true")
            if cfg.rot90 and spatial[-2] != spatial[-1]:
                raise DataError(f"data.augment.rot90 needs square (y, x) planes, but {where} has y size "
                                f"{spatial[-2]} and x size {spatial[-1]} (spatial size {spatial}); set "
                                "data.augment.rot90: false, or crop to a square with data.augment.crop")
            if cfg.crop is not None:
                self._check_crop(f"{where} is", spatial)
        if (cfg.shift or cfg.crop is not None) and len(set(shapes.values())) > 1:
            key = "crop" if cfg.crop is not None else "shift"
            shown = ", ".join(f"{n} {s}" for n, s in shapes.items())
            raise DataError(f"data.augment.{key} moves every image by the same pixels, so the images need one "
                            f"spatial size; found {shown}")
        if len({len(s) for s in shapes.values()}) > 1:
            shown = ", ".join(f"{n} {s}" for n, s in shapes.items())
            raise DataError(f"data.augment: the images mix 2D and 3D spatial sizes ({shown}); one transform "
                            "cannot move them alike")
        dense = len(target_shape) >= 2 and tuple(target_shape[1:]) in shapes.values()
        stats = self.standardizer.stats.get("targets") if self.standardizer is not None else None
        per_pixel = stats is not None and np.ndim(stats[0]) > 1  # dense targets are standardized per channel
        if dense and cfg.geometric and per_pixel:
            raise ConfigError("data.augment moves the pixels of dense targets, but data.standardize.targets gives "
                              "each target pixel its own statistics, which do not move with them; set "
                              "data.standardize.targets: false, or switch off flips, rot90, shift and crop")

    def _check_crop(self, subject: str, spatial: Sequence[int]) -> None:
        crop = self.cfg.crop
        if crop is not None and len(crop) != len(spatial):
            raise DataError(f"data.augment.crop is {crop} ({len(crop)} axes) but {subject} {len(spatial)}D "
                            f"(spatial size {tuple(spatial)}); give one crop size per spatial axis")

    def draws(self, batch: Mapping[str, Any], epoch: int | None = None) -> list[SampleDraw]:
        """The transforms ``__call__`` applies to a batch that has ``"index"`` (the batch is not changed).

        Raises:
            DataError: the batch has no ``"index"`` (without it, draws depend on the call count) or
                does not fit the config (see :meth:`check`).
        """
        if "index" not in batch:
            raise DataError("Augmenter.draws needs the batch's 'index' (each sample's position in its source)")
        spatial = self._check_batch(batch)
        return [self._draw(rng, spatial) for rng in self._generators(batch, epoch)]

    def __call__(self, batch: dict[str, Any], epoch: int | None = None) -> dict[str, Any]:
        """Augment a numpy batch.

        Args:
            batch: ``{"images": {name: (B, C, *spatial)}, "targets": (B, ...), "index": (B,), ...}``.
            epoch: the epoch to draw for; default: the last :meth:`set_epoch`. Pass it when the
                augmenter runs in loader workers that a ``set_epoch`` in the main process cannot reach.

        Returns:
            A new dict: images ``(B, C, *out)`` with ``out = output_spatial(spatial)``, dense targets
            transformed alike, every other entry as it was. The input batch is not changed.
        """
        if not self.enabled or not batch.get("images"):
            return dict(batch)
        spatial = self._check_batch(batch)
        rngs = self._generators(batch, epoch)
        draws = [self._draw(rng, spatial) for rng in rngs]
        out = dict(batch)
        images = {}
        for name, img in batch["images"].items():
            stats = self._stats(f"images/{name}")
            moved = self._geometry(img, draws, fill=_sample_fill(stats, img.ndim))
            if not name.startswith(GATE_PREFIX):  # gate images hold times, not intensities
                offset = None if stats is None else _per_channel(stats[0] / stats[1], img.ndim)
                moved = self._intensity(moved, draws, rngs, offset, self.cfg.noise, fresh=moved is not img)
            images[name] = moved
        out["images"] = images
        targets = batch.get("targets")
        if isinstance(targets, np.ndarray) and _dense(targets, batch["images"]):
            stats = self._stats("targets")
            moved = self._geometry(targets, draws, fill=0.0)
            offset = None if stats is None else np.asarray(stats[0] / stats[1])  # (C', *spatial): per pixel
            out["targets"] = self._intensity(moved, draws, rngs, offset, 0.0, fresh=moved is not targets)
        return out

    # -- drawing ------------------------------------------------------------------------------------

    def _generators(self, batch: Mapping[str, Any], epoch: int | None) -> list[np.random.Generator]:
        n = len(next(iter(batch["images"].values())))
        if "index" in batch:
            index = np.asarray(batch["index"]).reshape(-1).tolist()
        else:
            index = list(range(self._counted, self._counted + n))
            self._counted += n
        e = self.epoch if epoch is None else int(epoch)
        return [np.random.default_rng([self.seed, e, int(i)]) for i in index]

    def _draw(self, rng: np.random.Generator, spatial: tuple[int, ...]) -> SampleDraw:
        """One sample's transform; every configured draw is always taken, so the stream stays aligned."""
        cfg, ndim = self.cfg, len(spatial)
        flips: tuple[int, ...] = ()
        if cfg.flips:
            axes = list(range(ndim)) if cfg.flips is True else [AXES[-ndim:].index(a) for a in cfg.flips]
            flips = tuple(a for a, hit in zip(axes, rng.random(len(axes)) < cfg.p) if hit)
        turns = 0
        if cfg.rot90:
            hit, k = rng.random() < cfg.p, int(rng.integers(1, 4))
            turns = k if hit else 0
        shift = tuple(int(s) for s in rng.integers(-cfg.shift, cfg.shift + 1, ndim)) if cfg.shift else (0,) * ndim
        offset = (0,) * ndim
        if cfg.crop is not None:
            offset = tuple(int(rng.integers(0, s - c + 1)) if s >= c else -((c - s) // 2)
                           for s, c in zip(spatial, cfg.crop))
        scale = float(rng.uniform(*cfg.scale)) if cfg.scale is not None else 1.0
        return SampleDraw(flips=flips, turns=turns, shift=shift, offset=offset, scale=scale)

    # -- applying -----------------------------------------------------------------------------------

    def _geometry(self, x: np.ndarray, draws: list[SampleDraw], fill: float | np.ndarray) -> np.ndarray:
        """(B, C, *S) -> (B, C, *out): flips and turns as views, then one window copy per sample."""
        if not self.cfg.geometric:
            return x
        spatial = x.shape[2:]
        size = tuple(self.cfg.crop) if self.cfg.crop is not None else spatial
        out = np.empty(x.shape[:2] + size, dtype=x.dtype)
        for i, d in enumerate(draws):
            v = x[i]  # (C, *S)
            if d.flips:
                v = v[(slice(None),) + tuple(slice(None, None, -1) if a in d.flips else slice(None)
                                             for a in range(len(spatial)))]
            if d.turns:
                v = np.rot90(v, d.turns, axes=(-2, -1))
            dst, src, full = [slice(None)], [slice(None)], True
            for s, o, start in zip(spatial, size, (off - sh for off, sh in zip(d.offset, d.shift))):
                lo, hi = max(0, -start), min(o, s - start)
                hi = max(hi, lo)  # moved out entirely: an empty window
                dst.append(slice(lo, hi))
                src.append(slice(lo + start, hi + start))
                full = full and lo == 0 and hi == o
            if not full:
                out[i] = fill
            out[i][tuple(dst)] = v[tuple(src)]
        return out

    def _intensity(self, x: np.ndarray, draws: list[SampleDraw], rngs: list[np.random.Generator],
                   offset: np.ndarray | None, noise: float, fresh: bool) -> np.ndarray:
        """Scale, then add noise; ``fresh``: ``x`` is a copy made by this call, free to change in place."""
        if self.cfg.scale is None and noise <= 0:
            return x
        if not fresh or not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.result_type(x.dtype, np.float32))  # never write into the caller's batch
        if self.cfg.scale is not None:
            s = np.array([d.scale for d in draws], dtype=x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
            x *= s
            if offset is not None:
                # z = (v - m) / sd  ->  (s v - m) / sd = s z + (s - 1) m / sd
                x += (s - 1) * offset.astype(x.dtype)
        if noise > 0:
            # drawn after the transform, so switching noise on leaves the geometric draws as they were
            draw = np.empty(x.shape[1:], np.float32)
            for i, rng in enumerate(rngs):
                rng.standard_normal(dtype=np.float32, out=draw)
                draw *= noise
                x[i] += draw
        return x

    def _stats(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        return self.standardizer.stats.get(key) if self.standardizer is not None else None

    def _check_batch(self, batch: Mapping[str, Any]) -> tuple[int, ...]:
        images = batch["images"]
        targets = batch.get("targets")
        layout = (tuple((n, a.shape[2:]) for n, a in images.items()),
                  targets.shape[1:] if isinstance(targets, np.ndarray) else ())
        if layout != self._checked:
            self.check({n: a.shape[2:] for n, a in images.items()}, layout[1])
            self._checked = layout
        return tuple(next(iter(images.values())).shape[2:])


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    """Per-channel (C,) or global (scalar) statistics, broadcastable over (B, C, *spatial)."""
    values = np.asarray(values)
    return values.reshape((1, -1) + (1,) * (ndim - 2)) if values.ndim == 1 else values


def _sample_fill(stats: tuple[np.ndarray, np.ndarray] | None, ndim: int) -> float | np.ndarray:
    """What 0 in data units is after standardization, shaped to fill one sample: (C, *1) or a scalar."""
    if stats is None:
        return 0.0
    fill = -np.asarray(stats[0] / stats[1], dtype=np.float32)
    return fill.reshape((-1,) + (1,) * (ndim - 2)) if fill.ndim == 1 else float(fill)


def _dense(targets: np.ndarray, images: Mapping[str, np.ndarray]) -> bool:
    """Targets (B, C', *spatial) with the spatial size of an image move with the images."""
    return targets.ndim >= 3 and any(targets.shape[2:] == img.shape[2:] for img in images.values())
