"""Keep Lightning's banners, hints and expected warnings out of the user's terminal."""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_lightning"]


def quiet_lightning() -> None:
    """Keep Lightning's banners and hints out of the user's terminal (``--debug`` shows them)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    # a run cut short by train.max_steps can end before its first validation
    warnings.filterwarnings("ignore", message=".*could not find the monitored key in the returned metrics.*")
    # under DDP the epoch values are computed from every process's outputs and logged alike everywhere
    # (SupervisedSystem._epoch_end); Lightning's advice to sync them does not apply
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
