"""``penguin``: PENGUIN's six-layer classifier of cosmological matter slices."""

from __future__ import annotations

from typing import Literal

from deepscope.config.nets.seeds import FixedNetParams

__all__ = ["PenguinParams"]


class PenguinParams(FixedNetParams):
    """6 x [conv k4 s2 p1 (no bias) + BatchNorm + act]: lp, 2lp, 4lp, 6lp, 8lp, 10lp maps; Linear(., 10lp) +
    BatchNorm1d + act + dropout, Linear(10lp, lp) + BatchNorm1d + act + dropout, Linear(lp, outputs).
    A 256² input gives 128² ... 4² maps."""

    architecture: Literal["penguin"] = "penguin"
