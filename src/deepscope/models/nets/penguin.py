"""``penguin``: PENGUIN (SEED-FACTS §2): 6 x [conv k4 s2 p1, no bias + BN + act], Linear(., 10lp) + BN1d + act
+ dropout, Linear(10lp, lp) + BN1d + act + dropout, Linear(lp, outputs)."""

from __future__ import annotations

from deepscope.config.nets.penguin import PenguinParams
from deepscope.data.spec import InputSpec
from deepscope.models.nets.seeds import FixedNet

__all__ = ["build_penguin"]


def build_penguin(spec: InputSpec, cfg: PenguinParams) -> FixedNet:
    """PENGUIN for the data in ``spec``: lp, 2lp, 4lp, 6lp, 8lp, 10lp maps (256² -> 128², ..., 4²)."""
    lp = cfg.layer_param
    return FixedNet("penguin", spec, cfg, widths=[lp, 2 * lp, 4 * lp, 6 * lp, 8 * lp, 10 * lp], conv=(4, 2, 1),
                    hidden=[10 * lp, lp], dense_norm=True)
