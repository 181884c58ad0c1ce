"""``raccoon``: RACCOON (SEED-FACTS §2): 3 x [conv k4 s4 p0, no bias + BN + act], Linear(., lp) + act + dropout,
Linear(lp, outputs)."""

from __future__ import annotations

from deepscope.config.nets.raccoon import RaccoonParams
from deepscope.data.spec import InputSpec
from deepscope.models.nets.seeds import FixedNet

__all__ = ["build_raccoon"]


def build_raccoon(spec: InputSpec, cfg: RaccoonParams) -> FixedNet:
    """RACCOON for the data in ``spec``: lp, 4lp, 8lp maps (256² -> 64², 16², 4²)."""
    lp = cfg.layer_param
    return FixedNet("raccoon", spec, cfg, widths=[lp, 4 * lp, 8 * lp], conv=(4, 4, 0), hidden=[lp], dense_norm=False)
