"""A block diagram of a model: one box per input and submodel, arrows for the data flow.

The diagram is read off the model itself, not its config: one forward pass on zeros (eval mode,
batch of 2) records every top-level submodule's output shape, and the autograd graph of that pass
tells which inputs and submodules each one reads. So whatever subset of DeepCalo's combined model
exists (``gate_net``, ``upsampling``, ``cnn``, ``network_in_network``, ``scalar_net``,
``track_net``, ``FiLM_gen``, ``top``) is drawn with its real connections — ``connect_to`` edges
and the FiLM modulation of the CNN included — and so is any other net made of named submodules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepscope.data.spec import InputSpec
from deepscope.models.build import _example_inputs

__all__ = ["architecture_figure", "trace_architecture"]

# DeepCalo's submodels in the order data flows through them (ties in the layout are broken by it)
SUBMODELS = ("gate_net", "upsampling", "scalar_net", "track_net", "FiLM_gen", "cnn", "network_in_network", "top")
_COLORS = {
    "image": "#d6e6f5", "gate": "#e6ddf2", "vector": "#dcefd6", "gate_net": "#cdbfe6", "upsampling": "#b9d4ee",
    "cnn": "#8fbde0", "network_in_network": "#a9cbe8", "scalar_net": "#b5dcaa", "track_net": "#b5dcaa",
    "FiLM_gen": "#f9c98f", "top": "#cfcde6", "output": "#e6e6e6",
}
_FILM = "#d9822b"


@dataclass
class Block:
    """One box of the diagram.

    Attributes:
        key: node id: ``input:<name>``, a submodule name, or ``output``.
        title: the bold first line (the DeepCalo submodel or input name).
        lines: further lines (type, parameters, output shape).
        sources: keys of the blocks whose outputs this block reads.
    """

    key: str
    title: str
    lines: list[str]
    sources: set[str] = field(default_factory=set)
    color: str = "#f0f0f0"


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def _shape(t: torch.Tensor) -> str:
    return "(B" + "".join(f", {s}" for s in t.shape[1:]) + ")"


def _sources(t: torch.Tensor, owner: dict[Any, str]) -> set[str]:
    """Owners of the nearest recorded autograd nodes upstream of ``t`` (its own node included)."""
    found: set[str] = set()
    seen: set[Any] = set()
    stack = [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if fn in owner:
            found.add(owner[fn])
            continue
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return found


def _run_with_hooks(net: nn.Module, inputs: dict[str, Any]) -> tuple[list[tuple[str, Any, Any]], Any]:
    """Forward once; return (top-level submodule name, inputs, output) per call, in completion order.

    A top-level container that is never called itself (an ``nn.ModuleDict`` of per-image
    modules) is represented by the calls of its children.
    """
    calls: list[tuple[str, Any, Any, bool]] = []
    hooks = []
    for name, child in net.named_children():
        hooks.append(child.register_forward_hook(
            lambda m, a, k, o, name=name: calls.append((name, (a, k), o, True)), with_kwargs=True))
        for grandchild in child.children():
            hooks.append(grandchild.register_forward_hook(
                lambda m, a, k, o, name=name: calls.append((name, (a, k), o, False)), with_kwargs=True))
    was_training = net.training
    net.eval()
    try:
        out = net(**inputs)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    called = {name for name, _, _, whole in calls if whole}
    return [(name, i, o) for name, i, o, whole in calls if whole or name not in called], out


def trace_architecture(net: nn.Module, spec: InputSpec) -> list[Block]:
    """The blocks of ``net`` and what each reads, from one forward pass on zeros.

    Returns:
        Input blocks (one per image in ``spec``, ``gate_<name>`` images beside their image, then
        scalars and tracks), one block per top-level submodule that ran, and ``output``.
    """
    with torch.inference_mode(False), torch.enable_grad():  # the edges are read off the autograd graph
        return _trace(net, spec)


def _trace(net: nn.Module, spec: InputSpec) -> list[Block]:
    raw = _example_inputs(spec, batch=2)
    inputs: dict[str, Any] = {}
    owner: dict[Any, str] = {}
    blocks: dict[str, Block] = {}

    def add_input(key: str, title: str, kind: str, t: torch.Tensor, color: str) -> torch.Tensor:
        x = t.requires_grad_(True).clone()  # a non-leaf, so in-place ops in the net stay legal
        owner[x.grad_fn] = key
        blocks[key] = Block(key, title, [kind, _shape(x)], color=color)
        return x

    images = raw.get("images", {})
    order = sorted(images, key=lambda n: (n.removeprefix("gate_"), n.startswith("gate_")))
    if images:
        inputs["images"] = {}
        for name in order:
            gate = name.startswith("gate_") and name.removeprefix("gate_") in images
            inputs["images"][name] = add_input(f"input:{name}", name, "gate image" if gate else "image",
                                               images[name], _COLORS["gate" if gate else "image"])
    for key in ("scalars", "tracks"):
        if key in raw:
            inputs[key] = add_input(f"input:{key}", key, "input", raw[key], _COLORS["vector"])

    calls, out = _run_with_hooks(net, inputs)
    shapes: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"in": [], "out": []})
    modules = dict(net.named_children())
    for name, args, output in calls:
        block = blocks.setdefault(name, _module_block(name, modules[name]))
        tensors = list(_tensors(output))
        for t in tensors:
            if t.grad_fn is not None:
                block.sources |= _sources(t, owner) - {name}
        first_in = next(_tensors(args), None)
        shapes[name]["in"].append(_shape(first_in) if first_in is not None else "-")
        shapes[name]["out"].append(", ".join(_shape(t) for t in tensors[:2]) + (", …" if len(tensors) > 2 else ""))
        for t in tensors:  # recorded after tracing, so a pass-through output is credited to this block
            if t.grad_fn is not None:
                owner[t.grad_fn] = name
    for name, found in shapes.items():
        for side in ("in", "out"):
            unique = list(dict.fromkeys(found[side]))
            shown = "; ".join(unique[:2]) + ("; …" if len(unique) > 2 else "")
            repeat = f" ×{len(found[side])}" if len(found[side]) > 1 and len(unique) == 1 else ""
            blocks[name].lines.append(f"{side} {shown}{repeat}")
    final = list(_tensors(out))
    lines = [", ".join(_shape(t) for t in final)]
    if spec.multiply_output_with:
        lines.append("× multiply_output_with")
    blocks["output"] = Block("output", "output", lines, color=_COLORS["output"])
    for t in final:
        blocks["output"].sources |= _sources(t, owner)
    return list(blocks.values())


def _module_block(name: str, module: nn.Module) -> Block:
    total = sum(p.numel() for p in module.parameters())
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    params = f"{total:,} params"
    if frozen:
        params += " (frozen)" if frozen == total else f" ({frozen:,} frozen)"
    return Block(name, name, [f"{type(module).__name__} · {params}"], color=_COLORS.get(name, "#eeeeee"))


# --- layout and drawing ----------------------------------------------------------------------------

_BOX_W, _BOX_H, _GAP_X, _ROW_H = 2.5, 1.05, 0.35, 1.7


def _layout(blocks: list[Block]) -> dict[str, tuple[float, int]]:
    """(x, row) per block: rows by longest path from the inputs, x near the sources' mean."""
    by_key = {b.key: b for b in blocks}
    depth: dict[str, int] = {}

    def row(key: str, trail: frozenset[str] = frozenset()) -> int:
        if key not in depth:
            block = by_key[key]
            preds = [s for s in block.sources if s in by_key and s not in trail]
            base = 0 if key.startswith("input:") else 1
            depth[key] = max([base] + [row(s, trail | {key}) + 1 for s in preds])
        return depth[key]

    for b in blocks:
        row(b.key)
    rank = {name: i for i, name in enumerate(SUBMODELS)}
    index = {b.key: i for i, b in enumerate(blocks)}
    pos: dict[str, tuple[float, int]] = {}
    step = _BOX_W + _GAP_X
    for r in sorted(set(depth.values())):
        members = [b.key for b in blocks if depth[b.key] == r]
        wanted = {}
        for key in members:
            xs = [pos[s][0] for s in by_key[key].sources if s in pos]
            wanted[key] = sum(xs) / len(xs) if xs else 0.0
        if r == 0:
            members.sort(key=lambda k: index[k])
            wanted = {k: (i - (len(members) - 1) / 2) * step for i, k in enumerate(members)}
        else:
            members.sort(key=lambda k: (wanted[k], rank.get(k, len(rank)), index[k]))
        xs = []
        for key in members:
            xs.append(max(wanted[key], xs[-1] + step) if xs else wanted[key])
        shift = sum(wanted[k] for k in members) / len(members) - sum(xs) / len(xs)
        for key, x in zip(members, xs):
            pos[key] = (x + shift, r)
    return pos


def _crossings(start: tuple[float, float], end: tuple[float, float], rad: float,
               boxes: list[tuple[float, float]]) -> int:
    """How many points of matplotlib's ``arc3`` curve from ``start`` to ``end`` fall inside ``boxes``."""
    (x1, y1), (x2, y2) = start, end
    cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)  # the Bezier control point
    hits = 0
    for i in range(1, 40):
        t = i / 40
        x = (1 - t) ** 2 * x1 + 2 * t * (1 - t) * cx + t**2 * x2
        y = (1 - t) ** 2 * y1 + 2 * t * (1 - t) * cy + t**2 * y2
        hits += sum(abs(x - bx) < _BOX_W / 2 + 0.2 and abs(y - by) < _BOX_H / 2 + 0.1 for bx, by in boxes)
    return hits


def architecture_figure(net: nn.Module, spec: InputSpec, path: Path) -> Path:
    """Draw the block diagram of ``net`` for inputs shaped as ``spec`` and save it as an image.

    Each box shows the DeepCalo submodel (or input) name, its type, parameter count and output
    shape; arrows follow the data, FiLM modulation dashed. Works for any subset of the combined
    model (a plain cnn + top, scalars only, the full model).

    Args:
        net: the model (its train/eval mode is restored afterwards).
        spec: the input shapes the model was built for.
        path: where to write the figure (format from the suffix, e.g. ``.png``).

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    blocks = trace_architecture(net, spec)
    pos = _layout(blocks)
    n_rows = max(r for _, r in pos.values()) + 1
    xs = [x for x, _ in pos.values()]
    left, right = min(xs) - _BOX_W / 2 - 0.4, max(xs) + _BOX_W / 2 + 0.4
    top, bottom = _BOX_H / 2 + 0.55, -(n_rows - 1) * _ROW_H - _BOX_H / 2 - 0.25
    scale = 0.72  # inches per layout unit
    fig = Figure(figsize=(max(4.0, (right - left) * scale), (top - bottom) * scale))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.axis("off")

    def center(key: str) -> tuple[float, float]:
        x, r = pos[key]
        return x, -r * _ROW_H

    for b in blocks:
        x, y = center(b.key)
        ax.add_patch(FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                                    boxstyle="round,pad=0.02,rounding_size=0.12", facecolor=b.color,
                                    edgecolor="#555555", linewidth=0.9, zorder=2))
        ax.text(x, y + _BOX_H * 0.29, b.title, ha="center", va="center", fontsize=9.5, fontweight="bold", zorder=3)
        ax.text(x, y - _BOX_H * 0.13, "\n".join(b.lines), ha="center", va="center", fontsize=7.5,
                linespacing=1.3, zorder=3)
    for b in blocks:
        for src in sorted(b.sources):
            if src not in pos:
                continue
            (x1, y1), (x2, y2) = center(src), center(b.key)
            film = src == "FiLM_gen"
            start, end = (x1, y1 - _BOX_H / 2), (x2, y2 + _BOX_H / 2)
            others = [center(k) for k in pos if k not in (src, b.key)]
            rad = min((0.0, *(s * r / 20 for r in range(1, 13) for s in (1, -1))), key=lambda r: (_crossings(start, end, r, others), abs(r)))
            ax.annotate("", xy=end, xytext=start, zorder=1,
                        arrowprops=dict(arrowstyle="-|>", color=_FILM if film else "#333333",
                                        lw=1.4 if film else 1.0, linestyle="--" if film else "-",
                                        shrinkA=1, shrinkB=1, connectionstyle=f"arc3,rad={rad}"))
            if film:
                ax.text((x1 + x2) / 2, (y1 + y2) / 2, "FiLM γ, β", color=_FILM, fontsize=7.5, ha="center",
                        va="center", zorder=3, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    ax.text(left + 0.15, top - 0.25, f"{type(net).__name__}: {total:,} parameters ({trainable:,} trainable)",
            fontsize=9, ha="left", va="center", color="#333333")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path
