"""What a registration net's output means: its named outputs, the loss per output, and the metrics.

A registration net returns one tensor (B, 1 + nd [+ nd], *S): the registered (warped moving) image,
then the forward field, then, with ``compute_inv``, the inverse field. A registration source's targets
are (B, C, *S) whose channels are named by the data (``InputSpec.target_names``): ``registered`` (the
reference image the warped moving image should match), ``dx``, ``dy`` (``dz``) the true forward
field, optionally ``inv_dx`` ... the true inverse field, and ``reference_labels`` / ``moving_labels``
(structure labels, for Dice). :class:`Layout` splits both into named parts; :class:`RegistrationLoss`
and :class:`RegistrationOutputs` (the family's stand-in for the supervised ``Task``) read them so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepscope.components import LOSSES, METRICS
from deepscope.config.common import Component
from deepscope.data.spec import InputSpec
from deepscope.tasks.registration import CHEAP_METRICS

__all__ = ["AXES", "Layout", "RegistrationLoss", "RegistrationOutputs", "field_names"]

AXES = ("x", "y", "z")
LABELS = ("reference_labels", "moving_labels")


def field_names(nd: int, prefix: str = "") -> tuple[str, ...]:
    """The target channel names of a field: ``dx``, ``dy`` (``dz``), x first; ``inv_dx``, ... with a prefix."""
    return tuple(f"{prefix}d{axis}" for axis in AXES[:nd])


@dataclass(frozen=True)
class Layout:
    """Where each named part lies in the net's output and in the targets.

    Attributes:
        nd: spatial dimensions (2 or 3).
        inverse: the net outputs an inverse field (``compute_inv``).
        target_names: the targets' channel names.
    """

    nd: int
    inverse: bool
    target_names: tuple[str, ...]

    @classmethod
    def of(cls, spec: InputSpec, inverse: bool) -> "Layout":
        return cls(spec.spatial_dims, inverse, tuple(spec.target_names))

    @property
    def output_channels(self) -> int:
        return 1 + self.nd * (2 if self.inverse else 1)

    @property
    def output_names(self) -> tuple[str, ...]:
        return ("registered", "field", "inverse") if self.inverse else ("registered", "field")

    def outputs(self, out: Any) -> dict[str, Any]:
        """The net's output (B, C, *S) as {registered, field[, inverse]} (views, no copies)."""
        nd = self.nd
        parts = {"registered": out[:, :1], "field": out[:, 1:1 + nd]}
        if self.inverse:
            parts["inverse"] = out[:, 1 + nd:1 + 2 * nd]
        return parts

    def targets(self, target: Any) -> dict[str, Any]:
        """The targets (B, C, *S) as {registered, field[, inverse][, reference_labels, moving_labels]}."""
        names = list(self.target_names)
        parts = {}
        if "registered" in names:
            parts["registered"] = target[:, names.index("registered"):names.index("registered") + 1]
        for key, prefix in (("field", ""), ("inverse", "inv_")):
            wanted = field_names(self.nd, prefix)
            if all(n in names for n in wanted):
                idx = [names.index(n) for n in wanted]
                parts[key] = target[:, idx[0]:idx[-1] + 1] if idx == list(range(idx[0], idx[0] + self.nd)) \
                    else target[:, idx]
        for key in LABELS:
            if key in names:
                parts[key] = target[:, names.index(key):names.index(key) + 1]
        return parts


def _load(spec: Component) -> Callable[..., torch.Tensor]:
    fn = LOSSES.get(spec.class_name)
    return (lambda pred, target: fn(pred, target, **spec.config)) if spec.config else fn


@dataclass
class RegistrationLoss:
    """The per-sample training loss: Σ over outputs of weight × Σ terms weight × loss(pred part, target part).

    ``losses``: output -> [(loss component, weight)], as ``train.output_losses``; ``weights``: output ->
    weight (``train.loss_weights``). A loss that reads no target (``grad``, ``jacobian``) is given the
    prediction twice.
    """

    layout: Layout
    losses: dict[str, list[tuple[Component, float]]]
    weights: dict[str, float]
    _built: dict[str, list[tuple[Callable[..., torch.Tensor], float, bool]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._built = {output: [(_load(spec), w, LOSSES.entry(spec.class_name).meta.get("uses_target", True))
                                for spec, w in terms] for output, terms in self.losses.items()}

    def parts(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each output's weighted loss per sample (B,), before the output weights."""
        out, want = self.layout.outputs(pred), self.layout.targets(target)
        values = {}
        for output, terms in self._built.items():
            total = None
            for fn, weight, uses_target in terms:
                truth = want.get(output) if uses_target else out[output]
                term = weight * fn(out[output], truth)
                total = term if total is None else total + term
            values[output] = total
        return values

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = None
        for output, value in self.parts(pred, target).items():
            term = self.weights.get(output, 1.0) * value
            total = term if total is None else total + term
        return total


@dataclass
class RegistrationOutputs:
    """The registration family's :class:`~deepscope.training.task.Task`: the net's output is already the
    prediction (registered image and fields in pixels); scoring is the registration metrics per sample,
    averaged over a split (NaN samples, e.g. Dice without structures, left out).

    Attributes:
        spec: the data's spec.
        layout: the output and target layout.
        metrics: registration metric names (``METRICS`` entries of task ``registration``).
    """

    spec: InputSpec
    layout: Layout
    metrics: list[str] = field(default_factory=list)
    #: the metrics scored on every training batch (``train_<metric>``): the cheap ones; the others (percentiles,
    #: SSIM, mutual information, label overlaps) only on the validation split
    train_metrics: list[str] = field(default_factory=list)
    kind: str = "regression"
    output: str = "values"
    thresholds: float = 0.5
    target_stats: None = None

    @property
    def is_classification(self) -> bool:
        return False

    def __post_init__(self) -> None:
        if not self.train_metrics:
            self.train_metrics = [m for m in self.metrics if m in CHEAP_METRICS]

    def shape_output(self, out: torch.Tensor, multiply: torch.Tensor | None = None) -> torch.Tensor:
        if out.shape[1] != self.layout.output_channels:
            raise ValueError(f"the registration net gave {out.shape[1]} channels; expected "
                             f"{self.layout.output_channels} ({', '.join(self.layout.output_names)})")
        return out

    def predictions(self, shaped: np.ndarray) -> dict[str, np.ndarray]:
        return {"predictions": shaped}

    def targets_in_data_units(self, targets: np.ndarray) -> np.ndarray:
        return targets

    def sample_scores_torch(self, shaped: torch.Tensor, targets: torch.Tensor,
                            names: list[str] | None = None) -> torch.Tensor:
        """Each metric (or each of ``names``) of each sample, (B, M), on the outputs' device."""
        names = self.metrics if names is None else names
        out, want = self.layout.outputs(shaped.float()), self.layout.targets(targets.float())
        out["_cache"] = {}  # the metrics of this batch share their intermediate results
        if not names:
            return shaped.new_zeros((len(shaped), 0))
        with torch.no_grad():
            return torch.stack([METRICS.entry(name).load()(out, want).float() for name in names], dim=1)

    def sample_scores(self, shaped: np.ndarray, targets: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        return self.sample_scores_torch(torch.from_numpy(np.asarray(shaped)),
                                        torch.from_numpy(np.asarray(targets)), names).double().numpy()

    def score(self, preds: dict[str, np.ndarray], targets: np.ndarray, weights: np.ndarray | None,
              chunk: int = 16) -> dict[str, float]:
        """Every metric on a whole split: per-sample values in chunks, then their (weighted) mean."""
        pred = np.asarray(preds["predictions"])
        if not len(pred):
            return {name: float("nan") for name in self.metrics}
        scores = np.concatenate([self.sample_scores(pred[i:i + chunk], targets[i:i + chunk])
                                 for i in range(0, len(pred), chunk)])
        return mean_scores(scores, self.metrics, weights)


def mean_scores(scores: np.ndarray, names: list[str], weights: np.ndarray | None = None) -> dict[str, float]:
    """The (weighted) mean of per-sample scores (N, M) per metric, NaN samples left out."""
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64)
    values = {}
    for j, name in enumerate(names):
        keep = ~np.isnan(scores[:, j])
        values[name] = float(np.average(scores[keep, j], weights=w[keep])) if keep.any() else float("nan")
    return values
