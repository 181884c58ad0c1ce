"""The ``phased`` family: one config, trained as a sequence of ordinary runs (``phases:``).

SuperNEMO's transfer-learning workflow in one config (docs/phases.md)::

    phases:
      - {name: views, each_view: true}                        # a run per view, the model on that view
      - {name: head, start_from: views, freeze: true}         # the combined model, the views' CNNs frozen
      - {name: finetune, start_from: head, train: {lr: 1.0e-4, epochs: 4}}   # everything, a lower lr

Each phase's run is ``<log.dir>/<name>/<phase>`` (per view ``<phase>-<view>``), made from the rest of
the config with the phase's ``train``/``model`` keys merged in and, when it starts from an earlier
phase, ``model.pretrained`` entries naming that phase's runs (so its ``config.yaml`` records which
runs it was built from). A phase that finished is not trained again; an interrupted one resumes.
``<log.dir>/<name>/phases.json`` lists the runs and their final metrics.

The runs themselves are trained by their own family (``supervised`` for the multiview models): this
family only plans them, so it wraps any other.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from deepscope.errors import ConfigError, did_you_mean
from deepscope.tasks.base import TaskFamily

__all__ = ["PhasedFamily", "phase_config", "phase_runs", "PHASES_FILE"]

log = logging.getLogger("deepscope")

PHASES_FILE = "phases.json"


def _views(cfg: Any) -> list[str]:
    views = getattr(cfg.data, "views", None)
    return list(views) if views else []


def phase_runs(cfg: Any, index: int) -> list[tuple[str, str | None]]:
    """(run name, view or None) of every run of phase ``index``."""
    phase = cfg.phases[index]
    if phase.each_view:
        return [(f"{phase.name}-{view}", view) for view in _views(cfg)]
    return [(phase.name, None)]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _phase_dict(cfg: Any, root: Path, index: int, view: str | None) -> dict[str, Any]:
    """The phase's config as a dict, without what it loads from earlier phases."""
    from deepscope.config.io import to_dict

    phase = cfg.phases[index]
    raw = copy.deepcopy(to_dict(cfg))
    raw.pop("phases", None)
    raw["task"] = None  # the runs belong to the family their own config claims
    raw["name"] = f"{phase.name}-{view}" if view else phase.name
    raw["log"]["dir"] = str(root)
    raw["train"] = _merge(raw["train"], phase.train)
    raw["model"] = _merge(raw["model"], phase.model)
    if view is not None:
        raw["data"]["views"] = {view: raw["data"]["views"][view]}
        if isinstance(raw["model"].get("views"), dict):
            raw["model"]["views"] = {k: v for k, v in raw["model"]["views"].items() if k == view}
    return raw


def phase_config(cfg: Any, root: Path, index: int, view: str | None = None,
                 sources: list[dict[str, Any]] | None = None) -> Any:
    """The :class:`ExperimentConfig` of one run of phase ``index`` under ``root``, loading ``sources``
    (``model.pretrained`` entries) when given.

    Raises:
        ConfigError: the phase's keys do not make a valid config (the message names the phase).
    """
    from deepscope.config import load_config

    raw = _phase_dict(cfg, root, index, view)
    if sources:
        raw["model"]["pretrained"] = list(raw["model"].get("pretrained") or []) + sources
    try:
        return load_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"phases[{index}] ({cfg.phases[index].name}"
                          f"{', view ' + view if view else ''}): {exc}") from None


def _parts(run: Path) -> list[str]:
    """The top-level parts of the net saved in a run's checkpoint (``views``, ``top``)."""
    import torch

    from deepscope.training.run import RunDir

    weights = RunDir(run).weights_for_evaluation()
    state = torch.load(weights, map_location="cpu", weights_only=True).get("state_dict", {})
    return sorted({k.split(".")[1] for k in state if k.startswith("net.") and k.count(".") >= 2})


class PhasedFamily(TaskFamily):
    """A config with ``phases:``: its runs, one after the other."""

    name = "phased"
    priority = 1

    @classmethod
    def claims(cls, cfg: Any) -> bool:
        return bool(getattr(cfg, "phases", None))

    def check_config(self, cfg: Any) -> list[str]:
        phases = cfg.phases
        if not phases:
            return ["task: phased needs phases: a list of {name, each_view, start_from, load, freeze, train, "
                    "model} (docs/phases.md)"]
        problems: list[str] = []
        names: list[str] = []
        needs_views = False
        for i, phase in enumerate(phases):
            key = f"phases[{i}]"
            if phase.name in names:
                problems.append(f"{key}.name: '{phase.name}' is also phases[{names.index(phase.name)}]'s name")
            if phase.start_from is not None and phase.start_from not in names:
                later = [p.name for p in phases[i:]]
                where = "a later phase" if phase.start_from in later else "no phase"
                problems.append(f"{key}.start_from: '{phase.start_from}' is {where}: it names an earlier phase"
                                f"{did_you_mean(phase.start_from, names)} (earlier phases: "
                                f"{', '.join(names) or 'none'})")
            if phase.each_view and phase.start_from is not None:
                problems.append(f"{key}: each_view trains every view's model on its own; it cannot start_from "
                                f"'{phase.start_from}'")
            if phase.start_from is None and (phase.load is not None or phase.freeze):
                problems.append(f"{key}: load and freeze apply to what is loaded from start_from, which is not given")
            source = next((p for p in phases[:i] if p.name == phase.start_from), None)
            needs_views |= phase.each_view or bool(source is not None and source.each_view and phase.load is None)
            names.append(phase.name)
        if needs_views:
            if not _views(cfg):
                problems.append(f"phases: each_view needs data with named views (data.views of the root and "
                                f"track_detector sources); data.source '{cfg.data.source}' has none")
            if cfg.model.architecture != "multiview":
                problems.append(f"phases: the views' models are combined into a multiview model, but "
                                f"model.architecture is '{cfg.model.architecture}': use multiview")
        if problems:
            return problems
        root = Path(cfg.log.dir) / cfg.name
        for i in range(len(phases)):  # every phase's own config, as its run will validate it
            for _, view in phase_runs(cfg, i)[:1]:
                try:
                    phase_config(cfg, root, i, view)
                except ConfigError as exc:
                    problems.append(str(exc))
        return problems

    def default_metrics(self, cfg: Any) -> list[str]:
        return []  # every run fills its own

    def run(self, experiment: Any, new_version: bool = False) -> Any:
        from deepscope.training.experiment import Experiment, RunResult

        cfg = experiment.cfg
        if experiment.data is not None:
            raise ConfigError("phases: a phased experiment reads its data from data.source; in-memory arrays are "
                              "not passed on to its runs")
        _check_launcher(cfg)
        root = _root(cfg, new_version)
        record: list[dict[str, Any]] = []
        results: dict[str, RunResult] = {}
        retrained: set[str] = set()
        for i, phase in enumerate(cfg.phases):
            sources = _sources(cfg, i, record)
            runs = []
            for run_name, view in phase_runs(cfg, i):
                derived = phase_config(cfg, root, i, view, sources)
                built_from = [s["weights_path"] for s in sources]
                done = _finished_metrics(derived)
                if done is not None:
                    if phase.start_from in retrained:
                        log.warning(f"phase {phase.name}: {root / run_name} finished before phase "
                                    f"{phase.start_from} trained again; it is not rebuilt (start a new version "
                                    f"with --new-version to rebuild every phase)")
                    log.info(f"phase {phase.name}: {root / run_name} finished earlier; not trained again")
                    result = RunResult(root / run_name, done)
                else:
                    log.info(f"phase {i + 1}/{len(cfg.phases)} {phase.name}"
                             f"{' (view ' + view + ')' if view else ''}"
                             f"{': built from ' + ', '.join(built_from) if built_from else ''}")
                    # the experiment's callbacks go to the run whose metrics are the experiment's: the last
                    # phase's, when it is one run (each_view runs would report the same epochs twice)
                    last_run = i == len(cfg.phases) - 1 and len(phase_runs(cfg, i)) == 1
                    result = Experiment(derived, callbacks=experiment.callbacks if last_run else ()).train_run()
                    retrained.add(phase.name)
                results[run_name] = result
                runs.append({"run": str(result.run_dir), "view": view, "built_from": built_from,
                             "metrics": result.metrics})
            record.append({"name": phase.name, "runs": runs})
            if result.global_rank == 0:  # under DDP global rank 0 alone writes
                _write_record(root, record)
        last = result
        if last.global_rank == 0:
            _log_summary(record)
        return RunResult(last.run_dir, last.metrics, last.checkpoint, last.epochs, last.resumed, last.global_rank,
                         phases=results)


def _check_launcher(cfg: Any) -> None:
    """Several processes must be started by srun or torchrun: Lightning's own launcher starts the command
    again in each new process when a trainer first fits, which for phases is the first phase only.

    Raises:
        ConfigError: several processes asked for without an external launcher.
    """
    import os

    from deepscope.training.processes import process_count

    if process_count(cfg.train) > 1 and not any(k in os.environ for k in ("SLURM_PROCID", "TORCHELASTIC_RUN_ID")):
        raise ConfigError(f"phases: training on {process_count(cfg.train)} processes needs them started by srun or "
                          "torchrun (docs/distributed.md): Lightning's launcher would start only the first phase in "
                          "them; or train on one device")


def _root(cfg: Any, new_version: bool) -> Path:
    """``<log.dir>/<name>``, or with ``new_version`` the first ``<name>-N`` that does not exist."""
    root = Path(cfg.log.dir) / cfg.name
    n = 2
    while new_version and root.exists():
        root = Path(cfg.log.dir) / f"{cfg.name}-{n}"
        n += 1
    if root.exists() and (root / "config.yaml").is_file():
        raise ConfigError(f"phases: '{root}' is the run folder of an experiment without phases; choose another "
                          "name (or --new-version)")
    return root


def _sources(cfg: Any, index: int, record: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``model.pretrained`` entries of phase ``index``: one per run of the phase it starts from."""
    phase = cfg.phases[index]
    if phase.start_from is None:
        return []
    earlier = next(r for r in record if r["name"] == phase.start_from)
    source_phase = next(p for p in cfg.phases if p.name == phase.start_from)
    entries = []
    for run in earlier["runs"]:
        if phase.load is not None:
            layers = list(phase.load)
        elif source_phase.each_view:
            layers = [f"views.{run['view']}"]  # the view's CNN; its own head fits no other input width
        else:
            layers = _parts(Path(run["run"]))
        entries.append({"use": True, "weights_path": run["run"], "layers_to_load": layers,
                        "freeze_loaded_layers": phase.freeze})
    return entries


def _finished_metrics(derived: Any) -> dict[str, Any] | None:
    """The final metrics of the run of ``derived`` when it finished training (its folder holds the same
    config, final_metrics.json, and a checkpoint with nothing left to train); else None.

    Raises:
        ConfigError: the run folder holds a run with another config (the diff).
    """
    from deepscope.training.experiment import _resume_state
    from deepscope.training.run import open_run

    run, resumes = open_run(derived)
    final = run.path / "final_metrics.json"
    if not (resumes and final.is_file()):
        return None
    if _resume_state(run.last, derived)[1] is None:
        return None  # more epochs asked for than trained: it resumes
    try:
        return json.loads(final.read_text())
    except (OSError, ValueError):
        return None  # damaged: train (resume) it to write them again


def _write_record(root: Path, record: list[dict[str, Any]]) -> None:
    from deepscope.training.callbacks import atomic_write_text

    atomic_write_text(root / PHASES_FILE, json.dumps({"phases": record}, indent=2))


def _log_summary(record: list[dict[str, Any]]) -> None:
    """One line per run: its test (else validation) metrics."""
    for phase in record:
        for run in phase["runs"]:
            split = "test" if "test" in run["metrics"] else "val"
            scores = run["metrics"].get(split, {})
            shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if not k.startswith("baseline"))
            log.info(f"phase {phase['name']}{' (' + run['view'] + ')' if run['view'] else ''}: {split} {shown}")
