"""The cheap baseline every registration is judged against: the identity field (leave the moving image as
it is). Its metrics on the same samples go into ``final_metrics.json`` as ``identity_<metric>``."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepscope.registration.task import RegistrationOutputs, mean_scores

__all__ = ["identity_baselines", "identity_output"]

CHUNK = 16


def identity_output(moving: np.ndarray, outputs: RegistrationOutputs) -> np.ndarray:
    """The output of a net that predicts no displacement: the moving image and zero fields."""
    layout = outputs.layout
    zeros = np.zeros((len(moving), layout.output_channels - 1, *moving.shape[2:]), np.float32)
    return np.concatenate([np.asarray(moving, np.float32), zeros], axis=1)


def identity_baselines(data_cfg: Any, outputs: RegistrationOutputs, stores: dict[str, Any],
                       indices: dict[str, np.ndarray], split: str,
                       result: dict[str, np.ndarray]) -> tuple[dict[str, float], list[str]]:
    """Every metric of the identity field on the samples of ``result``, and a line comparing the model.

    Returns:
        ``identity_<metric>`` values, and log lines.
    """
    if not isinstance(outputs, RegistrationOutputs) or not outputs.metrics:
        return {}, []
    store, index = stores[split], np.asarray(result["index"])
    chunks = []
    for start in range(0, len(index), CHUNK):
        batch = store.read(index[start:start + CHUNK])
        chunks.append(outputs.sample_scores(identity_output(batch["images"]["moving"], outputs), batch["targets"]))
    values = mean_scores(np.concatenate(chunks), outputs.metrics, result.get("sample_weights"))
    lines = []
    if "vector_distance" in values:
        model = outputs.score(result, result["targets"], result.get("sample_weights"))["vector_distance"]
        base = values["vector_distance"]
        change = 100.0 * (model - base) / base if base > 0 else float("nan")
        lines.append(f"mean vector distance {model:.3f} px; identity field {base:.3f} px ({change:+.1f}%)")
    return {f"identity_{name}": v for name, v in values.items()}, lines
