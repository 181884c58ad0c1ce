"""The ``data`` section of the Gaussian-random-field cube simulator (``source: grf_cubes``).

A ``cube_hdf5`` file that deepscope writes itself: one pair of cubes (GR and Newtonian) per simulation
seed, from the same white noise, with slightly different power spectra. Every ``cube_hdf5`` key
applies (``path`` is where the file is written); the others set up the simulation. See
docs/grf-simulator.md; the physics is in :mod:`deepscope.data.simulators.grf`.

Kept torch-, numpy- and h5py-free so that validating a config stays fast.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from deepscope.config.common import AbsolutePath, fail
from deepscope.config.cube_hdf5 import CubeHDF5Data

__all__ = ["GRFCubesData", "MAX_SIZE", "MIN_SIZE"]

MIN_SIZE, MAX_SIZE = 4, 512


class GRFCubesData(CubeHDF5Data):
    """Gaussian-random-field cubes written once at ``path`` in the ``cube_hdf5`` layout and read from it.

    The file holds seeds [0, n_seeds), where ``n_seeds`` is the end of the last range of ``seeds``;
    class label ℓ has the spectral slope ``slope + ℓ * slope_difference``.
    """

    source: Literal["grf_cubes"]  # type: ignore[assignment]
    path: AbsolutePath = Field(description="the HDF5 file the cubes are written to (once, when it is missing) and "
                                           "read from; a relative path is taken from the current folder")
    size: int = Field(64, ge=MIN_SIZE, le=MAX_SIZE,
                      description="cube side N: every cube is (N, N, N) float32, a slice (N, N)")
    slope: float = Field(2.0, allow_inf_nan=False,
                         description="spectral slope n of class 0 (newton): P(k) ∝ k^(-n), k in units of the box's "
                                     "fundamental frequency")
    slope_difference: float = Field(
        0.1, allow_inf_nan=False,
        description="class label ℓ has slope slope + ℓ * slope_difference (gr, label 1: more large-scale power); "
                    "0 makes the classes identical (a null test)")
    simulation_seed: int = Field(0, ge=0, description="seed of the white noise (with each simulation seed); the "
                                                      "run's seed does not change the cubes")

    @field_validator("classes")
    @classmethod
    def _distinct_labels(cls, value: dict[str, int]) -> dict[str, int]:
        labels = list(value.values())
        for label in set(labels):
            patterns = [p for p, lab in value.items() if lab == label]
            if len(patterns) > 1:
                raise fail("classes", f"the patterns {', '.join(repr(p) for p in patterns)} share label {label}; "
                                      "the simulator gives each label its own slope, so they would hold identical "
                                      "cubes: give every pattern its own label")
        return value

    @property
    def n_seeds(self) -> int:
        """Seeds the file holds: [0, the end of the last range of ``seeds``)."""
        return max(stop for _, stop in (b for b in self.seeds.values() if b is not None))

    def simulator_options(self) -> dict[str, Any]:
        """Keyword options of ``deepscope.data.simulators.grf.GRFOptions``."""
        return {"size": self.size, "slope": self.slope, "slope_difference": self.slope_difference,
                "simulation_seed": self.simulation_seed, "classes": dict(self.classes)}
