"""The ``track_detector`` source: simulated tracker events written once as a ROOT file
(:mod:`deepscope.data.simulators.tracker`) and read back by the ``root`` source, as real SuperNEMO
output would be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepscope.errors import ConfigError, did_you_mean

__all__ = ["describe_track_detector", "load_track_detector", "tracker_options"]


def tracker_options(cfg: Any) -> Any:
    """The simulator's options from ``data.options``.

    Raises:
        ConfigError: an unknown option or a value the simulator refuses, under ``data.options``.
    """
    import dataclasses

    from deepscope.data.simulators.tracker import TrackerOptions

    names = [f.name for f in dataclasses.fields(TrackerOptions)]
    for key in cfg.options:
        if key not in names:
            raise ConfigError(f"data.options: unknown option '{key}'{did_you_mean(key, names)} "
                              f"(available: {', '.join(names)})")
    try:
        return TrackerOptions(**cfg.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data.options: {exc}") from None


def load_track_detector(cfg: Any, data: Any = None) -> Any:
    """Simulate the events into ``data.path`` (when the file is missing), then read it as the ``root``
    source does.

    Raises:
        ConfigError: a bad simulator option.
        DataError: ``data.path`` holds events simulated with other settings, or cannot be written.
    """
    from deepscope.data.root import load_root
    from deepscope.data.simulators.tracker import ensure_tracker_file

    opts = tracker_options(cfg)
    path = Path(cfg.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_tracker_file(path, cfg.n_events, cfg.simulation_seed, opts, cfg.tree, key="data.path")
    return load_root(cfg)


def describe_track_detector(cfg: Any, task: str) -> Any:
    """The file's description once it exists (checked against the settings); before, stand-ins with the
    views' shapes and the configured labels, without simulating anything.

    Raises:
        ConfigError, DataError: as :func:`load_track_detector`, for bad options or a file of other events.
    """
    import numpy as np

    from deepscope.data.arrays import ArraySet
    from deepscope.data.root import describe_root
    from deepscope.data.simulators.tracker import check_tracker_file
    from deepscope.data.sources import Description

    opts = tracker_options(cfg)
    if check_tracker_file(Path(cfg.path), cfg.n_events, cfg.simulation_seed, opts, cfg.tree, key="data.path"):
        return describe_root(cfg, task)
    images = {name: np.zeros((2, 1, *view.shape), np.float32) for name, view in cfg.views.items()}
    if cfg.target.branch is not None:
        return Description(ArraySet(images=images, targets=np.array([0, len(cfg.target.classes) - 1], np.int64)),
                           cfg.n_events)
    return None  # multi-hot: the loader names its labels
