"""``save_model`` / ``load_model``: a trained net outside its run folder (atlalign's ``save_model``).

Together (``separate=False``): one file ``<path>.pt`` holding the architecture (the run's ``model``
section and input spec) and the weights. Apart (``separate=True``): ``<path>.yaml`` with the
architecture and ``<path>.weights.pt`` with the weights alone (a plain ``state_dict``). As in atlalign,
neither keeps the optimizer state or the loss: resume training from the run folder's checkpoints.

:func:`export_model` writes either that (``format="pt"``) or the net as ONNX, TorchScript or a
``torch.export`` ExportedProgram with its preprocessing metadata (:mod:`deepscope.export_formats`,
docs/export.md).

:func:`load_model` rebuilds the net from either form (eval mode, on the CPU). Its output is the net's raw
output: for registration models (B, 1 + nd [+ nd], *S), the registered image and the fields.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from deepscope.errors import CheckpointError, ConfigError

__all__ = ["export_model", "load_model", "save_model"]

FORMAT = "deepscope-model"
VERSION = 1


def _atomic_save(write: Any, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name keeps the extension: torch.export.save and load want files ending in .pt2
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; an export is a file like any other
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _targets(path: Path, separate: bool) -> list[Path]:
    stem = path.with_suffix("") if path.suffix in (".pt", ".yaml") else path
    if separate:
        return [stem.with_suffix(".yaml"), stem.parent / f"{stem.name}.weights.pt"]
    return [stem.with_suffix(".pt")]


def save_model(run_dir: str | Path, path: str | Path, separate: bool = False, checkpoint: str | Path | None = None,
               overwrite: bool = False) -> list[Path]:
    """Write a run's trained net (best checkpoint, unless ``checkpoint`` names one) to ``path``.

    Args:
        run_dir: the run folder.
        path: where to write, without extension (``.pt`` / ``.yaml`` are replaced).
        separate: architecture and weights in two files (``.yaml`` + ``.weights.pt``) instead of one ``.pt``.
        overwrite: replace files that exist; otherwise an existing file is refused and kept.

    Returns:
        The files written.

    Raises:
        CheckpointError: the run or its checkpoint cannot be read, or a file exists and ``overwrite`` is false.
    """
    import torch

    from deepscope import __version__
    from deepscope.tasks import family_name
    from deepscope.training.experiment import _load_run

    loaded = _load_run(run_dir, checkpoint)
    targets = _targets(Path(path), separate)
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise CheckpointError(f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''}; choose another path "
                              "or pass overwrite=True (--force)")
    architecture = {"format": FORMAT, "version": VERSION, "deepscope": __version__,
                    "source_run": str(loaded.run.path), "task": family_name(loaded.cfg),
                    "model": loaded.cfg.model.model_dump(mode="json"), "input_spec": loaded.spec.to_json()}
    state = {k: v.detach().cpu() for k, v in loaded.net.state_dict().items()}
    if separate:
        spec_file, weights_file = targets
        architecture["weights"] = weights_file.name
        _atomic_save(lambda tmp: torch.save(state, tmp), weights_file)
        _atomic_save(lambda tmp: tmp.write_text(yaml.safe_dump(architecture, sort_keys=False)), spec_file)
    else:
        _atomic_save(lambda tmp: torch.save({**architecture, "state_dict": state}, tmp), targets[0])
    return targets


def export_model(run_dir: str | Path, path: str | Path, format: str = "pt", separate: bool = False,
                 checkpoint: str | Path | None = None, overwrite: bool = False) -> list[Path]:
    """Write a run's trained net in ``format``: ``pt`` (:func:`save_model`), ``onnx``, ``torchscript`` or
    ``exported-program`` (:func:`deepscope.export_formats.export_net`: the file and its metadata JSON).

    Raises:
        ExportError: an unknown format, ``separate`` with a format other than ``pt``, a net the format
            cannot hold, or (formats other than ``pt``) a file that exists while ``overwrite`` is false.
        CheckpointError: the run or its checkpoint cannot be read, or (``pt``) a file exists and ``overwrite``
            is false.
    """
    from deepscope.export_formats import FORMATS, ExportError, export_net

    if format not in FORMATS:
        raise ExportError(f"format '{format}' is not one deepscope export writes; expected one of "
                          f"{', '.join(FORMATS)}")
    if format == "pt":
        return save_model(run_dir, path, separate=separate, checkpoint=checkpoint, overwrite=overwrite)
    if separate:
        raise ExportError(f"separate (--separate) splits a pt export into architecture and weights; the {format} "
                          "format writes one file (and its metadata .json)")
    return export_net(run_dir, path, format, checkpoint=checkpoint, overwrite=overwrite)


def _build(architecture: dict[str, Any], where: Path) -> Any:
    from pydantic import TypeAdapter, ValidationError

    from deepscope.config.model import ModelConfig
    from deepscope.data.spec import InputSpec
    from deepscope.models.build import build_model

    if architecture.get("format") != FORMAT:
        raise CheckpointError(f"'{where}' is not a deepscope model file (no format: {FORMAT}); write one with "
                              "deepscope export RUN PATH")
    try:
        model_cfg = TypeAdapter(ModelConfig).validate_python(architecture["model"])
        import json

        spec = InputSpec.from_dict(json.loads(architecture["input_spec"]))
    except (ValidationError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"'{where}': the architecture cannot be read ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0]})") from None
    try:
        return build_model(model_cfg, spec)
    except ConfigError as exc:
        raise CheckpointError(f"'{where}': the model cannot be rebuilt: {exc}") from None


def load_model(path: str | Path) -> Any:
    """The net saved by :func:`save_model`, weights loaded, in eval mode on the CPU.

    Args:
        path: the ``.pt`` file (together) or the ``.yaml`` file (apart; its weights file beside it).

    Raises:
        CheckpointError: a missing, foreign or damaged file, or weights that do not fit the architecture.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"'{path}' not found; expected a .pt (architecture and weights) or .yaml file written "
                              "by deepscope export")
    try:
        if path.suffix == ".yaml":
            architecture = yaml.safe_load(path.read_text())
            if not isinstance(architecture, dict):
                raise ValueError("not a mapping")
            weights_file = path.parent / str(architecture.get("weights", ""))
            if not weights_file.is_file():
                raise CheckpointError(f"'{path}': its weights file '{weights_file}' is missing")
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
        else:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(blob, dict) and "state_dict" not in blob and blob.get("format") is None:
                raise CheckpointError(f"'{path}' holds weights without an architecture; load the .yaml file written "
                                      "beside it (deepscope export --separate)")
            architecture, state = blob, blob.get("state_dict") if isinstance(blob, dict) else None
    except CheckpointError:
        raise
    except Exception as exc:  # torch and yaml raise many types for a damaged file
        raise CheckpointError(f"'{path}' cannot be read ({type(exc).__name__}: {exc})") from None
    net = _build(architecture, path)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"'{path}': the weights do not fit the architecture "
                              f"({str(exc).splitlines()[0]})") from None
    return net.eval()
