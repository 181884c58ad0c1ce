"""log.weight_snapshots: weights/epoch_<n>.pt every n epochs and after the last, kept on resume."""

from __future__ import annotations

import pytest
import torch

import deepscope
from deepscope.training.snapshots import WeightSnapshots, save_weights, snapshot_name
from tests.conftest import small_config


def _cfg(runs_dir, epochs, every, figures=True):
    return small_config(runs_dir,
                        log={"dir": str(runs_dir), "progress_bar": "none", "tensorboard": False,
                             "weight_snapshots": {"every_n_epochs": every, "figures": figures}},
                        train={"epochs": epochs, "batch_size": 64, "loss": "cross_entropy", "optimizer": "adam"})


def test_snapshot_names_count_finished_epochs():
    assert snapshot_name(5) == "epoch_0005"
    assert snapshot_name(12345) == "epoch_12345"


def test_saved_weights_load_with_weights_only_and_leave_no_temporary_file(tmp_path):
    net = torch.nn.Conv2d(2, 3, 3)
    path = save_weights(net.state_dict(), tmp_path / "w" / "epoch_0001.pt")
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == ["weight", "bias"] and torch.equal(loaded["weight"], net.weight)
    assert [p.name for p in path.parent.iterdir()] == ["epoch_0001.pt"]


def test_every_n_epochs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="every_n_epochs"):
        WeightSnapshots(tmp_path, None, every_n_epochs=0)


@pytest.mark.slow
def test_snapshots_at_every_nth_and_the_last_epoch_and_kept_on_resume(runs_dir):
    run = deepscope.train(_cfg(runs_dir, epochs=3, every=2)).run_dir
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["epoch_0002.pt", "epoch_0003.pt"]
    assert sorted(p.name for p in (run / "figures" / "weights").iterdir()) == ["epoch_0002.png", "epoch_0003.png"]
    # the last snapshot holds the weights of last.ckpt, under the net's own keys
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    snap = torch.load(run / "weights" / "epoch_0003.pt", weights_only=True)
    assert set(snap) == {k.removeprefix("net.") for k in last if k.startswith("net.")}
    for key, value in snap.items():
        assert torch.equal(value, last[f"net.{key}"]), key
    first = (run / "weights" / "epoch_0002.pt").read_bytes()

    run = deepscope.train(_cfg(runs_dir, epochs=4, every=2)).run_dir  # resumes
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["epoch_0002.pt", "epoch_0003.pt", "epoch_0004.pt"]
    assert (run / "weights" / "epoch_0002.pt").read_bytes() == first


@pytest.mark.slow
def test_snapshots_without_figures(runs_dir):
    run = deepscope.train(_cfg(runs_dir, epochs=1, every=5, figures=False)).run_dir
    assert [p.name for p in (run / "weights").iterdir()] == ["epoch_0001.pt"]  # the last epoch
    assert not (run / "figures" / "weights").exists()
