"""Atomic file writes used for every file of a run folder."""

from __future__ import annotations

import os
import stat

import pytest

from deepscope.training.callbacks import atomic_write, atomic_write_text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_writes_get_the_permissions_open_would_give(tmp_path):
    """mkstemp alone gives 0600, which hides run folders from colleagues on a shared cluster."""
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write(tmp_path / "b.bin", lambda f: f.write(b"y"))
    with open(tmp_path / "c.txt", "w") as f:  # the reference: a plain open()
        f.write("z")
    expected = stat.S_IMODE((tmp_path / "c.txt").stat().st_mode)
    assert expected == 0o666 & ~_umask()
    for name in ("a.txt", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    assert (tmp_path / "a.txt").read_text() == "x" and (tmp_path / "b.bin").read_bytes() == b"y"


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "last.ckpt"
    atomic_write_text(target, "good")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "good"
    assert not list(tmp_path.glob(".*.tmp"))


def test_metrics_csv_is_rewritten_only_when_an_epoch_row_changes(tmp_path):
    """Lightning saves the loggers after every step-level log_metrics; metrics.csv has only epoch rows."""
    from deepscope.training.callbacks import EpochCSVLogger

    path = tmp_path / "metrics.csv"
    logger = EpochCSVLogger(path)
    logger.log_metrics({"train_loss_step": 0.5, "epoch": 0}, step=9)
    logger.save()
    assert not path.exists()  # nothing per epoch yet: no file written
    logger.log_metrics({"train_loss": 0.4, "val_loss": 0.45, "epoch": 0}, step=63)
    logger.save()
    first = path.stat()
    assert path.read_text().splitlines() == ["epoch,step,train_loss,val_loss", "0,63,0.4,0.45"]
    for step in (73, 83):  # step-level values of the next epoch: the file is left alone
        logger.log_metrics({"train_loss_step": 0.3, "epoch": 1}, step=step)
        logger.save()
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    logger.log_metrics({"train_loss": 0.2, "epoch": 1}, step=127)
    logger.finalize("success")
    assert path.read_text().splitlines()[-1] == "1,127,0.2,"


def test_a_resumed_csv_logger_rewrites_the_file_without_the_epochs_trained_again(tmp_path):
    from deepscope.training.callbacks import EpochCSVLogger

    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss\n0,9,0.5\n1,19,0.4\n2,29,0.3\n")
    logger = EpochCSVLogger(path, resume_epoch=2)
    logger.save()
    assert path.read_text() == "epoch,step,train_loss\n0,9,0.5\n1,19,0.4\n"
