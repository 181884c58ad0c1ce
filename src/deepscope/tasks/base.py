"""The task-family interface and how a config picks its family.

Everything here is importable without torch (the config checks call it); a family imports torch and
Lightning inside the methods that build tensors or modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from deepscope.components import TASKS
from deepscope.errors import ConfigError

__all__ = ["TaskFamily", "family_for", "family_name"]


class TaskFamily:
    """What one kind of experiment owns. Subclasses override what differs; the defaults are none.

    A family is stateless: every method takes the validated config (and what the data gave).
    """

    name: ClassVar[str] = ""
    #: among several families that claim a config, the ones of the highest priority win: a family that
    #: wraps another (``phased`` runs supervised phases; ``adversarial`` trains with a reconstruction
    #: loss that ``supervised`` would claim too) claims above it
    priority: ClassVar[int] = 0
    #: whether the family's models have named outputs, each with its own loss (``train.loss`` as a mapping
    #: output -> loss, ``train.loss_weights``): registration's registered image, field and inverse field
    output_losses: ClassVar[bool] = False
    #: the ``task`` of the metrics the family scores (``METRICS`` meta), when it has its own kind of metric;
    #: None: the loss's (regression or classification metrics)
    metrics_task: ClassVar[str | None] = None

    @classmethod
    def claims(cls, cfg: Any) -> bool:
        """Whether a config without ``task:`` belongs to this family (read from its loss, model, data)."""
        return False

    # --- the whole experiment ----------------------------------------------------------------------
    def run(self, experiment: Any, new_version: bool = False) -> Any:
        """Train ``experiment`` (an :class:`~deepscope.training.experiment.Experiment`): one run folder.

        A family made of several runs (``phased``) overrides this and trains each as an experiment of
        its own.
        """
        return experiment.train_run(new_version)

    # --- before anything is built ------------------------------------------------------------------
    def check_config(self, cfg: Any) -> list[str]:
        """Problems of the config alone, one line each starting with the dotted key (torch-free)."""
        return []

    def default_metrics(self, cfg: Any) -> list[str]:
        """Metrics logged when ``train.metrics`` is empty."""
        return []

    def check_data(self, cfg: Any, spec: Any) -> None:
        """Problems of the config against the data's :class:`~deepscope.data.spec.InputSpec`.

        Raises:
            ConfigError: a key that does not fit the data.
        """

    # --- training ----------------------------------------------------------------------------------
    def outputs(self, cfg: Any, spec: Any, standardizer: Any) -> Any:
        """What the net's raw output means: shaping, predictions in data units, scoring."""
        raise NotImplementedError(f"task family '{self.name}' does not define its outputs")

    def loss(self, cfg: Any, outputs: Any = None) -> Any:
        """The per-sample training loss ``(pred, target) -> (B,)``; ``outputs`` (from :meth:`outputs`) for a
        family whose loss reads the data's layout (registration's named outputs)."""
        raise NotImplementedError(f"task family '{self.name}' does not define its loss")

    def system(self, cfg: Any, net: Any, outputs: Any, loss: Any, **options: Any) -> Any:
        """The LightningModule that trains ``net``."""
        raise NotImplementedError(f"task family '{self.name}' does not define its training system")

    # --- after training ----------------------------------------------------------------------------
    def figures(self, cfg: Any, outputs: Any, result: dict[str, Any], figures: Path, split: str,
                inputs: dict[str, Any] | None = None, read: Any = None) -> None:
        """The figures of one evaluated split (``result`` from ``predict_store``).

        Args:
            inputs: the raw images of the first few samples of ``result`` (image outputs), or None.
            read: positions in ``result`` -> the raw images of those samples, for figures that pick
                their own samples (a gallery of misclassified events); None when unavailable.
        """


def family_name(cfg: Any) -> str:
    """The family a config trains: ``task:`` when given, else the one family that claims it.

    Raises:
        ConfigError: no family, or several, claim a config without ``task:``.
    """
    explicit = getattr(cfg, "task", None)
    if explicit:
        return TASKS.canonical(explicit)
    families = [(entry.name, entry.load()) for entry in TASKS.entries()]
    claiming = [(name, family.priority) for name, family in families if family.claims(cfg)]
    top = max((priority for _, priority in claiming), default=0)
    claiming = [name for name, priority in claiming if priority == top]
    if len(claiming) == 1:
        return claiming[0]
    if not claiming:
        raise ConfigError(f"task: no task family fits this config (loss '{cfg.train.loss_label}'); "
                          f"name one with task: ({', '.join(TASKS.names())})")
    raise ConfigError(f"task: the config fits several task families ({', '.join(claiming)}); "
                      "say which with task:")


def family_for(cfg: Any) -> TaskFamily:
    """The family instance of a config (see :func:`family_name`)."""
    return TASKS.get(family_name(cfg))()
