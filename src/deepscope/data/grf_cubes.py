"""The ``grf_cubes`` source: Gaussian-random-field cubes simulated once into a ``cube_hdf5`` file, then read
by the ``cube_hdf5`` reader as RACCOON's real file would be (docs/grf-simulator.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepscope.data.arrays import ArraySet
from deepscope.data.cube_hdf5 import IMAGE_NAME, describe_cube_hdf5, load_cube_hdf5
from deepscope.data.sources import Description
from deepscope.errors import ConfigError

__all__ = ["describe_grf_cubes", "grf_options", "load_grf_cubes"]


def grf_options(cfg: Any) -> Any:
    """The simulator's options of a validated ``grf_cubes`` section.

    Raises:
        ConfigError: the simulator refuses them (the config's checks make this rare).
    """
    from deepscope.data.simulators.grf import GRFOptions

    try:
        return GRFOptions(**cfg.simulator_options())
    except ValueError as exc:
        raise ConfigError(f"data: the Gaussian-random-field simulator refuses these options ({exc})") from None


def load_grf_cubes(cfg: Any, data: Any = None) -> Any:
    """Write the file at ``cfg.path`` when it is missing (seeds [0, ``cfg.n_seeds``)), then read it as
    ``cube_hdf5``.

    Args:
        cfg: a validated ``grf_cubes`` data section.
        data: unused.

    Returns:
        What :func:`deepscope.data.cube_hdf5.load_cube_hdf5` returns for the file.

    Raises:
        DataError: ``path`` holds a file written with other settings, fewer seeds or by something
            else (delete it, or change ``data.path``), or cannot be written.
        ConfigError: the simulator refuses an option.
    """
    from deepscope.data.simulators.grf import ensure_grf_file

    ensure_grf_file(cfg.path, grf_options(cfg), cfg.n_seeds)
    return load_cube_hdf5(cfg)


def describe_grf_cubes(cfg: Any, task: str) -> Description | None:
    """From the file when it exists (and holds these settings), else from the settings alone: nothing
    is written before training, so ``deepscope validate`` stays quick.

    Raises:
        DataError: ``path`` holds another file (as loading would say).
        ConfigError: the simulator refuses an option.
    """
    from deepscope.data.simulators.grf import check_grf_file

    if check_grf_file(cfg.path, grf_options(cfg), cfg.n_seeds):
        return describe_cube_hdf5(cfg, task)
    n = cfg.size
    shape = (1, n, n) if cfg.slices is not None else (1, n, n, n)  # every slice of a cube is (N, N)
    labels = np.asarray(sorted(set(cfg.classes.values())), np.int64)
    return Description({name: ArraySet(images={IMAGE_NAME: np.zeros((len(labels), *shape), np.float32)},
                                       targets=labels.copy())
                        for name in cfg.split_seeds()})
