"""Fixtures of the report tests: one tiny trained run (trained once per worker), a second run made from
it with another config, a phased experiment's folder, and a hand-made study folder in the layout
``deepscope tune`` writes (docs/reports.md)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import small_config


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A finished run of 2 epochs on the digits (report.html written by training itself)."""
    import deepscope

    runs = tmp_path_factory.mktemp("report-runs")
    cfg = small_config(runs, name="digits-small",
                       train={"epochs": 2, "batch_size": 32, "loss": "cross_entropy", "metrics": ["accuracy"],
                              "optimizer": "adam"})
    return deepscope.train(cfg).run_dir


def copy_run(run: Path, dest: Path, name: str, changes: dict[str, dict[str, object]] | None = None,
             scale: float = 1.0) -> Path:
    """A copy of ``run`` named ``name``, its config changed by ``changes`` ({section: {key: value}}) and its
    metrics.csv losses multiplied by ``scale`` (so the curves differ)."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("report.html"))
    config = yaml.safe_load((dest / "config.yaml").read_text())
    config["name"] = name
    for section, values in (changes or {}).items():
        config[section].update(values)
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with (dest / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in row:
            if key.endswith("loss"):
                row[key] = repr(float(row[key]) * scale)
    with (dest / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dest


@pytest.fixture(scope="session")
def other_run(trained_run, tmp_path_factory) -> Path:
    """``trained_run`` with train.batch_size 16 and lower losses, as another run folder."""
    return copy_run(trained_run, tmp_path_factory.mktemp("other") / "digits-b16", "digits-b16",
                    {"train": {"batch_size": 16}}, scale=0.8)


def _png(path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 3), dpi=60)
    ax.plot([0, 1, 2, 3], [0.9, 0.5, 0.45, 0.3], marker="o")
    ax.set_title(title)
    fig.savefig(path)
    plt.close(fig)


def _study(folder: Path, name: str, trials: list[dict[str, object]], best: dict[str, object] | None,
           figures: tuple[str, ...], stages: list[str] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    counts = {state: sum(t["state"] == state for t in trials)
              for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
    summary = {"study": name, "storage": f"sqlite:///{folder}/study.db", "metric": "val_loss",
               "direction": "minimize", "n_trials": len(trials), "counts": counts, "best": best,
               "updated": "2026-12-07T04:00:00+00:00"}
    if stages is not None:
        summary["stages"] = stages
    (folder / "study.json").write_text(json.dumps(summary, indent=2))
    params = ["train.lr", "model.cnn.n_init_filters"]
    with (folder / "trials.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["number", "state", "value", "duration_s", "run", "error", *params])
        writer.writeheader()
        writer.writerows(trials)
    (folder / "best_config.yaml").write_text("name: best\ntrain:\n  lr: 0.003\n  batch_size: 32\n")
    for fig in figures:
        _png(folder / "figures" / f"{fig}.png", fig)


@pytest.fixture(scope="session")
def study_folder(trained_run, tmp_path_factory) -> Path:
    """A staged study folder: 4 trials (2 complete, 1 failed with an error holding markup, 1 pruned), two
    figures (parallel_coordinate.png missing), best_config.yaml, and a stage 'coarse' of its own; the
    best trial's run is a real run folder with its report."""
    study = tmp_path_factory.mktemp("study") / "lr-search"
    trials = [
        {"number": 0, "state": "COMPLETE", "value": 0.91, "duration_s": 12.5, "run": "trials/trial-0000",
         "error": "", "train.lr": 0.01, "model.cnn.n_init_filters": 4},
        {"number": 1, "state": "COMPLETE", "value": 0.42, "duration_s": 11.0, "run": "trials/trial-0001",
         "error": "", "train.lr": 0.003, "model.cnn.n_init_filters": 8},
        {"number": 2, "state": "FAIL", "value": "", "duration_s": 1.5, "run": "trials/trial-0002",
         "error": "DataError: <img src=x onerror=alert(1)> not found", "train.lr": 1.0, "model.cnn.n_init_filters": 4},
        {"number": 3, "state": "PRUNED", "value": "", "duration_s": 4.0, "run": "trials/trial-0003", "error": "",
         "train.lr": 0.0001, "model.cnn.n_init_filters": 16},
    ]
    best = {"number": 1, "value": 0.42, "params": {"train.lr": 0.003, "model.cnn.n_init_filters": 8},
            "run": "trials/trial-0001"}
    _study(study, "lr-search", trials, best, ("optimization_history", "param_importances"), stages=["coarse"])
    shutil.copytree(trained_run, study / "trials" / "trial-0001")
    _study(study / "stages" / "coarse", "lr-search/coarse", trials[:2], best, ("optimization_history",))
    return study


@pytest.fixture(scope="session")
def phased_root(trained_run, tmp_path_factory) -> Path:
    """The folder of a phased experiment: phases.json naming two phase runs ('views', 'head')."""
    root = tmp_path_factory.mktemp("phased") / "multi"
    first = copy_run(trained_run, root / "views", "views")
    second = copy_run(trained_run, root / "head", "head", {"train": {"lr": 0.0001}}, scale=0.7)
    record = {"phases": [
        {"name": "views", "runs": [{"run": str(first), "view": None, "built_from": [], "metrics": {}}]},
        {"name": "head", "runs": [{"run": str(second), "view": None, "built_from": [str(first)], "metrics": {}}]}]}
    (root / "phases.json").write_text(json.dumps(record))
    return root
