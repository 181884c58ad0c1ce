"""Run folders: ``<log.dir>/<name>/``, resume-by-name, config diffs, versions.

A run folder holds the resolved ``config.yaml``, ``checkpoints/`` (best and last), ``metrics.csv``,
``lr.csv`` (the lr of every optimizer step), ``tensorboard/``, ``figures/``, ``predictions/``,
``model_summary.txt``, ``input_spec.json``, ``standardization.npz`` and, with ``train.lr_finder``,
``lr_finder/``, and with ``log.weight_snapshots``, ``weights/``. Re-running the same name resumes
from ``last.ckpt`` when the config is the same but for ``train.epochs``; otherwise it refuses with a
diff unless a new version is asked for. One process at a time writes a run folder: :func:`claim_run`
holds its lock (:mod:`deepscope.training.lock`) from before the resume decision to the last write.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deepscope.config.io import dump_yaml, to_dict
from deepscope.errors import CheckpointError, ConfigError, RunInUse
from deepscope.training.processes import handed_down_run, starts_as_rank_zero
from deepscope.training.lock import RunLock

__all__ = ["RunDir", "claim_run", "config_diff", "open_run", "run_config", "write_config"]

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
            phases = sorted(p.name for p in run.path.iterdir() if (p / "config.yaml").is_file())
            if (run.path / "phases.json").is_file() and phases:
                raise CheckpointError(f"'{run.path}' holds the runs of a phased experiment; give one of them: "
                                      + ", ".join(str(run.path / p) for p in phases))
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

    def same(x: Any, y: Any) -> bool:
        # a key that a later version added with an empty default (phases: [], task: null) is no change
        if x is missing or y is missing:
            return (y if x is missing else x) in (None, [], {})
        return x == y

    return [(k, a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
            if not same(a.get(k, missing), b.get(k, missing))]


def _show(value: Any) -> str:
    return "(absent)" if type(value) is object else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@contextmanager
def claim_run(cfg: Any, new_version: bool = False) -> Iterator[tuple[RunDir, bool]]:
    """The run folder this process trains in and whether it resumes, written by it alone until the block ends.

    The writer — a lone process, or the one that will be global rank 0 of a DDP job
    (:func:`~deepscope.training.distributed.starts_as_rank_zero`) — takes the folder's lock before
    :func:`open_run` looks at the folder, so the resume decision and every write happen under it.
    The other processes of the job take the folder rank 0 handed down to them, or find it by name.

    Raises:
        RunInUse: another process holds the folder's lock (the message names it).
        ConfigError, CheckpointError: as :func:`open_run`.
    """
    handed = handed_down_run()
    if handed is not None:
        yield RunDir(handed[0]), handed[1]
    elif not starts_as_rank_zero(cfg.train):
        yield open_run(cfg, new_version)
    else:
        try:
            lock = _locked_folder(cfg, new_version)
        except OSError as exc:
            raise ConfigError(f"log.dir '{cfg.log.dir}': cannot write the run's lock file there "
                              f"({exc.strerror or exc}); choose a folder you can write to") from None
        try:
            yield open_run(cfg, folder=lock.folder)
        finally:
            lock.release()


def _locked_folder(cfg: Any, new_version: bool) -> RunLock:
    """The taken lock of the folder this run writes: ``<name>``, or with ``new_version`` the first
    version that neither exists nor is being made by another ``--new-version`` start."""
    base = Path(cfg.log.dir) / cfg.name
    if not new_version:
        lock = RunLock(base)
        lock.acquire()
        return lock
    n = 1
    while True:
        folder = base if n == 1 else Path(cfg.log.dir) / f"{cfg.name}-{n}"
        n += 1
        if folder.exists():
            continue
        lock = RunLock(folder)
        try:
            lock.acquire()
        except RunInUse:
            continue
        if not folder.exists():
            return lock
        lock.release()  # made and finished between the look and the lock


def open_run(cfg: Any, new_version: bool = False, folder: str | Path | None = None) -> tuple[RunDir, bool]:
    """Find the run folder for ``cfg`` and decide whether training resumes; writes nothing.

    Call :func:`write_config` once the data and model are known to be good. :func:`claim_run` calls
    this under the folder's lock.

    Args:
        cfg: the experiment config.
        new_version: when ``<log.dir>/<name>`` exists, take the first ``<name>-N`` that does not.
        folder: the folder, already chosen (``new_version`` is then ignored).

    Returns:
        The run folder and whether training resumes from its ``last.ckpt``.

    Raises:
        ConfigError: the folder holds a run with a different config (the message lists the diff).
        CheckpointError: the folder exists but is not a run folder.
    """
    base = Path(folder) if folder is not None else Path(cfg.log.dir) / cfg.name
    if folder is None and new_version and base.exists():
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
                "to start a new run folder beside it, or choose another name"
            )
    elif run.path.exists() and any(run.path.iterdir()):
        raise CheckpointError(f"'{run.path}' exists and is not a run folder (no config.yaml); "
                              "choose another name or log.dir")
    return run, run.last.exists()


def run_config(cfg: Any, run: RunDir) -> dict[str, Any]:
    """The resolved config as stored in ``run``; its name is the folder's (``x-2`` for versions). A ``tune``
    section is left out: it describes a search over runs, not this run (``deepscope tune``)."""
    resolved = to_dict(cfg)
    resolved.pop("tune", None)
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
