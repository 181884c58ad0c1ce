"""What a finished training run records for its report, and the hook that writes the report.

``run_info.json`` holds what nothing else in the run folder keeps: the software and machine the run
trained on, the samples per split, and each training session's start and end (a resumed run has
several). :func:`report_after_training` is called once at the end of every training run; it never
raises, so a report that cannot be written never costs the run.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from deepscope.reports.folders import RUN_INFO_FILE, is_phased_folder

__all__ = ["environment", "record_run_info", "report_after_training"]

log = logging.getLogger("deepscope")

PACKAGES = ("deepscope", "torch", "lightning", "numpy", "pydantic", "scikit-learn", "matplotlib", "h5py",
            "astropy", "uproot", "mlflow")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def environment() -> dict[str, Any]:
    """The software and hardware of this process: Python, the platform, package versions, devices."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count(),
        "packages": versions,
    }
    torch = sys.modules.get("torch")  # only when training loaded it: recording never imports torch
    if torch is not None:
        env["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["torch_threads"] = torch.get_num_threads()
    return env


def record_run_info(run_path: Path, samples: dict[str, int] | None = None) -> dict[str, Any]:
    """Write ``run_info.json``: this session (it started when config.yaml was last written, as every
    start of training rewrites it, and ends now), the environment and ``samples`` per split.

    Sessions recorded before are kept: a resumed run lists each of its sessions.
    """
    from deepscope.training.callbacks import atomic_write_text

    path = run_path / RUN_INFO_FILE
    sessions: list[dict[str, Any]] = []
    if path.is_file():
        try:
            sessions = list(json.loads(path.read_text(encoding="utf-8")).get("sessions", []))
        except (OSError, ValueError, AttributeError):
            sessions = []  # a damaged record is replaced; only the earlier sessions are lost
    end = _now()
    config = run_path / "config.yaml"
    start = datetime.datetime.fromtimestamp(config.stat().st_mtime, datetime.timezone.utc) if config.is_file() else end
    sessions.append({"started": start.isoformat(timespec="seconds"), "finished": end.isoformat(timespec="seconds"),
                     "wall_time_s": round((end - start).total_seconds(), 3)})
    info = {"format": 1, "sessions": sessions, "samples": dict(samples or {}), "environment": environment()}
    atomic_write_text(path, json.dumps(info, indent=2))
    return info


def report_after_training(run_path: Path, samples: dict[str, int] | None = None) -> Path | None:
    """At the end of a training run: record ``run_info.json`` and write ``report.html``; with a phased
    experiment, also refresh the report of the folder that holds its phases. Never raises.

    Returns:
        The report's path, or None when it could not be written (a warning names the error).
    """
    from deepscope.reports.run import write_phased_report, write_run_report

    run_path = Path(run_path)
    try:
        record_run_info(run_path, samples)
        written = write_run_report(run_path)
    except Exception as exc:  # the run is complete without its report: keep it, say why
        log.warning(f"the report of run {run_path} was not written ({type(exc).__name__}: {exc}); the run is "
                    f"complete; write it later with: deepscope report {run_path}")
        return None
    if is_phased_folder(run_path.parent):  # a later phase: phases.json exists from the first phase's end
        try:
            write_phased_report(run_path.parent)
        except Exception as exc:
            log.warning(f"the report of the phases in {run_path.parent} was not written ({type(exc).__name__}: "
                        f"{exc}); write it later with: deepscope report {run_path.parent}")
    return written
