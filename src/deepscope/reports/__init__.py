"""Self-contained HTML reports: one ``report.html`` per run, per phased experiment and per study, and
a page comparing runs side by side (docs/reports.md).

A report is one file that opens offline: inline CSS, figures embedded as ``data:`` URIs, curves drawn
as inline SVG, no script. Every training run writes its own at the end (:func:`report_after_training`);
``deepscope report`` writes them again, or compares runs.
"""

from __future__ import annotations

from pathlib import Path

from deepscope.reports.compare import write_comparison
from deepscope.reports.folders import ReportError, is_phased_folder, is_study_folder
from deepscope.reports.record import record_run_info, report_after_training
from deepscope.reports.run import REPORT_FILE, write_phased_report, write_run_report
from deepscope.reports.study import write_study_report

__all__ = ["REPORT_FILE", "ReportError", "record_run_info", "report_after_training", "write_comparison",
           "write_phased_report", "write_report", "write_run_report", "write_study_report"]


def write_report(folder: str | Path) -> Path:
    """Write ``<folder>/report.html`` for what the folder is: a study, a phased experiment, or a run.

    Raises:
        CheckpointError: the folder does not exist or is none of these.
        ReportError: a file the report reads is damaged.
    """
    path = Path(folder)
    if is_study_folder(path):
        return write_study_report(path)
    if is_phased_folder(path):
        return write_phased_report(path)
    return write_run_report(path)
