"""Applying a trained net to a split or a file: batched inference, predictions in data units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from deepscope.data.dataset import BatchDataset, SampleStore
from deepscope.data.standardize import Standardizer
from deepscope.errors import CheckpointError, DataError
from deepscope.training.system import model_inputs
from deepscope.training.task import Task

__all__ = ["forward_whole", "load_net_weights", "predict_store", "save_predictions", "score"]


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch


@torch.inference_mode()
def predict_store(net: nn.Module, task: Task, store: SampleStore, indices: np.ndarray,
                  standardizer: Standardizer | None, batch_size: int = 256,
                  device: str | torch.device = "cpu",
                  loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """Predictions for ``indices`` of ``store``.

    Returns:
        ``index``, ``predictions`` (classes or values in data units), ``probabilities`` for
        classification, ``targets`` / ``sample_weights`` when the data has them, and the per-sample
        ``loss`` when a loss function is given and the data has targets.
    """
    device = torch.device(device)
    was_training = net.training
    net.eval().to(device)
    dataset = BatchDataset(store, indices, standardizer)
    outs, targets, weights, index, losses = [], [], [], [], []
    for start in range(0, len(indices), batch_size):
        batch = _to(dataset[np.arange(start, min(start + batch_size, len(indices)))], device)
        out = task.shape_output(forward_whole(net, task.spec, model_inputs(batch)), batch.get("multiply_output_with"))
        outs.append(out.float().cpu().numpy())
        index.append(batch["index"].cpu().numpy())
        if "targets" in batch:
            targets.append(batch["targets"].cpu().numpy())
            if loss is not None:
                losses.append(loss(out, batch["targets"]).float().cpu().numpy())
        if "sample_weights" in batch:
            weights.append(batch["sample_weights"].cpu().numpy())
    net.train(was_training)
    result = task.predictions(np.concatenate(outs)) if outs else {"predictions": np.zeros((0,))}
    result["index"] = np.concatenate(index) if index else np.zeros((0,), np.int64)
    if targets:
        result["targets"] = task.targets_in_data_units(np.concatenate(targets))
    if weights:
        result["sample_weights"] = np.concatenate(weights)
    if losses:
        result["loss"] = np.concatenate(losses)
    return result


def forward_whole(net: nn.Module, spec: Any, inputs: dict[str, Any], overlap: float = 0.25) -> torch.Tensor:
    """The net's output for ``inputs``; images larger than the ones it trained on (``spec``: training
    crops) go through a sliding window of the training size with Gaussian overlap blending, so a net
    trained on crops predicts whole images and cubes.

    Raises:
        DataError: larger images for a net whose output is not an image (nothing to tile).
    """
    images = inputs.get("images", {})
    if not images or all(tuple(v.shape[2:]) == tuple(spec.images[k].spatial) for k, v in images.items()):
        return net(**inputs)
    sizes = {k: tuple(v.shape[2:]) for k, v in images.items()}
    if not spec.dense:
        raise DataError(f"images of size {sizes} do not match the {tuple(spec.spatial)} the model was trained on, "
                        "and its output is not an image: give inputs of the trained size")
    from deepscope.evaluation.sliding import sliding_window_predict

    names = list(images)
    channels = [int(images[k].shape[1]) for k in names]
    stacked = torch.cat([images[k] for k in names], dim=1)

    def predictor(window: torch.Tensor) -> torch.Tensor:
        parts = dict(zip(names, torch.split(window, channels, dim=1)))
        return net(**{**inputs, "images": parts})

    return sliding_window_predict(predictor, stacked, roi_size=spec.spatial, overlap=overlap)


def score(task: Task, result: dict[str, np.ndarray]) -> dict[str, float]:
    """The loss (when computed) and every configured metric of a prediction result."""
    weights = result.get("sample_weights")
    values = {"loss": float(np.average(result["loss"], weights=weights))} if "loss" in result else {}
    values.update(task.score(result, result["targets"], weights))
    return values


def load_net_weights(net: nn.Module, checkpoint: Path) -> dict[str, Any]:
    """Load the ``net.*`` weights of a Lightning checkpoint (``weights_only=True``) into ``net``.

    Raises:
        CheckpointError: missing or corrupt file, or weights that do not fit the model.
    """
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint '{checkpoint}' not found") from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint '{checkpoint}' cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"checkpoint '{checkpoint}' does not fit the model built from its config ({first})") from None
    return ckpt


def save_predictions(result: dict[str, np.ndarray], path: Path) -> None:
    """Write predictions as ``.npz`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **result)
    tmp.replace(path)


