"""Reading what a report shows: a run folder, a phased experiment's folder, a study folder.

Readers check what they read and raise the user's errors with the file's path: a missing or foreign
run folder is a :class:`~deepscope.errors.CheckpointError` (as for ``evaluate``), a damaged file or
study folder a :class:`ReportError`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepscope.errors import DeepscopeError

__all__ = ["RUN_INFO_FILE", "ReportError", "RunData", "StudyData", "figure_files", "is_phased_folder",
           "is_study_folder", "read_metrics", "read_run", "read_study"]

RUN_INFO_FILE = "run_info.json"
STUDY_FILE = "study.json"


class ReportError(DeepscopeError):
    """A report cannot be written: a file it reads is damaged, or a folder is not what it should be."""


@dataclass
class RunData:
    """Everything a run folder holds that a report shows (absent files are empty values)."""

    path: Path
    config: dict[str, Any]
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, float | None]] = field(default_factory=list)
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    summary: str = ""
    input_spec: dict[str, Any] | None = None
    info: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.name)

    def column(self, name: str) -> list[float | None]:
        """The values of one metrics.csv column, a row each (None where the row has none)."""
        return [row.get(name) for row in self.rows]

    @property
    def epochs(self) -> list[float]:
        """The x of each row in charts: epochs counted from 1, as the training log and the summary count them."""
        return [(row["epoch"] if row.get("epoch") is not None else i) + 1 for i, row in enumerate(self.rows)]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"'{path}' cannot be read as JSON ({type(exc).__name__}: {exc}); "
                          "it is damaged: restore or delete it") from None


def read_metrics(path: Path) -> tuple[list[str], list[dict[str, float | None]]]:
    """The columns and rows of a ``metrics.csv``; an empty cell is ``None``.

    Raises:
        ReportError: a cell is not a number, or the file is not a CSV with a header.
    """
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = []
            for n, raw in enumerate(reader, start=2):
                if None in raw:  # more cells than the header has names
                    raise ReportError(f"'{path}' is corrupt: line {n} has {len(columns) + len(raw[None])} cells but "
                                      f"the header names {len(columns)}")
                row: dict[str, float | None] = {}
                for key, value in raw.items():
                    if value in ("", None):
                        row[key] = None
                        continue
                    try:
                        row[key] = float(value)
                    except ValueError:
                        raise ReportError(f"'{path}' is corrupt: line {n}, column '{key}' is {value!r}; expected "
                                          "a number") from None
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReportError(f"'{path}' cannot be read ({type(exc).__name__}: {exc})") from None
    if rows and "epoch" not in columns:
        raise ReportError(f"'{path}' is corrupt: no 'epoch' column (columns: {', '.join(columns) or 'none'})")
    return columns, rows


def figure_files(folder: Path) -> list[tuple[str, Path]]:
    """(caption, path) of every PNG under ``folder``, sorted by path; the caption is the relative path."""
    if not folder.is_dir():
        return []
    return [(str(p.relative_to(folder).with_suffix("")), p) for p in sorted(folder.rglob("*.png")) if p.is_file()]


def read_run(path: str | Path) -> RunData:
    """Read a run folder for its report.

    Raises:
        CheckpointError: the folder does not exist or is not a run folder (no config.yaml).
        ReportError: config.yaml, metrics.csv or a JSON file in it is damaged.
    """
    from deepscope.training.run import RunDir

    run = RunDir.existing(path)
    try:
        config = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ReportError(f"'{run.config}' cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, dict):
        raise ReportError(f"'{run.config}' is not a config (found a {type(config).__name__}; expected a mapping)")
    data = RunData(run.path, config)
    if run.metrics.is_file():
        data.columns, data.rows = read_metrics(run.metrics)
    final = run.path / "final_metrics.json"
    if final.is_file():
        data.final = _json(final)
    evaluation = run.path / "evaluation"
    if evaluation.is_dir():
        for f in sorted(evaluation.glob("*_metrics.json")):
            data.evaluation[f.name.removesuffix("_metrics.json")] = _json(f)
    data.figures = figure_files(run.figures) + [(f"lr_finder/{c}", p) for c, p in figure_files(run.lr_finder)]
    if run.summary.is_file():
        data.summary = run.summary.read_text(encoding="utf-8", errors="replace")
    if run.input_spec.is_file():
        data.input_spec = _json(run.input_spec)
    if (run.path / RUN_INFO_FILE).is_file():
        data.info = _json(run.path / RUN_INFO_FILE)
    return data


def is_phased_folder(path: Path) -> bool:
    """Whether ``path`` holds the runs of a phased experiment (phases.json, and no config.yaml of its own)."""
    from deepscope.tasks.phased import PHASES_FILE

    return (path / PHASES_FILE).is_file() and not (path / "config.yaml").is_file()


def is_study_folder(path: Path) -> bool:
    """Whether ``path`` is a study folder (it holds study.json, as ``deepscope tune`` writes it)."""
    return (path / STUDY_FILE).is_file()


@dataclass
class StudyData:
    """A study folder (``deepscope tune``): its summary, its trials, its figures, and its stages."""

    path: Path
    summary: dict[str, Any]
    trial_columns: list[str]
    trials: list[dict[str, str]]
    best_config: str | None
    figures: list[tuple[str, Path]]
    stages: list["StudyData"] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.summary.get("study") or self.path.name)


_STUDY_KEYS = {"study": str, "metric": str, "direction": str, "n_trials": int, "counts": dict}


def read_study(path: str | Path, _stage: bool = False) -> StudyData:
    """Read a study folder: study.json, trials.csv, best_config.yaml, figures/ and stages/<stage>/.

    Raises:
        ReportError: the folder or its study.json is missing, study.json lacks a key or is damaged,
            or trials.csv lacks the columns the study contract names.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ReportError(f"study folder '{folder}' not found")
    if not is_study_folder(folder):
        raise ReportError(f"'{folder}' is not a study folder (no {STUDY_FILE}); 'deepscope tune' writes one")
    summary = _json(folder / STUDY_FILE)
    if not isinstance(summary, dict):
        raise ReportError(f"'{folder / STUDY_FILE}': expected a JSON object, found a {type(summary).__name__}")
    problems = [f"'{k}' ({t.__name__})" for k, t in _STUDY_KEYS.items() if not isinstance(summary.get(k), t)]
    if problems:
        raise ReportError(f"'{folder / STUDY_FILE}': missing or wrong type: {', '.join(problems)}")
    columns: list[str] = []
    trials: list[dict[str, str]] = []
    csv_path = folder / "trials.csv"
    if csv_path.is_file():
        try:
            with csv_path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                columns = list(reader.fieldnames or [])
                trials = [dict(r) for r in reader]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ReportError(f"'{csv_path}' cannot be read ({type(exc).__name__}: {exc})") from None
        missing = [c for c in ("number", "state", "value") if c not in columns]
        if missing:
            raise ReportError(f"'{csv_path}': missing column(s) {', '.join(missing)} (columns: {', '.join(columns)}); "
                              "expected number,state,value,duration_s,run,error and one column per parameter")
    best_config = None
    if (folder / "best_config.yaml").is_file():
        best_config = (folder / "best_config.yaml").read_text(encoding="utf-8", errors="replace")
    study = StudyData(folder, summary, columns, trials, best_config, figure_files(folder / "figures"))
    if not _stage:
        for stage in summary.get("stages") or []:
            stage_dir = folder / "stages" / str(stage)
            if is_study_folder(stage_dir):
                study.stages.append(read_study(stage_dir, _stage=True))
    return study


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (empty cells, 'nan', text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
