"""What a study leaves in its folder: ``trials.csv``, ``study.json``, ``best_config.yaml``, ``figures/``
and ``report.html``. Every file is rewritten whole from the storage and replaced atomically, so two
workers writing at once leave one complete version."""

from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

from deepscope.config.io import dump_yaml
from deepscope.training.callbacks import atomic_write_text

__all__ = ["best_config", "study_summary", "write_outputs", "write_root_outputs"]

log = logging.getLogger("deepscope")

FIGURES = ("optimization_history", "param_importances", "parallel_coordinate")


def _json_cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def trials_table(stage: Any) -> str:
    """``trials.csv``: number, state, value, duration_s, run, error, then one column per searched key."""
    from deepscope.tuning.space import decode_params

    paths = list(stage.spec.space)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "state", "value", "duration_s", "run", "error", *paths])
    for t in stage.study.get_trials(deepcopy=False):
        params = decode_params(stage.spec.space, t.params)
        duration = t.duration.total_seconds() if t.duration is not None else ""
        run = t.user_attrs.get("run", "")
        writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                         f"{duration:.2f}" if duration != "" else "", f"trials/{run}" if run else "",
                         t.user_attrs.get("error", ""), *(_json_cell(params[p]) if p in params else "" for p in paths)])
    return out.getvalue()


def _best(stage: Any) -> Any:
    try:
        return stage.study.best_trial
    except ValueError:  # no complete trial yet
        return None


def best_values(stage: Any) -> dict[str, Any] | None:
    """The config values of the stage's best trial (choices decoded), or ``None``."""
    from deepscope.tuning.space import decode_params

    best = _best(stage)
    return None if best is None else decode_params(stage.spec.space, best.params)


def best_config(stage: Any) -> str | None:
    """``best_config.yaml``: the config the best trial trained (its run's ``config.yaml``), renamed
    ``<name>-best`` and back in the base config's ``log.dir``: ready for ``deepscope train``."""
    import yaml

    from deepscope.tuning.space import apply_values

    best = _best(stage)
    if best is None:
        return None
    trained = stage.folder.trials / best.user_attrs.get("run", "") / "config.yaml"
    try:
        raw = yaml.safe_load(trained.read_text())
    except (OSError, yaml.YAMLError):  # the run folder was moved away: the base config with the values
        raw = apply_values(stage.base, best_values(stage))
    raw["name"] = f"{stage.base.get('name', 'run')}-best"
    raw.setdefault("log", {})["dir"] = stage.base.get("log", {}).get("dir", "runs")
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    head = (f"# the best trial of study '{stage.study.study_name}': trial {best.number}, {stage.metric} "
            f"{best.value:.6g}\n# written {when}; train it with: deepscope train <this file>\n")
    return head + dump_yaml(raw)


def study_summary(stage: Any, prefix: str = "") -> dict[str, Any]:
    """``study.json``: what the study is, its counts and its best trial."""
    from deepscope.tuning.study import tally

    counts = tally(stage.study.get_trials(deepcopy=False))
    best = _best(stage)
    return {
        "study": stage.study.study_name,
        "storage": stage.storage_url,
        "metric": stage.metric,
        "direction": stage.direction,
        "n_trials": stage.spec.n_trials,
        "counts": {k: counts[k] for k in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")},
        "best": None if best is None else {"number": best.number, "value": best.value,
                                           "params": best_values(stage),
                                           "run": f"{prefix}trials/{best.user_attrs.get('run', '')}"},
        "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_figures(stage: Any) -> list[Path]:
    """Optimisation history, parameter importances and parallel coordinates (Optuna's matplotlib plots);
    a figure that needs more finished trials than there are is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    written = []
    stage.folder.figures.mkdir(parents=True, exist_ok=True)
    complete = [t for t in stage.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    for name in FIGURES:
        if not complete or (name != "optimization_history" and len(complete) < 2):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                ax = getattr(ovm, f"plot_{name}")(stage.study)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of one value
                log.debug("figure %s left out: %s", name, exc)
                plt.close("all")
                continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(max(fig.get_size_inches()[0], 8), max(fig.get_size_inches()[1], 5))
        fig.tight_layout()
        path = stage.folder.figures / f"{name}.png"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # workers write at once
        fig.savefig(tmp, dpi=110, format="png")
        tmp.replace(path)
        plt.close(fig)
        written.append(path)
    return written


def write_outputs(stage: Any) -> None:
    """Rewrite the stage folder's tables from the storage: ``trials.csv``, ``study.json``, ``best_config.yaml``."""
    folder = stage.folder
    folder.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.csv, trials_table(stage))
    atomic_write_text(folder.summary, json.dumps(study_summary(stage), indent=2, default=str))
    text = best_config(stage)
    if text is not None:
        atomic_write_text(folder.best_config, text)


def write_figures_and_report(stage: Any) -> None:
    """The study's figures and ``report.html`` (a second or so: written when a worker finishes a stage)."""
    write_figures(stage)
    _report(stage.folder.path)


def write_root_outputs(root: Path, stages: list[Any]) -> None:
    """The study folder of a staged search: a summary over the stages and the last stage's best config."""
    from deepscope.tuning.study import tally

    last = stages[-1]
    counts: dict[str, int] = {}
    for stage in stages:
        for key, n in tally(stage.study.get_trials(deepcopy=False)).items():
            counts[key] = counts.get(key, 0) + n
    summary = study_summary(last, prefix=f"stages/{last.spec.name}/")
    summary.update(study=last.study.study_name.rsplit(".", 1)[0], n_trials=sum(s.spec.n_trials for s in stages),
                   counts={k: counts.get(k, 0) for k in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")},
                   stages=[s.spec.name for s in stages])
    atomic_write_text(root / "study.json", json.dumps(summary, indent=2, default=str))
    text = best_config(last)
    if text is not None:
        atomic_write_text(root / "best_config.yaml", text)
    _report(root)


def _report(folder: Path) -> None:
    """``report.html`` of the study folder; a failure is reported, never fatal (the trials are kept)."""
    try:
        from deepscope.reports import write_study_report
    except ImportError:
        return
    try:
        write_study_report(folder)
    except Exception as exc:  # a report is a view of the study; losing it must not lose the search
        log.warning(f"the study report of {folder} was not written: {type(exc).__name__}: {exc}")
