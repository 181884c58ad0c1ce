"""``phases``: one config, several runs trained one after the other (the ``phased`` task family).

SuperNEMO's workflow is the example: (1) each view's model trained alone, (2) the combined model
built from those runs, their CNNs frozen, and its head trained, (3) everything fine-tuned at a lower
learning rate. Each phase is an ordinary run folder under ``<log.dir>/<name>/``; see docs/phases.md.

Kept torch-free: ``deepscope validate`` checks every phase's config without building anything.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from deepscope.config.common import StrictModel

__all__ = ["PhaseConfig"]

PHASE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._]*$"  # no '-': per-view runs are '<phase>-<view>'


class PhaseConfig(StrictModel):
    """One phase: what it trains, what it starts from, and how its config differs from the rest of the
    config (``train`` and ``model`` keys merged into those sections)."""

    name: str = Field(pattern=PHASE_NAME, max_length=60,
                      description="the phase's run folder, <log.dir>/<name>/<phase> (per view: <phase>-<view>)")
    each_view: bool = Field(False, description="one run per view of data.views, each the model on that view alone "
                                               "(multiview: its CNN and a head of its own)")
    start_from: str | None = Field(None, description="an earlier phase whose runs' weights this phase's model starts "
                                                     "from")
    load: list[str] | None = Field(
        None, description="the parts loaded from start_from (dotted module names, as model_summary.txt lists "
                          "them); default: each view's CNN (views.<view>) from an each_view phase, every part of "
                          "the model from any other phase")
    freeze: bool = Field(False, description="freeze the loaded parts (train only the rest: the head)")
    train: dict[str, Any] = Field(default_factory=dict,
                                  description="train keys of this phase, e.g. {epochs: 5, lr: 0.0001}")
    model: dict[str, Any] = Field(default_factory=dict, description="model keys of this phase")
