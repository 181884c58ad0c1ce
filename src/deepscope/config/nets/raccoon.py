"""``raccoon``: RACCOON's three-layer classifier of cosmological matter slices."""

from __future__ import annotations

from typing import Literal

from deepscope.config.nets.seeds import FixedNetParams

__all__ = ["RaccoonParams"]


class RaccoonParams(FixedNetParams):
    """3 x [conv k4 s4 p0 (no bias) + BatchNorm + act]: lp, 4lp, 8lp maps; Linear(., lp) + act + dropout,
    Linear(lp, outputs). A 256² input gives 64², 16², 4² maps."""

    architecture: Literal["raccoon"] = "raccoon"
