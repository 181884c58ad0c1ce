"""``deepscope tune``: a hyperparameter search (Optuna) whose trials are ordinary run folders.

The config's ``tune`` section names the search space by dotted config paths, the budget (the study's
total ``n_trials``), the sampler, the pruner and the storage (docs/tune.md). The study folder,
``<log.dir>/studies/<study>/``, holds::

    study.db            the default storage (SQLite; tune.storage may name a journal file or a server)
    trials/trial-0000/  one run folder per trial (inspect, evaluate, export or resume it like any run)
    trials.csv          number, state, value, duration, run, error and the searched values of every trial
    study.json          the metric, its direction, the counts by state and the best trial
    best_config.yaml    the config with the best trial's values: deepscope train best_config.yaml
    figures/            optimisation history, parameter importances, parallel coordinates
    report.html         all of the above on one page

A staged search (``tune.stages``, DeepFocus' advice: the architecture first, then the training keys
with it fixed) keeps each stage in ``stages/<stage>/`` with the same files and its own study
``<study>.<stage>`` in the same storage.

Example:
    >>> result = deepscope.tune("configs/digits_tune.yaml")
    >>> result.best_value, result.best_config
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepscope.config import load_config
from deepscope.config.tune import tune_metric
from deepscope.errors import ConfigError

__all__ = ["TuneResult", "tune"]

log = logging.getLogger("deepscope")


@dataclass
class TuneResult:
    """What a worker leaves when its study (or its share of it) is done.

    Attributes:
        folder: the study folder.
        metric: the validation value trials are judged by, and ``direction`` (minimize / maximize).
        best_value: the best trial's value (``None`` when no trial completed).
        best_params: its searched values, by dotted path (of every stage, for a staged search).
        best_config: the path of ``best_config.yaml`` (``None`` when no trial completed).
        counts: trials by state (COMPLETE, PRUNED, FAIL, RUNNING, WAITING) over every stage.
    """

    folder: Path
    metric: str
    direction: str
    best_value: float | None = None
    best_number: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_config: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)


def study_folder(cfg: Any) -> Path:
    """``<log.dir>/studies/<study>``; the study's name is ``tune.study`` or the config's name."""
    return Path(cfg.log.dir) / "studies" / (cfg.tune.study or cfg.name)


def _direction(cfg: Any, metric: str) -> str:
    if cfg.tune.direction is not None:
        return cfg.tune.direction
    from deepscope.training.task import monitor_mode

    return "maximize" if monitor_mode(metric) == "max" else "minimize"


def _open_study(name: str, storage: Any, direction: str, metric: str, base: dict[str, Any]) -> Any:
    import json

    import optuna

    from deepscope.training.run import config_diff

    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise ConfigError(f"tune: study '{name}' in this storage was made to {study.direction.name.lower()} and this "
                          f"config asks to {direction}; give tune.study a new name to start another study")
    recorded = study.user_attrs.get("metric")
    if recorded is None:
        study.set_user_attr("metric", metric)
    elif recorded != metric:
        raise ConfigError(f"tune.metric: study '{name}' judges trials by {recorded}, this config by {metric}; give "
                          "tune.study a new name to start another study")
    before = study.user_attrs.get("base_config")
    if before is None:
        study.set_user_attr("base_config", json.dumps(base))
    else:
        changed = config_diff(json.loads(before), base)
        if changed:
            keys = ", ".join(k for k, _, _ in changed[:8]) + (", ..." if len(changed) > 8 else "")
            log.warning(f"study '{name}': the base config differs from the one the study started with ({keys}); "
                        "the new trials train the new one, the earlier trials keep theirs")
    return study


def tune(config: Any, overrides: list[str] | tuple[str, ...] = ()) -> TuneResult:
    """Run (or join, or resume) the study a config's ``tune`` section describes, in this process.

    Start it in several processes at once, on several machines sharing a filesystem or a database, to
    share the work; each stops once the study holds ``tune.n_trials`` finished trials.

    Args:
        config: YAML path, dict or :class:`~deepscope.config.ExperimentConfig` with a ``tune`` section.
        overrides: ``key.path=value`` strings applied to the config first.

    Returns:
        The study's best trial and counts (:class:`TuneResult`).

    Raises:
        ConfigError: no ``tune`` section, a search space the config has no place for, a storage that
            cannot be opened, a study in that storage with another metric or direction.
        Interrupted: Ctrl-C; the running trial is queued again and resumes with the next worker.
    """
    import optuna

    from deepscope.training.trainer import quiet_lightning
    from deepscope.tuning.outputs import best_values, write_figures_and_report, write_root_outputs
    from deepscope.tuning.space import apply_values, check_space
    from deepscope.tuning.storage import display_url, make_pruner, make_sampler, storage_url
    from deepscope.tuning.study import Stage, StageFolder, ask_lock, base_config, check_workers, run_stage, \
        wait_until_settled

    started = time.monotonic()
    cfg = load_config(config, overrides)
    if cfg.tune is None:
        raise ConfigError("tune: the config has no tune section; add one, e.g.\n"
                          "tune:\n  space:\n    train.lr: {float: [1.0e-4, 1.0e-1], log: true}\n  n_trials: 20")
    check_workers(cfg)
    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tcfg = cfg.tune
    root = study_folder(cfg)
    url = storage_url(tcfg, root)
    metric = tune_metric(cfg)
    direction = _direction(cfg, metric)
    base = base_config(cfg)
    specs = tcfg.stage_list()
    for spec in specs:  # every stage's space, before the first trial of the first
        where = f"tune.stages.{spec.name}.space" if spec.name else "tune.space"
        check_space(base, spec.space, where)
        make_sampler(tcfg, spec, 0, where)  # grid / cmaes refuse spaces they cannot search
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"log.dir: cannot create the study folder {root} ({exc.strerror})") from None
    name = tcfg.study or cfg.name
    seed = tcfg.seed if tcfg.seed is not None else cfg.seed
    log.info(f"study '{name}' in {display_url(url)}: {metric} ({direction}), sampler {tcfg.sampler}, pruner "
             f"{tcfg.pruner}; folder {root}")
    stages: list[Stage] = []
    best_params: dict[str, Any] = {}
    for i, spec in enumerate(specs):
        study_name = f"{name}.{spec.name}" if spec.name else name
        where = f"tune.stages.{spec.name}.space" if spec.name else "tune.space"
        lock = ask_lock(root)
        try:  # workers started at once create the storage's tables one at a time
            storage = _storage(url)
            study = _open_study(study_name, storage, direction, metric, base)
            worker = int(study.user_attrs.get("workers", 0))  # worker k seeds its sampler with seed + k
            study.set_user_attr("workers", worker + 1)
        finally:
            lock.release()
        study = optuna.load_study(study_name=study_name, storage=storage,
                                  sampler=make_sampler(tcfg, spec, seed, where, worker),
                                  pruner=make_pruner(tcfg, cfg.train.epochs))
        folder = StageFolder(root / "stages" / spec.name if spec.name else root)
        stage = Stage(study, spec, tcfg, base, folder, root, metric, direction, where, storage_url=display_url(url),
                      deadline=_deadline(started, tcfg.timeout, spec.timeout))
        if spec.name:
            log.info(f"stage {i + 1}/{len(specs)} '{spec.name}': {', '.join(spec.space)}"
                     + (f" (fixed: {', '.join(best_params)})" if best_params else ""))
        run_stage(stage)
        stages.append(stage)
        if i + 1 < len(specs):
            if tcfg.timeout is not None and time.monotonic() - started > tcfg.timeout:
                log.info("tune.timeout: this worker's time is up; the later stages are left to other workers")
                break
            while wait_until_settled(stage)["WAITING"]:  # trials of dead workers, queued again: run them
                if stage.deadline is not None and time.monotonic() > stage.deadline:
                    break
                run_stage(stage)
            write_figures_and_report(stage)
            found = best_values(stage)
            if found is None:
                raise ConfigError(f"tune.stages.{spec.name}: no trial completed, so the next stage has no best "
                                  f"values to start from; see {folder.csv}")
            best_params.update(found)
            base = apply_values(base, found)
    if len(stages) > 1 or specs[0].name:
        write_root_outputs(root, stages)
    return _result(root, stages, metric, direction, best_params)


def _deadline(started: float, timeout: float | None, stage_timeout: float | None) -> float | None:
    """When this worker starts no new trial of a stage: ``tune.timeout`` after it started, or the stage's
    own ``timeout`` after the stage started, whichever comes first."""
    ends = [t for t in (started + timeout if timeout is not None else None,
                        time.monotonic() + stage_timeout if stage_timeout is not None else None) if t is not None]
    return min(ends) if ends else None


def _storage(url: str, attempts: int = 5) -> Any:
    """The storage, retried a few times: workers on other machines may be creating a database's tables."""
    from deepscope.tuning.storage import open_storage

    for attempt in range(attempts):
        try:
            return open_storage(url)
        except ConfigError as exc:
            if attempt + 1 == attempts or not any(k in str(exc) for k in ("IntegrityError", "OperationalError")):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _result(root: Path, stages: list[Any], metric: str, direction: str, earlier: dict[str, Any]) -> TuneResult:
    from deepscope.tuning.outputs import best_values
    from deepscope.tuning.study import tally

    last = stages[-1]
    counts: dict[str, int] = {}
    for stage in stages:
        for key, n in tally(stage.study.get_trials(deepcopy=False)).items():
            counts[key] = counts.get(key, 0) + n
    result = TuneResult(root, metric, direction, counts=counts)
    try:
        best = last.study.best_trial
    except ValueError:
        return result
    result.best_value, result.best_number = best.value, best.number
    result.best_params = {**earlier, **(best_values(last) or {})}
    path = root / "best_config.yaml"
    result.best_config = path if path.exists() else None
    return result
