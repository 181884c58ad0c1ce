"""``report.html`` of a study folder (``deepscope tune``): the search's summary and best trial, the
table of every trial (failed ones with their error), the objective by trial, the study's figures,
``best_config.yaml``, and, for a staged search, each stage in a section of its own.

The study folder's contract (written by ``deepscope tune``)::

    study.json       {"study", "storage", "metric", "direction", "n_trials", "counts", "best", "stages", "updated"}
    trials.csv       number,state,value,duration_s,run,error,<one column per parameter, by dotted path>
    best_config.yaml
    figures/*.png    optimization_history, param_importances, parallel_coordinate (any may be missing)
    stages/<stage>/  the same layout, per stage of a staged search
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deepscope.reports.folders import StudyData, finite, read_study
from deepscope.reports.html import (Raw, Section, esc, figure_grid, fmt_number, fmt_seconds, kv_table, page, pre,
                                    table, write_page)
from deepscope.reports.run import REPORT_FILE, charts_html
from deepscope.reports.svg import Series, line_chart

__all__ = ["write_study_report"]

_STATES = {"COMPLETE": "ok", "PRUNED": "warn", "FAIL": "bad", "RUNNING": "", "WAITING": ""}
_FIXED = ("number", "state", "value", "duration_s", "run", "error")


def write_study_report(study_dir: str | Path) -> Path:
    """Write ``<study_dir>/report.html`` (replacing it) and return its path.

    Raises:
        ReportError: the folder is not a study folder, or its study.json or trials.csv is damaged.
    """
    study = read_study(study_dir)
    page_dir = study.path
    sections = _study_sections(study, page_dir, prefix="")
    for stage in study.stages:
        name = stage.path.name
        body = "".join(f"<h3>{esc(s.title)}</h3>{s.body}" for s in _study_sections(stage, page_dir, prefix=name))
        sections.append(Section(f"stage-{name}", f"Stage: {name}", body))
    missing = [s for s in study.summary.get("stages") or [] if str(s) not in {st.path.name for st in study.stages}]
    if missing:
        sections.append(Section("stages-missing", "Stages not started",
                                '<p class="note">named in study.json, with no stages/&lt;stage&gt;/study.json yet: '
                                + esc(", ".join(map(str, missing))) + "</p>"))
    subtitle = f"{study.path.resolve()} · updated {study.summary.get('updated', '?')}"
    return write_page(study.path / REPORT_FILE, page("study report", study.name, subtitle, sections))


def _study_sections(study: StudyData, page_dir: Path, prefix: str) -> list[Section]:
    anchor = f"{prefix}-" if prefix else ""
    sections = [Section(f"{anchor}summary", "Summary", _summary(study, page_dir)),
                Section(f"{anchor}trials", "Trials", _trials(study, page_dir))]
    chart = _objective_chart(study)
    if chart:
        sections.append(Section(f"{anchor}objective", "Objective by trial", charts_html([chart])))
    sections.append(Section(f"{anchor}figures", "Figures", figure_grid(study.figures) if study.figures
                            else '<p class="note">no figures in figures/</p>'))
    if study.best_config is not None:
        sections.append(Section(f"{anchor}best-config", "Best config",
                                '<p class="note">best_config.yaml: the config of the best trial</p>'
                                + pre(study.best_config)))
    return sections


def _run_link(study: StudyData, run: Any, page_dir: Path) -> Raw | str:
    """A link to a trial's run report, relative to the page, or the run's path when it has no report."""
    if not run:
        return "—"
    path = Path(str(run))
    folder = path if path.is_absolute() else study.path / path
    report = folder / REPORT_FILE
    if not report.is_file():
        return str(run)
    href = Path(os.path.relpath(report.resolve(), page_dir.resolve())).as_posix()
    return Raw(f'<a href="{esc(href)}">{esc(run)}</a>')


def _pill(state: str) -> Raw:
    return Raw(f'<span class="pill {_STATES.get(state, "")}">{esc(state)}</span>')


def _summary(study: StudyData, page_dir: Path) -> str:
    s = study.summary
    counts = s.get("counts") or {}
    count_text = " ".join(f'<span class="pill {_STATES.get(k, "")}">{esc(k)} {esc(v)}</span>'
                          for k, v in counts.items())
    items: list[tuple[str, Any]] = [
        ("study", s.get("study")), ("storage", s.get("storage") or "—"),
        ("objective", f"{s.get('direction')} {s.get('metric')}"), ("trials asked for", s.get("n_trials")),
        ("trials", Raw(count_text or "none")), ("updated", s.get("updated", "—"))]
    if s.get("stages"):
        items.append(("stages", ", ".join(map(str, s["stages"]))))
    out = kv_table(items)
    best = s.get("best")
    if not best:
        return out + '<p class="note">no trial has completed yet: there is no best trial</p>'
    out += (f"<h3>Best trial: #{esc(best.get('number'))}, {esc(s.get('metric'))} = "
            f"{esc(fmt_number(best.get('value')))}</h3>")
    params = best.get("params") or {}
    out += table(["parameter", "value"], [(Raw(f"<code>{esc(k)}</code>"), fmt_number(v)) for k, v in params.items()])
    out += "<p>Its run: " + _html(_run_link(study, best.get("run"), page_dir)) + "</p>"
    return out


def _html(value: Raw | str) -> str:
    return value.html if isinstance(value, Raw) else esc(value)


def _trials(study: StudyData, page_dir: Path) -> str:
    if not study.trials:
        return '<p class="note">no trials.csv yet</p>'
    params = [c for c in study.trial_columns if c not in _FIXED]
    best = (study.summary.get("best") or {}).get("number")
    rows, classes = [], []
    for t in study.trials:
        number = t.get("number", "")
        is_best = best is not None and str(best) == str(number)
        value = finite(t.get("value"))
        rows.append([Raw(esc(number) + (' <span class="pill ok">best</span>' if is_best else "")), _pill(t.get("state", "")),
                     fmt_number(value) if value is not None else "—",
                     fmt_seconds(finite(t.get("duration_s"))) if finite(t.get("duration_s")) is not None else "—",
                     _run_link(study, t.get("run"), page_dir),
                     *(_param(t.get(p)) for p in params),
                     Raw(f"<code>{esc(t['error'])}</code>") if t.get("error") else ""])
        classes.append("fail" if t.get("state") == "FAIL" else "")
    header = ["#", "state", f"{study.summary.get('metric', 'value')}", "duration", "run",
              *params, "error"]
    return table(header, rows, numeric=[0, 2, 3], row_classes=classes)


def _param(value: Any) -> str:
    number = finite(value)
    return fmt_number(number) if number is not None else ("" if value is None else str(value))


def _objective_chart(study: StudyData) -> tuple[str, str] | None:
    """Each completed trial's value by trial number, with the best so far (drawn from trials.csv)."""
    done = [(finite(t.get("number")), finite(t.get("value"))) for t in study.trials if t.get("state") == "COMPLETE"]
    done = sorted((n, v) for n, v in done if n is not None and v is not None)
    if not done:
        return None
    pick = max if study.summary.get("direction") == "maximize" else min
    best, running = [], None
    for _, v in done:
        running = v if running is None else pick(running, v)
        best.append(running)
    metric = str(study.summary.get("metric", "value"))
    numbers = [n for n, _ in done]
    series = [Series(f"{metric} (completed trials)", numbers, [v for _, v in done]),
              Series("best so far", numbers, best, dashed=True)]
    return f"{metric} by trial", line_chart(metric, series, x_label="trial")
