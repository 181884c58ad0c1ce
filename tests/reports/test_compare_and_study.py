"""The comparison of runs (config diff, metrics side by side, curves overlaid) and the study report."""

from __future__ import annotations

import json
import re

import pytest

from deepscope import cli
from deepscope.reports import write_comparison, write_report, write_study_report
from deepscope.reports.folders import ReportError

pytestmark = pytest.mark.slow


def test_comparison_shows_the_differing_keys_metrics_and_overlaid_curves(trained_run, other_run, tmp_path):
    text = write_comparison([trained_run, other_run], tmp_path / "cmp.html").read_text()
    diff = text[text.index('id="config"'):text.index('id="metrics"')]
    assert "<code>train.batch_size</code></td><td>32</td><td>16</td>" in diff
    assert "<code>name</code>" not in diff and "train.epochs" not in diff  # only what differs
    # final metrics side by side, one column per run
    assert "<th>digits-small</th><th>digits-b16</th>" in text
    # one chart per column of metrics.csv, a line per run and a legend naming both
    charts = re.findall(r'<svg [^>]*aria-label="([^"]+)"', text)
    assert {"val_loss", "train_loss", "val_accuracy", "train_accuracy", "lr", "epoch_time"} == set(charts)
    val_loss = text[text.index('aria-label="val_loss"'):]
    val_loss = val_loss[:val_loss.index("</svg>")]
    assert val_loss.count("<polyline") == 2 and ">digits-small<" in val_loss and ">digits-b16<" in val_loss
    # the runs link to their own reports
    assert "report.html" in text and "<a href=" in text


def test_comparison_is_never_written_over_an_existing_file_without_force(trained_run, other_run, tmp_path,
                                                                        monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", str(trained_run), str(other_run)]) == 0
    first = (tmp_path / "comparison.html").read_text()
    assert cli.main(["report", str(trained_run), str(other_run)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err
    assert (tmp_path / "comparison.html").read_text() == first
    assert cli.main(["report", str(other_run), str(trained_run), "-o", "b.html", "--force"]) == 0
    assert "digits-b16 vs digits-small" in (tmp_path / "b.html").read_text()


def test_one_folder_with_output_is_refused(trained_run, capsys):
    assert cli.main(["report", str(trained_run), "-o", "x.html"]) == 2
    assert "report.html" in capsys.readouterr().err


def test_study_report(study_folder):
    text = write_study_report(study_folder).read_text()
    # summary: the study, its storage, objective, counts and the best trial with its params and run
    assert "lr-search" in text and "sqlite:///" in text and "minimize val_loss" in text
    assert "COMPLETE 2" in text and "FAIL 1" in text and "PRUNED 1" in text
    assert "Best trial: #1, val_loss = 0.42" in text and "<code>model.cnn.n_init_filters</code>" in text
    assert 'href="trials/trial-0001/report.html"' in text
    # the trial table: one row per trial, the failure with its (escaped) error, a column per parameter
    trials = text[text.index('id="trials"'):text.index('id="objective"')]
    assert trials.count("<tr") == 5 and trials.count('class="fail"') == 1
    assert "&lt;img src=x onerror=alert(1)&gt;" in trials and "<img src=x" not in text
    assert "<th>train.lr</th>" in trials and "trials/trial-0002" in trials
    # figures (the two present), best_config.yaml, the objective drawn from trials.csv, the stage
    assert text.count("<img ") == 2 + 1  # the study's two and the stage's one
    assert "lr: 0.003" in text and 'aria-label="val_loss"' in text
    assert 'id="stage-coarse"' in text and "lr-search/coarse" in text


def test_study_folder_alone_on_the_command_line(study_folder, capsys):
    assert cli.main(["report", str(study_folder)]) == 0
    assert "study report" in (study_folder / "report.html").read_text()


def test_study_without_completed_trials(tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({
        "study": "empty", "storage": "", "metric": "val_loss", "direction": "maximize", "n_trials": 3,
        "counts": {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 1, "WAITING": 2}, "best": None,
        "updated": "2026-12-07T04:00:00+00:00"}))
    text = write_report(tmp_path).read_text()
    assert "no trial has completed yet" in text and "no trials.csv yet" in text


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot be read as JSON"),
    (json.dumps({"study": "s", "metric": "val_loss"}), "missing or wrong type: 'direction' (str)"),
])
def test_bad_study_json_exits_2(tmp_path, capsys, content, message):
    (tmp_path / "study.json").write_text(content)
    with pytest.raises(ReportError, match=re.escape(message)):
        write_study_report(tmp_path)
    assert cli.main(["report", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
