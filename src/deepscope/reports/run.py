"""``report.html`` of one run folder, and of the folder that holds a phased experiment's runs.

A run's page shows: a summary (status, best epoch, test scores, time), the final metrics, the curves
of ``metrics.csv`` and ``lr.csv`` (inline SVG), every figure of ``figures/`` (embedded), the model
summary, the data (input shapes, samples per split), the config, the environment and versions, and
the timing. Written at the end of training and by ``deepscope report RUN``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from deepscope.reports.folders import ReportError, RunData, finite, read_run
from deepscope.reports.html import (Raw, Section, esc, figure_grid, fmt_number, fmt_seconds, kv_table, page, pre,
                                    table, write_page)
from deepscope.reports.svg import Series, line_chart

__all__ = ["REPORT_FILE", "best_epoch", "charts_html", "metric_charts", "metrics_table", "render_run", "status",
           "wall_time", "write_phased_report", "write_run_report"]

REPORT_FILE = "report.html"
_MAX_POINTS = 2000  # lr.csv has a row per optimizer step; a chart needs no more points than pixels


def write_run_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` (replacing it) and return its path.

    Raises:
        CheckpointError: ``run_dir`` is not a run folder.
        ReportError: a file of the run is damaged (the message names it).
    """
    run = read_run(run_dir)
    return write_page(run.path / REPORT_FILE, render_run(run))


def render_run(run: RunData) -> str:
    """The run's page as HTML text."""
    sections = [Section("summary", "Summary", _summary(run)),
                Section("metrics", "Final metrics", metrics_table(run)),
                Section("curves", "Curves", _curves(run)),
                Section("figures", "Figures", figure_grid(run.figures) if run.figures
                        else '<p class="note">no figures (log.figures: false, or the run did not finish)</p>'),
                Section("model", "Model", pre(run.summary) if run.summary
                        else '<p class="note">no model_summary.txt</p>'),
                Section("data", "Data", _data(run)),
                Section("config", "Config", _config(run)),
                Section("environment", "Environment", _environment(run)),
                Section("timing", "Timing", _timing(run))]
    return page("run report", run.name, str(run.path.resolve()), sections)


# --- summary and metrics ---------------------------------------------------------------------------


def _monitor(run: RunData) -> tuple[str, str]:
    from deepscope.training.task import monitor_mode

    monitor = str((run.config.get("train") or {}).get("monitor") or "val_loss")
    return monitor, monitor_mode(monitor)


def best_epoch(run: RunData) -> tuple[str, int, float] | None:
    """(monitor, epoch counted from 1, value) of the best epoch by ``train.monitor``, or None."""
    monitor, mode = _monitor(run)
    values = [(finite(v), e) for v, e in zip(run.column(monitor), run.epochs) if finite(v) is not None]
    if not values:
        return None
    value, epoch = (min if mode == "min" else max)(values)
    return monitor, int(epoch), value


def _params(summary: str) -> str | None:
    match = re.search(r"Total params:\s*([\d,]+)", summary)
    return match.group(1) if match else None


def wall_time(run: RunData) -> float | None:
    """Seconds of every recorded training session (run_info.json), or None when none was recorded."""
    sessions = (run.info or {}).get("sessions") or []
    times = [finite(s.get("wall_time_s")) for s in sessions]
    return sum(t for t in times if t is not None) if sessions else None


def status(run: RunData) -> tuple[str, str]:
    """(text, pill class): finished when final_metrics.json exists."""
    if run.final:
        return "finished", "ok"
    if run.rows:
        return "not finished", "warn"
    return "no epoch recorded", "bad"


def _family(run: RunData) -> str:
    """The task family the run's config trains (``task:``, or the one that claims it)."""
    from deepscope.config import load_config
    from deepscope.errors import DeepscopeError
    from deepscope.tasks.base import family_name

    try:
        return family_name(load_config(run.config))
    except DeepscopeError:  # a config of an older version: what it says
        return str(run.config.get("task") or "?")


def _card(label: str, value: str) -> str:
    return f'<div class="card"><div class="label">{esc(label)}</div><div class="value">{esc(value)}</div></div>'


def _summary(run: RunData) -> str:
    text, cls = status(run)
    model = run.config.get("model") or {}
    cards = [_card("architecture", str(model.get("architecture", "?"))),
             _card("task family", _family(run)),
             _card("epochs trained", str(len(run.rows)))]
    best = best_epoch(run)
    if best:
        cards.append(_card(f"best {best[0]}", f"{fmt_number(best[2])} (epoch {best[1]})"))
    for split in ("test", "val"):
        scores = run.final.get(split) or {}
        if "loss" in scores:
            cards.append(_card(f"{split} loss", fmt_number(scores["loss"])))
            break
    params = _params(run.summary)
    if params:
        cards.append(_card("parameters", params))
    cards.append(_card("training time", fmt_seconds(wall_time(run))))
    data = run.config.get("data") or {}
    return (f'<p>Status: <span class="pill {cls}">{esc(text)}</span> · data source '
            f"<code>{esc(data.get('source', '?'))}</code></p>" + f'<div class="cards">{"".join(cards)}</div>')


def metrics_table(run: RunData) -> str:
    """Final metrics (final_metrics.json) and later evaluations (evaluation/): a row per metric, a column per split."""
    columns = [(split, values) for split, values in run.final.items()] + \
              [(f"{split} (deepscope evaluate)", values) for split, values in run.evaluation.items()]
    if not columns:
        return '<p class="note">no final metrics: the run has not finished (final_metrics.json is written at the end)</p>'
    names: list[str] = []
    for _, values in columns:
        names += [k for k in values if k not in names]
    rows = [[name, *(fmt_number(values.get(name)) for _, values in columns)] for name in names]
    return table(["metric", *(c for c, _ in columns)], rows, numeric=range(1, len(columns) + 1))


# --- curves ----------------------------------------------------------------------------------------


def _chart_groups(columns: list[str]) -> list[tuple[str, list[str]]]:
    """(title, columns) of each chart: train_x and val_x together, then lr and the epoch time."""
    groups: dict[str, list[str]] = {}
    for c in columns:
        if c in ("epoch", "step"):
            continue
        base = c.split("_", 1)[1] if c.startswith(("train_", "val_")) else c
        groups.setdefault(base, []).append(c)
    order = sorted(groups, key=lambda b: (b != "loss", b in ("lr", "epoch_time"), b == "epoch_time", b))
    return [(base, sorted(groups[base], key=lambda c: not c.startswith("train_"))) for base in order]


def metric_charts(run: RunData) -> list[tuple[str, str]]:
    """(title, SVG) of every curve of the run's ``metrics.csv``."""
    charts = []
    x = run.epochs
    for base, cols in _chart_groups(run.columns):
        series = [Series(c, x, run.column(c), dashed=c.startswith("train_") and len(cols) > 1) for c in cols]
        title = {"lr": "learning rate (per epoch)", "epoch_time": "epoch time (s)"}.get(base, base)
        charts.append((title, line_chart(title, series)))
    return charts


def _lr_chart(run: RunData) -> tuple[str, str] | None:
    path = run.path / "lr.csv"
    if not path.is_file():
        return None
    try:
        columns, rows = _read_numbers(path)
    except Exception:  # noqa: BLE001 - an unreadable lr log only loses its chart
        return None
    if len(rows) < 2 or "lr" not in columns:
        return None
    every = max(1, len(rows) // _MAX_POINTS)
    rows = rows[::every]
    steps = [r.get("step") or 0.0 for r in rows]
    series = [Series("lr", steps, [r.get("lr") for r in rows])]
    if "momentum" in columns:
        return ("learning rate per optimizer step", line_chart("lr", series, x_label="optimizer step")
                + line_chart("momentum", [Series("momentum", steps, [r.get("momentum") for r in rows])],
                             x_label="optimizer step"))
    return "learning rate per optimizer step", line_chart("learning rate", series, x_label="optimizer step")


def _read_numbers(path: Path) -> tuple[list[str], list[dict[str, float | None]]]:
    """A CSV of numbers (lr.csv), read as metrics.csv is, without requiring an epoch column."""
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        return columns, [{k: finite(v) for k, v in r.items() if k is not None} for r in reader]


def charts_html(charts: list[tuple[str, str]]) -> str:
    """(title, SVG) pairs as a grid of titled charts."""
    return '<div class="charts">' + "".join(f'<div class="chart"><h3>{esc(t)}</h3>{svg}</div>'
                                            for t, svg in charts) + "</div>"


def _curves(run: RunData) -> str:
    if not run.rows:
        return '<p class="note">no epoch recorded in metrics.csv yet</p>'
    charts = metric_charts(run)
    lr = _lr_chart(run)
    if lr:
        charts = [c for c in charts if not c[0].startswith("learning rate")] + [lr]
    note = (f'<p class="note">{len(run.rows)} epoch{"s" if len(run.rows) != 1 else ""} from metrics.csv '
            "(train dashed, validation solid); epochs count from 1</p>")
    return note + charts_html(charts)


# --- data, config, environment, timing -------------------------------------------------------------


def _data(run: RunData) -> str:
    parts = []
    spec = run.input_spec
    if spec:
        items = [(f"image '{name}'", f"{s.get('channels')} channel(s) × {' × '.join(map(str, s.get('spatial', [])))}")
                 for name, s in (spec.get("images") or {}).items()]
        if spec.get("scalars"):
            items.append(("scalars", f"{spec['scalars']} features"))
        if spec.get("tracks"):
            items.append(("tracks", f"up to {spec['tracks'][0]} tracks × {spec['tracks'][1]} features"))
        target = f"{spec.get('target_kind')}, per-sample shape {tuple(spec.get('target_shape') or ())}"
        if spec.get("n_classes"):
            target += f", {spec['n_classes']} classes"
        items.append(("target", target))
        if spec.get("target_names"):
            items.append(("target names", ", ".join(map(str, spec["target_names"]))))
        items.append(("sample weights", "yes" if spec.get("sample_weights") else "no"))
        if spec.get("multiply_output_with"):
            items.append(("output multiplied by", "a per-sample factor (multiply_output_with)"))
        parts.append("<h3>Inputs and target (input_spec.json)</h3>" + kv_table(items))
    samples = (run.info or {}).get("samples") or {}
    if samples:
        parts.append("<h3>Samples per split</h3>" + table(["split", "samples"], list(samples.items()), numeric=[1]))
    else:
        parts.append('<p class="note">samples per split: not recorded (run_info.json is written at the end of '
                     "training)</p>")
    data = run.config.get("data")
    if data:
        parts.append("<h3>data section of the config</h3>" + pre(yaml.safe_dump(data, sort_keys=False)))
    return "".join(parts)


def _config(run: RunData) -> str:
    text = (run.path / "config.yaml").read_text(encoding="utf-8", errors="replace")
    return '<p class="note">the resolved config.yaml: every default filled in</p>' + pre(text)


def _environment(run: RunData) -> str:
    env = (run.info or {}).get("environment")
    train = run.config.get("train") or {}
    asked = kv_table([(k, str(train.get(k))) for k in ("accelerator", "devices", "precision", "strategy")
                      if k in train])
    if not env:
        return ('<p class="note">not recorded: run_info.json is written when training ends (this run has none)'
                "</p><h3>Asked for in the config</h3>" + asked)
    items = [("python", env.get("python")), ("platform", env.get("platform")), ("host", env.get("hostname")),
             ("CPUs", env.get("cpus")), ("torch threads", env.get("torch_threads")),
             ("CUDA (torch build)", env.get("cuda") or "none"), ("GPUs", ", ".join(env.get("gpus") or []) or "none")]
    packages = env.get("packages") or {}
    return ("<h3>Machine</h3>" + kv_table([(k, v) for k, v in items if v is not None])
            + "<h3>Packages</h3>" + table(["package", "version"], list(packages.items()))
            + "<h3>Asked for in the config</h3>" + asked)


def _mtime(path: Path) -> str:
    return datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _timing(run: RunData) -> str:
    parts = []
    sessions = (run.info or {}).get("sessions") or []
    if sessions:
        rows = [(s.get("started", ""), s.get("finished", ""), fmt_seconds(finite(s.get("wall_time_s"))))
                for s in sessions]
        parts.append("<h3>Training sessions</h3>" + table(["started", "finished", "wall time"], rows)
                     + '<p class="note">a session runs from the start of training (config.yaml written) to the '
                     "end of the final evaluation; a resumed run has one per start</p>")
    else:
        parts.append('<p class="note">wall time: not recorded (run_info.json is written when training ends)</p>')
    times = [t for t in (finite(v) for v in run.column("epoch_time")) if t is not None]
    if times:
        parts.append("<h3>Epochs (epoch_time in metrics.csv: training and validation)</h3>" + kv_table([
            ("epochs", len(times)), ("total", fmt_seconds(sum(times))),
            ("mean per epoch", fmt_seconds(sum(times) / len(times))),
            ("fastest / slowest", f"{fmt_seconds(min(times))} / {fmt_seconds(max(times))}")]))
    checkpoints = sorted((run.path / "checkpoints").glob("*.ckpt"))
    if checkpoints:
        rows = [(p.name, f"{p.stat().st_size / 1e6:.2f} MB", _mtime(p)) for p in checkpoints]
        parts.append("<h3>Checkpoints</h3>" + table(["file", "size", "saved"], rows, numeric=[1]))
    return "".join(parts)


# --- phased experiments ----------------------------------------------------------------------------


def _phase_runs(root: Path) -> list[dict[str, Any]]:
    """The runs of a phased experiment: phases.json's, then run folders it does not list yet (the phase
    that is finishing when the report is refreshed at its end)."""
    from deepscope.tasks.phased import PHASES_FILE

    try:
        record = json.loads((root / PHASES_FILE).read_text(encoding="utf-8"))
        phases = record["phases"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"'{root / PHASES_FILE}' cannot be read ({type(exc).__name__}: {exc})") from None
    runs = [{"phase": p.get("name"), "view": r.get("view"), "path": Path(r["run"]),
             "built_from": r.get("built_from") or []} for p in phases for r in p.get("runs", [])]
    listed = {r["path"].name for r in runs}
    later = sorted((p for p in root.iterdir() if (p / "config.yaml").is_file() and p.name not in listed),
                   key=lambda p: p.stat().st_mtime)
    runs += [{"phase": p.name, "view": None, "path": p, "built_from": []} for p in later]
    for r in runs:
        if not r["path"].is_absolute() and not r["path"].exists():
            r["path"] = root / r["path"].name
    return runs


def write_phased_report(root: str | Path) -> Path:
    """Write ``<root>/report.html`` for the folder of a phased experiment: each phase's runs, their final
    metrics, links to their own reports, and their curves overlaid.

    Raises:
        ReportError: phases.json cannot be read.
    """
    from deepscope.reports.compare import overlay_charts

    root = Path(root)
    runs = _phase_runs(root)
    loaded: list[RunData] = []
    rows = []
    for r in runs:
        run = read_run(r["path"])
        loaded.append(run)
        report = run.path / REPORT_FILE
        link = (Raw(f'<a href="{esc(Path(os.path.relpath(report, root)).as_posix())}">{esc(run.path.name)}</a>')
                if report.is_file() else run.path.name)
        split = "test" if "test" in run.final else "val"
        scores = ", ".join(f"{k} {fmt_number(v)}" for k, v in (run.final.get(split) or {}).items()
                           if not k.startswith("baseline"))
        built = ", ".join(Path(b).name for b in r["built_from"]) or "—"
        rows.append((r["phase"], r["view"] or "—", link, built, len(run.rows), status(run)[0],
                     f"{split}: {scores}" if scores else "—"))
    sections = [Section("phases", "Phases", '<p class="note">each run is an ordinary run folder with its own '
                        "report; later phases start from the weights of earlier ones</p>"
                        + table(["phase", "view", "run", "built from", "epochs", "status", "final metrics"], rows,
                                numeric=[4])),
                Section("curves", "Curves", '<p class="note">every phase\'s run overlaid, by epoch of its own '
                        "training</p>" + charts_html(overlay_charts(loaded, [r.path.name for r in loaded])))]
    return write_page(root / REPORT_FILE, page("phased experiment", root.name, str(root.resolve()), sections))

