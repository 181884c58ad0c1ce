"""A page comparing runs side by side: what their configs set differently, their final metrics, and
their curves overlaid (one chart per metric, one line per run). ``deepscope report RUN_A RUN_B ...``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from deepscope.reports.folders import ReportError, RunData, read_run
from deepscope.reports.html import Raw, Section, esc, fmt_number, fmt_seconds, page, table, write_page
from deepscope.reports.run import REPORT_FILE, best_epoch, charts_html, status, wall_time
from deepscope.reports.svg import PALETTE, Series, line_chart

__all__ = ["overlay_charts", "write_comparison"]

_SKIPPED_KEYS = {"name"}  # every run's name differs; it heads its column instead


def write_comparison(run_dirs: Sequence[str | Path], output: str | Path, overwrite: bool = False) -> Path:
    """Write a comparison of ``run_dirs`` to ``output`` and return its path.

    Args:
        run_dirs: two or more run folders.
        output: the HTML file to write.
        overwrite: replace ``output`` when it exists; otherwise it is refused and kept.

    Raises:
        ReportError: fewer than two runs, or ``output`` exists and ``overwrite`` is false.
        CheckpointError: a folder is not a run folder.
    """
    if len(run_dirs) < 2:
        raise ReportError(f"a comparison needs two or more run folders; got {len(run_dirs)}")
    output = Path(output)
    if output.exists() and not overwrite:
        raise ReportError(f"'{output}' exists; choose another path with -o, or pass --force to replace it")
    if output.is_dir():
        raise ReportError(f"'{output}' is a folder; give the HTML file to write, e.g. -o {output / 'comparison.html'}")
    runs = [read_run(p) for p in run_dirs]
    labels = _labels(runs)
    sections = [Section("runs", "Runs", _runs_table(runs, labels, output.parent)),
                Section("config", "Config differences", _config_diff(runs, labels)),
                Section("metrics", "Final metrics", _metrics(runs, labels)),
                Section("curves", "Curves", '<p class="note">one line per run, by epoch</p>'
                        + charts_html(overlay_charts(runs, labels)))]
    title = " vs ".join(labels) if len(labels) <= 3 else f"{len(labels)} runs"
    return write_page(output, page("run comparison", title, f"{len(runs)} runs compared", sections))


def _labels(runs: Sequence[RunData]) -> list[str]:
    """Each run's name, or its path when two runs share a name (versions in different log.dirs)."""
    names = [r.name for r in runs]
    return [str(r.path) if names.count(r.name) > 1 else r.name for r in runs]


def _link(run: RunData, label: str, base: Path) -> Raw | str:
    report = run.path / REPORT_FILE
    if not report.is_file():
        return label
    href = Path(os.path.relpath(report.resolve(), base.resolve())).as_posix()
    return Raw(f'<a href="{esc(href)}">{esc(label)}</a>')


def _runs_table(runs: Sequence[RunData], labels: list[str], base: Path) -> str:
    rows = []
    for run, label in zip(runs, labels):
        best = best_epoch(run)
        rows.append((_link(run, label, base), str(run.path), status(run)[0], len(run.rows),
                     f"{best[0]} {fmt_number(best[2])} (epoch {best[1]})" if best else "—",
                     fmt_seconds(wall_time(run))))
    return table(["run", "folder", "status", "epochs", "best epoch", "training time"], rows, numeric=[3])


def _show(value: object) -> str:
    if type(value) is object:  # config_diff's marker of a key one config does not have
        return "(absent)"
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _config_diff(runs: Sequence[RunData], labels: list[str]) -> str:
    from deepscope.training.run import _flatten, config_diff

    keys: list[str] = []
    for other in runs[1:]:
        keys += [k for k, _, _ in config_diff(runs[0].config, other.config) if k not in keys]
    keys = sorted(k for k in keys if k not in _SKIPPED_KEYS)
    if not keys:
        return '<p class="note">the configs are the same (but for the run names)</p>'
    flat = [_flatten(r.config) for r in runs]
    missing = object()
    rows = [[Raw(f"<code>{esc(k)}</code>"), *(_show(f.get(k, missing)) for f in flat)] for k in keys]
    return (f'<p class="note">{len(keys)} setting{"s" if len(keys) != 1 else ""} differ (dotted keys of '
            "config.yaml)</p>" + table(["key", *labels], rows))


def _metrics(runs: Sequence[RunData], labels: list[str]) -> str:
    from deepscope.training.task import monitor_mode

    splits = list(dict.fromkeys(s for r in runs for s in r.final))
    if not splits:
        return '<p class="note">none of the runs has final metrics yet</p>'
    rows, keys = [], []
    for split in splits:
        for name in dict.fromkeys(k for r in runs for k in (r.final.get(split) or {})):
            keys.append((split, name))
    for split, name in keys:
        values = [(r.final.get(split) or {}).get(name) for r in runs]
        numbers = [v for v in values if isinstance(v, (int, float))]
        best = None
        if len(numbers) > 1 and len(set(numbers)) > 1 and not name.startswith("baseline"):
            best = (max if monitor_mode(f"val_{name}") == "max" else min)(numbers)
        rows.append([split, name, *(Raw(esc(fmt_number(v)), "best") if v is not None and v == best
                                    else fmt_number(v) for v in values)])
    return ('<p class="note">final_metrics.json of each run; the best value of a row is green</p>'
            + table(["split", "metric", *labels], rows, numeric=range(2, 2 + len(runs))))


def _order(column: str) -> tuple:
    base = column.split("_", 1)[1] if column.startswith(("train_", "val_")) else column
    return (column in ("lr", "epoch_time"), column == "epoch_time", base != "loss", base,
            not column.startswith("val_"))


def overlay_charts(runs: Sequence[RunData], labels: Sequence[str]) -> list[tuple[str, str]]:
    """(title, SVG) per metrics.csv column of any run: one line per run that has it."""
    columns = list(dict.fromkeys(c for r in runs for c in r.columns if c not in ("epoch", "step")))
    charts = []
    for column in sorted(columns, key=_order):
        series = [Series(label, run.epochs, run.column(column), colour=PALETTE[i % len(PALETTE)])
                  for i, (run, label) in enumerate(zip(runs, labels)) if column in run.columns]
        charts.append((column, line_chart(column, series)))
    return charts
