"""report.html of a run: written by training, showing the config, the metrics, every figure, the model,
the data, the environment and the timing; user text escaped; a failure never costs the run."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil

import pytest
import yaml

from deepscope import cli
from deepscope.errors import CheckpointError
from deepscope.reports import report_after_training, write_report, write_run_report
from deepscope.reports.folders import ReportError
from tests.reports.conftest import copy_run

pytestmark = pytest.mark.slow


def test_training_writes_the_report_and_run_info(trained_run):
    assert (trained_run / "report.html").is_file()
    info = json.loads((trained_run / "run_info.json").read_text())
    session = info["sessions"][-1]
    assert 0 < session["wall_time_s"] < 600 and session["started"] <= session["finished"]
    assert info["samples"] == {"train": 210, "val": 45, "test": 45}
    env = info["environment"]
    assert {"deepscope", "torch", "lightning", "numpy"} <= set(env["packages"]) and env["python"].count(".") == 2


def test_report_shows_config_metrics_curves_model_data_environment_timing(trained_run):
    text = write_run_report(trained_run).read_text()
    # the config, as stored
    assert "digits-small" in text and "sklearn_digits" in text and "batch_size: 32" in text
    # every final metric, formatted as in the table
    final = json.loads((trained_run / "final_metrics.json").read_text())
    for split, values in final.items():
        for name, value in values.items():
            assert f"<td>{name}</td>" in text
            assert f">{value:.4g}<" in text, (split, name)
    # a chart per curve: loss, accuracy, epoch time, and the lr of every step
    svgs = re.findall(r"<svg [^>]*aria-label=\"([^\"]+)\"", text)
    assert {"loss", "accuracy", "epoch time (s)", "learning rate"} <= set(svgs)
    assert text.count("<polyline") >= 4
    # the model summary, the data, the environment and the timing
    assert "Total params: 4,386" in text and "(B, 10)" in text
    assert "label, per-sample shape ()" in text and "10 classes" in text and ">210<" in text
    assert "lightning" in text and "Packages" in text
    assert "Training sessions" in text and "best.ckpt" in text and "mean per epoch" in text
    assert "https://" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_every_figure_is_embedded(trained_run):
    figures = sorted((trained_run / "figures").rglob("*.png"))
    assert len(figures) >= 4  # architecture, learning curves, confusion matrices, misclassified
    text = write_run_report(trained_run).read_text()
    assert text.count("<img ") == len(figures)
    for png in figures:
        assert base64.b64encode(png.read_bytes()).decode() in text, png.name
        assert png.stem in text


def test_user_text_is_escaped(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "escaped", "<script>alert('run')</script>")
    shutil.copy(run / "figures" / "architecture.png", run / "figures" / "<b>bold&co.png")
    text = write_run_report(run).read_text()
    assert "<script>" not in text and "<b>bold" not in text
    assert "&lt;script&gt;alert(&#x27;run&#x27;)&lt;/script&gt;" in text and "&lt;b&gt;bold&amp;co" in text


def test_a_report_that_cannot_be_written_is_a_warning_not_a_lost_run(trained_run, tmp_path, caplog):
    run = copy_run(trained_run, tmp_path / "broken", "broken")
    (run / "metrics.csv").write_text("epoch,step,val_loss\n0,6,not-a-number\n")
    with caplog.at_level(logging.WARNING, logger="deepscope"):
        assert report_after_training(run, {"train": 1}) is None
    assert "was not written" in caplog.text and "metrics.csv" in caplog.text and "deepscope report" in caplog.text
    assert not (run / "report.html").exists()
    assert (run / "run_info.json").is_file()  # what could be recorded was


def test_corrupt_metrics_csv_is_a_report_error_naming_the_line(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "corrupt", "corrupt")
    (run / "metrics.csv").write_text("epoch,step,val_loss\n0,6,1.5\n1,12,oops\n")
    with pytest.raises(ReportError, match=r"metrics.csv' is corrupt: line 3, column 'val_loss' is 'oops'"):
        write_run_report(run)
    assert cli.main(["report", str(run)]) == 2
    assert "is corrupt" in capsys.readouterr().err


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "not found"),
    (lambda p: p, "is not a run folder"),
])
def test_a_folder_that_is_no_run_exits_2(tmp_path, capsys, make, message):
    (tmp_path / "notes.txt").write_text("not a run")
    folder = make(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        write_report(folder)
    assert cli.main(["report", str(folder)]) == 2
    assert message in capsys.readouterr().err


def test_cli_rewrites_the_report(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "again", "again")
    assert not (run / "report.html").exists()
    assert cli.main(["report", str(run)]) == 0
    assert f"wrote {run / 'report.html'}" in capsys.readouterr().out
    assert "again" in (run / "report.html").read_text()


def test_an_unfinished_run_says_so(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "unfinished", "unfinished")
    for name in ("final_metrics.json", "run_info.json"):
        (run / name).unlink()
    text = write_run_report(run).read_text()
    assert "not finished" in text and "no final metrics" in text and "not recorded" in text


def test_phased_folder_links_and_summarises_its_phases(phased_root):
    for run in ("views", "head"):
        write_run_report(phased_root / run)
    text = write_report(phased_root).read_text()
    assert 'href="views/report.html"' in text and 'href="head/report.html"' in text
    assert "<td>views</td>" in text and "<td>head</td>" in text
    assert "val_loss" in text and text.count("<svg ") >= 4
    assert re.search(r"<td>views</td>.*?<td>head</td>", text, re.S)  # the phases in their order


def test_config_yaml_that_is_not_a_mapping_is_a_report_error(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "odd", "odd")
    (run / "config.yaml").write_text(yaml.safe_dump(["a", "list"]))
    with pytest.raises(ReportError, match="expected a mapping"):
        write_run_report(run)


def test_the_end_of_a_later_phase_refreshes_the_phased_report(phased_root, caplog):
    """A phase that finishes (here 'head') writes its report and the report of the folder of its phases."""
    (phased_root / "report.html").unlink(missing_ok=True)
    assert report_after_training(phased_root / "head", {"train": 210}) == phased_root / "head" / "report.html"
    text = (phased_root / "report.html").read_text()
    assert 'href="head/report.html"' in text and "phased experiment" in text
