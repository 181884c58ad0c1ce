"""A run's trained net as ONNX, TorchScript or a ``torch.export`` ExportedProgram, with what it needs to be used.

The net is wrapped in :class:`FlatNet`: one tensor argument per input, in a fixed order (each image
``image_<name>`` (B, C, *S) channels first, then ``scalars`` (B, S), then ``tracks`` (B, T, F)), and a
tuple of named outputs. The batch axis is dynamic in every format, and so is the track axis T (padded
tracks are all-zero rows, which the track net leaves out). Image sizes are fixed at the trained size.

The file holds the raw net: standardization is *not* baked in. Every export carries a metadata JSON
(:func:`export_metadata`): the inputs with the means and standard deviations the run's standardizer
applies, the outputs, the task (class names, target names, how to turn outputs into predictions in data
units) and the deepscope version. ONNX files hold it in their ``metadata_props`` under ``deepscope``; every
format writes it beside the file too (``<stem>.json``).

Each file is checked before it replaces anything: it is loaded back and run on a batch of another size
(and another track count) than the one it was traced with, and must give the net's outputs.

ONNX is written by the TorchScript-based exporter (``dynamo=False``), opset 17 (20 for nets on volumes,
whose warps need GridSample on 5D inputs). The torch.export-based exporter reproduces neither the
registration nets (outputs off by pixels: their warp writes the sampling grid into a cached buffer, which
it captures as a constant) nor a dynamic track count (a shape guard of the track net it cannot prove).
ONNX files and ExportedPrograms are traced with autograd on, so the warp takes its buffer-free path.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope.errors import DeepscopeError

__all__ = ["FORMATS", "METADATA_KEY", "ExportError", "FlatNet", "export_metadata", "export_net", "read_metadata"]

FORMATS = ("pt", "onnx", "torchscript", "exported-program")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
METADATA_KEY = "deepscope"
METADATA_FORMAT = "deepscope-export"
METADATA_VERSION = 1
#: GridSample (the registration nets' warp) needs opset 16; 17 adds LayerNormalization. Nets on volumes get
#: ONNX_OPSET_3D: GridSample on 5D inputs came with opset 20 (onnxruntime >= 1.17)
ONNX_OPSET, ONNX_OPSET_3D = 17, 20
TRACE_BATCH, CHECK_BATCH, EXTRA_TRACKS = 2, 3, 2


class ExportError(DeepscopeError):
    """The net cannot be written in the chosen format, or the written file does not reproduce it."""


class FlatNet(nn.Module):
    """``net`` called with flat tensors: images (in ``image_names`` order), then scalars, then tracks.

    Args:
        net: a deepscope net (``forward(images=..., scalars=..., tracks=...)``).
        image_names: the net's image inputs, in argument order; each (B, C, *S).
        scalars: whether an argument ``scalars`` (B, S) follows the images.
        tracks: whether an argument ``tracks`` (B, T, F) comes last.
        outputs: (name, first channel, end channel) of each output along dim 1; with one output, the
            whole of the net's output.

    Returns (``forward``):
        A tuple with one tensor per output, in ``outputs`` order.
    """

    def __init__(self, net: nn.Module, image_names: list[str], scalars: bool, tracks: bool,
                 outputs: list[tuple[str, int, int]]) -> None:
        super().__init__()
        self.net, self.image_names = net, list(image_names)
        self.scalars, self.tracks, self.outputs = scalars, tracks, list(outputs)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.image_names)
        kwargs: dict[str, Any] = {"images": dict(zip(self.image_names, inputs[:n]))}
        if self.scalars:
            kwargs["scalars"] = inputs[n]
        if self.tracks:
            kwargs["tracks"] = inputs[-1]
        out = self.net(**kwargs)  # (B, K) or (B, C, *S)
        if len(self.outputs) == 1:
            return (out,)
        return tuple(out[:, start:end] for _, start, end in self.outputs)


# --- metadata ----------------------------------------------------------------------------------------------


def _stats(stats: tuple[np.ndarray, np.ndarray] | None, axis: int | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    mean, std = (np.asarray(a, dtype=np.float64) for a in stats)
    return {"mean": mean.tolist(), "std": std.tolist(), "axis": axis if mean.ndim else None}


def _outputs(loaded: Any) -> list[tuple[str, int, int]]:
    """(name, start, end) channel ranges of the net's outputs: the registration parts, else one output."""
    layout = getattr(loaded.task, "layout", None)
    if layout is not None:
        nd, names = layout.nd, layout.output_names
        bounds = [(0, 1), (1, 1 + nd), (1 + nd, 1 + 2 * nd)]
        return [(name, start, end) for name, (start, end) in zip(names, bounds)]
    name = {"logits": "logits", "softmax_logits": "logits", "probs": "probabilities"}.get(loaded.task.output, "values")
    return [(name, 0, 0)]


def _class_names(cfg: Any, spec: Any) -> list[str]:
    if spec.target_names:
        return [str(n) for n in spec.target_names]
    target = getattr(cfg.data, "target", None)  # sources with labelled classes (data.target.classes)
    classes = getattr(target, "classes", None)
    if classes and len(classes) == spec.output_size:
        return [str(c) for c in classes]
    return [str(i) for i in range(spec.output_size)]


def export_metadata(loaded: Any, fmt: str, checkpoint: Path | None = None) -> dict[str, Any]:
    """The JSON-ready description of an export of ``loaded`` (a run loaded by ``_load_run``).

    Returns:
        ``format``, ``version``, ``deepscope_version``, ``export_format``, ``source_run``, ``task_family``,
        ``architecture``, ``inputs`` (name, key, shape with ``"batch"``/``"tracks"`` for the dynamic axes,
        dtype, layout, ``standardize``: mean/std/axis or null), ``outputs`` (name, shape, dtype) and
        ``task`` (kind, output, target shape and names, class names, thresholds, target standardization,
        whether outputs are multiplied by a per-sample factor). docs/export.md describes every key.
    """
    from deepscope import __version__
    from deepscope.tasks import family_name

    spec, stats, task = loaded.spec, loaded.standardizer.stats, loaded.task
    inputs: list[dict[str, Any]] = []
    for name, image in spec.images.items():
        inputs.append({"name": f"image_{name}", "key": f"images/{name}",
                       "shape": ["batch", image.channels, *image.spatial], "dtype": "float32",
                       "layout": "channels_first", "standardize": _stats(stats.get(f"images/{name}"), 1)})
    if spec.scalars:
        inputs.append({"name": "scalars", "key": "scalars", "shape": ["batch", spec.scalars], "dtype": "float32",
                       "standardize": _stats(stats.get("scalars"), -1)})
    if spec.tracks:
        tracks = _stats(stats.get("tracks"), -1)
        if tracks is not None:
            tracks["padding_stays_zero"] = True
        inputs.append({"name": "tracks", "key": "tracks", "shape": ["batch", "tracks", spec.tracks[1]],
                       "dtype": "float32", "max_tracks_trained": spec.tracks[0], "standardize": tracks})
    outputs = []
    for name, start, end in _outputs(loaded):
        if end:  # a channel range of a dense output
            shape = ["batch", end - start, *spec.spatial]
        elif spec.dense:
            shape = ["batch", spec.out_channels, *spec.spatial]
        else:
            shape = ["batch", spec.output_size]
        outputs.append({"name": name, "shape": shape, "dtype": "float32"})
    kind = task.kind
    target_axis = 1 if spec.dense else -1
    description = {
        "kind": kind, "output": task.output, "target_shape": list(spec.target_shape),
        "target_names": list(spec.target_names),
        "class_names": _class_names(loaded.cfg, spec) if kind in ("binary", "multiclass") else None,
        "thresholds": task.thresholds if kind == "binary" else None,
        "target_standardize": _stats(task.target_stats, target_axis) if kind == "regression" else None,
        "multiply_output_with": bool(spec.multiply_output_with),
    }
    return {"format": METADATA_FORMAT, "version": METADATA_VERSION, "deepscope_version": __version__,
            "torch_version": torch.__version__.split("+")[0], "export_format": fmt,
            "source_run": str(loaded.run.path), "checkpoint": str(checkpoint) if checkpoint else None,
            "task_family": family_name(loaded.cfg), "architecture": loaded.cfg.model.architecture,
            "inputs": inputs, "outputs": outputs, "task": description}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an export: the ``deepscope`` entry of an ONNX file's ``metadata_props``, or the JSON
    file beside any export (``<stem>.json``).

    Raises:
        ExportError: neither is there, or it is not deepscope export metadata.
    """
    path = Path(path)
    if path.suffix == ".onnx" and path.is_file():
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if METADATA_KEY in props:
            return _checked(json.loads(props[METADATA_KEY]), f"{path} (metadata_props '{METADATA_KEY}')")
    sidecar = path if path.suffix == ".json" else path.with_suffix(".json")
    if not sidecar.is_file():
        raise ExportError(f"'{path}': no deepscope metadata (no '{METADATA_KEY}' entry in the file and no "
                          f"'{sidecar}'); write one with deepscope export RUN OUT --format ...")
    try:
        return _checked(json.loads(sidecar.read_text()), str(sidecar))
    except ValueError as exc:
        raise ExportError(f"'{sidecar}' is not JSON ({exc})") from None


def _checked(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != METADATA_FORMAT:
        raise ExportError(f"'{where}' is not deepscope export metadata (expected format: {METADATA_FORMAT})")
    return data


# --- writing -----------------------------------------------------------------------------------------------


def targets(path: Path, fmt: str) -> tuple[Path, Path]:
    """(the exported file, its metadata JSON) for ``path`` with or without the format's extension."""
    suffix = SUFFIXES[fmt]
    stem = path.with_suffix("") if path.suffix in (suffix, ".json") else path
    return stem.parent / f"{stem.name}{suffix}", stem.parent / f"{stem.name}.json"


def _example_inputs(spec: Any, batch: int, extra_tracks: int, seed: int) -> list[torch.Tensor]:
    """Random standardized-looking inputs: images, scalars, then tracks with the last ones padding."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(batch, image.channels, *image.spatial, generator=g) for image in spec.images.values()]
    if spec.scalars:
        xs.append(torch.randn(batch, spec.scalars, generator=g))
    if spec.tracks:
        n_tracks, features = spec.tracks
        tracks = torch.zeros(batch, n_tracks + extra_tracks, features)
        real = max(1, n_tracks // 2)
        tracks[:, :real] = torch.randn(batch, real, features, generator=g)
        xs.append(tracks)
    return xs


def _autograd_on(flat: FlatNet) -> Any:
    """Trace with autograd on and every weight requiring grad (``flat`` wraps a fresh copy of the net): the
    registration warp then builds its sampling grid anew instead of into a cached buffer (``out=``), which
    neither exporter can trace."""
    for p in flat.parameters():
        p.requires_grad_(True)
    return torch.enable_grad()


def _no_grad_weights(parameters: Any) -> None:
    """An export is for inference: its outputs should not require grad when called outside ``torch.no_grad``."""
    for p in parameters:
        p.requires_grad_(False)


def _write_onnx(flat: FlatNet, example: list[torch.Tensor], names: list[str], outputs: list[str], tmp: Path) -> None:
    axes: dict[str, dict[int, str]] = {n: ({0: "batch", 1: "tracks"} if n == "tracks" else {0: "batch"})
                                       for n in names}
    axes.update({n: {0: "batch"} for n in outputs})
    with _autograd_on(flat):
        torch.onnx.export(flat, tuple(example), str(tmp), input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=_opset(example), dynamo=False)


def _opset(example: list[torch.Tensor]) -> int:
    return ONNX_OPSET_3D if any(x.ndim == 5 for x in example) else ONNX_OPSET


def _add_onnx_metadata(tmp: Path, meta: str) -> None:
    import onnx

    model = onnx.load(str(tmp))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta
    onnx.save(model, str(tmp))


def _run_onnx(tmp: Path, names: list[str], inputs: list[Any]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
    return session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})


def _dynamic_shapes(names: list[str]) -> tuple[Any, ...]:
    batch = torch.export.Dim("batch")
    # the track count: AUTO, as a named Dim trips a guard of the track net's Linear on (B, T, F) that the
    # exporter cannot prove (T * min(4, 4 T) == 4 T)
    return (tuple({0: batch, 1: torch.export.Dim.AUTO} if n == "tracks" else {0: batch} for n in names),)


def _traced(flat: Any, example: list[Any], fmt: str, names: list[str]) -> Any:
    if fmt == "torchscript":
        _no_grad_weights(flat.parameters())
        with torch.no_grad():
            return torch.jit.trace(flat, tuple(example), check_trace=False)
    with _autograd_on(flat):
        program = torch.export.export(flat, tuple(example), dynamic_shapes=_dynamic_shapes(names))
    _no_grad_weights(program.parameters())
    return program


def _run_file(fmt: str, tmp: Path, names: list[str], inputs: list[Any]) -> list[np.ndarray]:
    if fmt == "onnx":
        return _run_onnx(tmp, names, inputs)
    if fmt == "torchscript":
        module = torch.jit.load(str(tmp), map_location="cpu")
    else:
        module = torch.export.load(str(tmp)).module()
    with torch.no_grad():
        return [o.numpy() for o in module(*inputs)]


def _verify(fmt: str, tmp: Path, flat: Any, spec: Any, names: list[str], out_names: list[str]) -> float:
    """The largest difference between the file's and the net's outputs on a batch of another size
    (and another track count) than the traced one.

    Raises:
        ExportError: the file cannot be run on it, or its outputs differ.
    """
    inputs = _example_inputs(spec, CHECK_BATCH, EXTRA_TRACKS, seed=1)
    with torch.no_grad():
        expected = [o.numpy() for o in flat(*inputs)]
    shapes = ", ".join(f"{n} {tuple(x.shape)}" for n, x in zip(names, inputs))
    try:
        got = _run_file(fmt, tmp, names, inputs)
    except Exception as exc:  # onnxruntime and torch raise many types
        raise ExportError(f"the {fmt} file was written but cannot be run on inputs of another batch size "
                          f"({shapes}): {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    worst = 0.0
    for name, e, g in zip(out_names, expected, got):
        if e.shape != g.shape:
            raise ExportError(f"the {fmt} file gives output '{name}' of shape {g.shape} for {shapes}; the net "
                              f"gives {e.shape}")
        diff = float(np.abs(e - g).max()) if e.size else 0.0
        if not diff <= 1e-4 * max(1.0, float(np.abs(e).max())):
            raise ExportError(f"the {fmt} file does not reproduce the net: output '{name}' differs by up to "
                              f"{diff:.3g} on {shapes}; the net cannot be exported as {fmt}")
        worst = max(worst, diff)
    return worst


def export_net(run_dir: str | Path, path: str | Path, fmt: str, checkpoint: str | Path | None = None,
               overwrite: bool = False) -> list[Path]:
    """Write a run's trained net as ``fmt`` (``onnx``, ``torchscript`` or ``exported-program``) with its
    metadata JSON beside it.

    Args:
        run_dir: the run folder.
        path: where to write, with or without the format's extension (``.onnx``, ``.pt``, ``.pt2``); the
            metadata goes to the same path with ``.json``.
        fmt: the format.
        checkpoint: the checkpoint to export (default: the run's best, or last when
            ``train.restore_best_weights`` is false).
        overwrite: replace files that exist; otherwise an existing file is refused and nothing is written.

    Returns:
        The files written: the export, then its metadata.

    Raises:
        ExportError: an unknown format, files that exist, a net the format cannot hold (the message names
            the operator), or a file that does not reproduce the net.
        CheckpointError: the run or its checkpoint cannot be read.
    """
    from deepscope.export import _atomic_save
    from deepscope.training.experiment import _load_run

    if fmt not in SUFFIXES:
        raise ExportError(f"format '{fmt}' is not one export_net writes; expected one of {', '.join(SUFFIXES)} "
                          "(pt: deepscope.export.save_model)")
    target, sidecar = targets(Path(path), fmt)
    loaded = _load_run(run_dir, checkpoint)
    existing = [str(p) for p in (target, sidecar) if p.exists()]
    if existing and not overwrite:
        raise ExportError(f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''}; choose another path "
                          "or pass overwrite=True (--force)")
    spec = loaded.spec
    restore_best = loaded.cfg.train.restore_best_weights
    chosen = Path(checkpoint) if checkpoint else loaded.run.weights_for_evaluation(restore_best)
    meta = export_metadata(loaded, fmt, chosen)
    names = [i["name"] for i in meta["inputs"]]
    parts = _outputs(loaded)
    out_names = [name for name, _, _ in parts]
    flat = FlatNet(loaded.net.eval(), list(spec.images), bool(spec.scalars), bool(spec.tracks), parts).eval()
    example = _example_inputs(spec, TRACE_BATCH, 0, seed=0)
    with torch.no_grad():
        flat(*example)  # a first call in eager mode fills the nets' per-shape caches with real tensors

    def write(tmp: Path) -> None:
        try:
            with warnings.catch_warnings():
                # tracing warns that shapes become constants and that the TorchScript exporters are deprecated;
                # the file is run on another batch size and compared with the net below instead
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                _write(fmt, flat, example, names, out_names, tmp)
        except ExportError:
            raise
        except Exception as exc:  # the exporters raise many types; their first line names the operator
            raise ExportError(f"run '{loaded.run.path}' ({meta['architecture']}) cannot be exported as {fmt}: "
                              f"{type(exc).__name__}: {_first_line(exc)}") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load
            diff = _verify(fmt, tmp, flat, spec, names, out_names)
        meta["verified"] = {"batch_size": CHECK_BATCH, "traced_batch_size": TRACE_BATCH, "max_abs_diff": diff}
        if fmt == "onnx":
            meta["onnx_opset"] = _opset(example)
            _add_onnx_metadata(tmp, json.dumps(meta))

    _atomic_save(write, target)
    _atomic_save(lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"), sidecar)
    return [target, sidecar]


def _write(fmt: str, flat: FlatNet, example: list[torch.Tensor], names: list[str], out_names: list[str],
           tmp: Path) -> None:
    if fmt == "onnx":
        _write_onnx(flat, example, names, out_names, tmp)
    elif fmt == "torchscript":
        torch.jit.save(_traced(flat, example, fmt, names), str(tmp))
    else:
        torch.export.save(_traced(flat, example, fmt, names), str(tmp))


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"
