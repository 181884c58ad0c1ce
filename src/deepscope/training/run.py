"""Run folders: ``<log.dir>/<name>/``, resume-by-name, config diffs, versions.

A run folder holds the resolved ``config.yaml``, ``checkpoints/`` (best and last), ``metrics.csv``,
``lr.csv`` (the lr of every optimizer step), ``tensorboard/``, ``figures/``, ``predictions/``,
``model_summary.txt``, ``input_spec.json``, ``standardization.npz`` and, with ``train.lr_finder``,
``lr_finder/``, and with ``log.weight_snapshots``, ``weights/``. Re-running the same name resumes
from ``last.ckpt`` when the config is the same but for ``train.epochs``; otherwise it refuses with a
diff unless a new version is asked for.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deepscope.config.io import dump_yaml, to_dict
from deepscope.errors import CheckpointError, ConfigError

__all__ = ["RunDir", "config_diff", "open_run", "run_config", "write_config"]

RESUMABLE_CHANGES = {"train.epochs"}


@dataclass
class RunDir:
    """Paths inside one run folder."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def lr_log(self) -> Path:
        return self.path / "lr.csv"

    @property
    def lr_finder(self) -> Path:
        return self.path / "lr_finder"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions"

    @property
    def weight_snapshots(self) -> Path:
        return self.path / "weights"

    @property
    def standardization(self) -> Path:
        return self.path / "standardization.npz"

    @property
    def input_spec(self) -> Path:
        return self.path / "input_spec.json"

    @property
    def summary(self) -> Path:
        return self.path / "model_summary.txt"

    def weights_for_evaluation(self, prefer_best: bool = True) -> Path:
        """best.ckpt (or last.ckpt when there is no best, or when ``prefer_best`` is false)."""
        for path in ([self.best, self.last] if prefer_best else [self.last, self.best]):
            if path.exists():
                return path
        raise CheckpointError(f"run folder '{self.path}' has no checkpoint (checkpoints/best.ckpt or last.ckpt)")

    @classmethod
    def existing(cls, path: str | Path) -> "RunDir":
        """An existing run folder; raises :class:`CheckpointError` if it is not one."""
        run = cls(Path(path))
        if not run.path.is_dir():
            raise CheckpointError(f"run folder '{run.path}' not found")
        if not run.config.exists():
            raise CheckpointError(f"'{run.path}' is not a run folder (no config.yaml)")
        return run


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: data}


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs."""
    a, b = _flatten(old), _flatten(new)
    missing = object()
    return [(k, a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing)]


def _show(value: Any) -> str:
    return "(absent)" if type(value) is object else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def open_run(cfg: Any, new_version: bool = False) -> tuple[RunDir, bool]:
    """Find the run folder for ``cfg`` and decide whether training resumes; writes nothing.

    Call :func:`write_config` once the data and model are known to be good.

    Returns:
        The run folder and whether training resumes from its ``last.ckpt``.

    Raises:
        ConfigError: the folder holds a run with a different config (the message lists the diff).
        CheckpointError: the folder exists but is not a run folder.
    """
    base = Path(cfg.log.dir) / cfg.name
    if new_version and base.exists():
        n = 2
        while (Path(cfg.log.dir) / f"{cfg.name}-{n}").exists():
            n += 1
        base = Path(cfg.log.dir) / f"{cfg.name}-{n}"
    run = RunDir(base)
    if run.config.exists():
        try:
            old = yaml.safe_load(run.config.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CheckpointError(f"'{run.config}' is corrupt ({exc}); move the folder away or pick another name") from None
        diff = [d for d in config_diff(old, run_config(cfg, run)) if d[0] not in RESUMABLE_CHANGES]
        if diff:
            lines = [f"  {k}: {_show(a)} -> {_show(b)}" for k, a, b in diff]
            raise ConfigError(
                f"run '{run.path}' exists with a different config:\n" + "\n".join(lines) +
                "\nonly train.epochs may change when resuming; pass --new-version (Python: new_version=True) "
                f"to start a new run folder beside it, or choose another name"
            )
    elif run.path.exists() and any(run.path.iterdir()):
        raise CheckpointError(f"'{run.path}' exists and is not a run folder (no config.yaml); "
                              "choose another name or log.dir")
    return run, run.last.exists()


def run_config(cfg: Any, run: RunDir) -> dict[str, Any]:
    """The resolved config as stored in ``run``; its name is the folder's (``x-2`` for versions)."""
    resolved = to_dict(cfg)
    resolved["name"] = run.path.name
    return resolved


def write_config(cfg: Any, run: RunDir) -> None:
    """Create the folder (if needed) and write the resolved ``config.yaml`` atomically.

    A new folder is filled beside its final place and renamed into it, so another process looking
    at the same name (another rank started by ``srun``) sees no folder or a run folder, never an
    empty one it would take for someone else's.
    """
    from deepscope.training.callbacks import atomic_write_text

    text = dump_yaml(run_config(cfg, run))
    if not run.path.exists():
        run.path.parent.mkdir(parents=True, exist_ok=True)
        staging = run.path.parent / f".{run.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir()  # not tempfile.mkdtemp: its folders are private (0700)
        (staging / run.config.name).write_text(text, encoding="utf-8")
        try:
            staging.rename(run.path)
            return
        except OSError:  # created meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(run.config, text)
