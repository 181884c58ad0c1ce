"""Toy simulators that produce data in the DeepCalo layout, for tests, demos and benchmarks.

:mod:`~deepscope.data.simulators.calorimeter` simulates the ATLAS electromagnetic calorimeter's
electron energy-regression use case (the one DeepCalo was built for).
"""

from deepscope.data.simulators.calorimeter import (
    CalorimeterOptions,
    SimulatedSet,
    accordion_calibration,
    baseline_resolutions,
    plot_event_display,
    robust_resolution,
    simulate_electrons,
    simulate_splits,
    unpad_tracks,
    write_atlas_hdf5,
)

__all__ = [
    "CalorimeterOptions",
    "SimulatedSet",
    "accordion_calibration",
    "baseline_resolutions",
    "plot_event_display",
    "robust_resolution",
    "simulate_electrons",
    "simulate_splits",
    "unpad_tracks",
    "write_atlas_hdf5",
]
