"""The ``data`` section of the ``track_detector`` source: simulated SuperNEMO-like tracker events,
written once as a ROOT file and read back by the ``root`` source (every ``root`` key works).

Kept torch-, numpy- and uproot-free so that validating a config stays fast.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from deepscope.config.common import AbsolutePath
from deepscope.config.root import RootData, RootTarget, RootView

__all__ = ["TrackDetectorData", "SUPERNEMO_VIEWS"]

# SuperNEMO's three views of the tracker (SEED-FACTS §3): layer x column, z x column, z x layer
SUPERNEMO_VIEWS: dict[str, Any] = {
    "top": {"rows": "tracker_layer", "cols": "tracker_column", "shape": [9, 113]},
    "side": {"rows": {"branch": "tracker_z", "range": [-1500.0, 1500.0]}, "cols": "tracker_column", "shape": [30, 113]},
    "front": {"rows": {"branch": "tracker_z", "range": [-1500.0, 1500.0]}, "cols": "tracker_layer", "shape": [30, 9]},
}


class TrackDetectorData(RootData):
    """Simulated tracker events (1-4 tracks from a foil vertex through 9 drift-cell layers x 113 columns
    on two sides, calorimeter blocks behind; docs/root-data.md), written to ``path`` as a ROOT file the
    first time and read back as any ROOT file is."""

    source: Literal["track_detector"]  # type: ignore[assignment]
    path: AbsolutePath = Field(description="the ROOT file the events are written to when it is missing, then read "
                                           "from; a file written with other settings is refused, never overwritten")
    n_events: int = Field(20000, ge=10, le=5_000_000, description="events to simulate")
    simulation_seed: int = Field(0, ge=0, description="seed of the simulation; event i depends only on it and i")
    options: dict[str, Any] = Field(
        default_factory=dict, description="detector and event settings of the simulator (track multiplicity "
                                          "probabilities, resolution, inefficiency, noise, ...; see "
                                          "docs/root-data.md); unknown names get a did-you-mean")
    views: dict[str, RootView] = Field(
        default_factory=lambda: dict(SUPERNEMO_VIEWS),
        description="image name -> its view; default: SuperNEMO's top (9 x 113), side (30 x 113) and front "
                    "(30 x 9) views of every hit")
    target: RootTarget = Field(
        default_factory=lambda: {"branch": "n_tracks", "classes": [1, 2, 3, 4]},
        description="default: the number of tracks, 1-4, as classes 0-3; or e.g. {multi_hot: calo_column, size: "
                    "22} for the calorimeter columns hit")
