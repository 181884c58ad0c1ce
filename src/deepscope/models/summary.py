"""A Keras-style text summary: every layer with its output shape and parameter count."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope.data.spec import InputSpec
from deepscope.models.build import _example_inputs

__all__ = ["count_parameters", "summarize"]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def _shape(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return "(B, " + ", ".join(map(str, out.shape[1:])) + ")" if out.ndim > 1 else "(B,)"
    return "-"


def summarize(model: nn.Module, spec: InputSpec) -> str:
    """The summary table, from one forward pass on zeros (eval mode, no gradients)."""
    rows: list[tuple[str, str, str, int]] = []
    shapes: dict[str, str] = {}
    hooks = []
    for name, module in model.named_modules():
        if not name:
            continue
        hooks.append(module.register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, _shape(o))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(**_example_inputs(spec, batch=2))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for name, module in model.named_modules():
        if not name or name not in shapes:
            continue
        own = sum(p.numel() for p in module.parameters(recurse=False))
        params = sum(p.numel() for p in module.parameters())
        is_leaf = not any(True for _ in module.children())
        if is_leaf or "." not in name:
            rows.append((name, type(module).__name__, shapes[name], params if not is_leaf else own))
    w = [max(len(r[i]) for r in rows + [("Layer", "Type", "Output shape", 0)]) for i in range(3)]
    lines = [f"{'Layer':<{w[0]}}  {'Type':<{w[1]}}  {'Output shape':<{w[2]}}  {'Params':>10}",
             "-" * (w[0] + w[1] + w[2] + 16)]
    lines += [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d:>10,}" for a, b, c, d in rows]
    total, trainable = count_parameters(model)
    inputs = ", ".join(f"{k}: ({v.channels}, {', '.join(map(str, v.spatial))})" for k, v in spec.images.items())
    extra = [f"scalars: ({spec.scalars},)"] if spec.scalars else []
    extra += [f"tracks: {spec.tracks}"] if spec.tracks else []
    lines += ["-" * (w[0] + w[1] + w[2] + 16),
              f"Inputs: {', '.join(filter(None, [inputs, *extra]))}",
              f"Output: {_shape(out)}",
              f"Total params: {total:,}   Trainable: {trainable:,}   Non-trainable: {total - trainable:,}"]
    return "\n".join(lines) + "\n"
