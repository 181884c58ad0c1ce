"""What the benchmarks share: the time spent inside the model, medians and spreads, the machine's load.

The scripts run as ``python bench/<name>.py``, so this module is imported from their folder.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ModelTime", "load", "med", "spread"]


class ModelTime:
    """Clock time inside the network's forward and ``Tensor.backward``, per side (``plain`` / ``deepscope``).

    The compute of the model itself wanders by a few per cent from epoch to epoch on a shared machine
    (frequency, caches), which is more than the overhead being measured. The time *outside* the
    model's forward and backward (loader, loss, optimizer, hooks, logging) does not wander with it,
    so its difference between the two sides is the overhead, free of that noise. Both sides go
    through the same two wrappers (about a microsecond a call). Install for CPU timing only: on a
    GPU the wrappers would time kernel launches, and they break ``torch.compile``'s graph.

    Args:
        clock: the clock to read (called at every wrapped call, so a script may switch it).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.side = "deepscope"
        self.total = {"plain": 0.0, "deepscope": 0.0}
        self._originals: list[tuple[Any, str, Any]] = []

    def install(self, owners: Iterable[tuple[Any, str]]) -> None:
        """Wrap each ``owner.name`` (e.g. ``(ConvNet, "forward")``, ``(torch.Tensor, "backward")``)."""
        for owner, name in owners:
            original = getattr(owner, name)
            self._originals.append((owner, name, original))
            setattr(owner, name, self._timed(original))

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()

    def _timed(self, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[self.side] += self.clock() - start
        return wrapper


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> float:
    """Interquartile range over median: how much a side's epoch times wandered."""
    if len(values) < 4:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / med(values)


def load() -> str:
    """The load averages (1, 5, 15 min), as a string."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"
