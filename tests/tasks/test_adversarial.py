"""The adversarial family (``model: gan``): config checks, the GAN net, and one trained and resumed run on
simulated tracker events (the generator marks one track's hits; the discriminator judges (event, image) pairs)."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch

from deepscope.config import load_config
from deepscope.config.nets.gan import GANParams
from deepscope.data.prepare import prepare_data
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.models.nets.gan import NO_HIT_LOGIT, GANNet
from deepscope.tasks import family_name
from deepscope.training.adversarial import AdversarialSystem
from deepscope.training.experiment import Experiment

pytestmark = pytest.mark.xdist_group("adversarial")

TOP = {"rows": "tracker_layer", "cols": "tracker_column", "shape": [9, 113]}
SHAPE = (9, 113)


def _config(tmp, **changes):
    cfg = {"name": "gan", "seed": 0,
           "data": {"source": "track_detector", "path": str(tmp / "events.root"), "n_events": 200,
                    "views": {"top": dict(TOP)}, "target": {"mask": "tracker_track", "view": "top"},
                    "split": {"val": 0.2, "test": 0.2}, "standardize": {"images": "none"}},
           "model": {"architecture": "gan",
                     "generator": {"architecture": "unet", "block_sizes": [4, 8], "depths": [1, 1]},
                     "discriminator": {"block_sizes": [4, 8]}},
           "train": {"epochs": 1, "batch_size": 32, "loss": "bce_with_logits", "optimizer": "adam", "lr": 0.001},
           "log": {"dir": str(tmp / "runs"), "progress_bar": "none", "tensorboard": False}}
    for key, value in changes.items():
        cfg[key] = {**cfg[key], **value}
    return cfg


def _spec(channels=1):
    return InputSpec(images={"top": ImageSpec(channels, SHAPE)}, target_shape=(1, *SHAPE))


def _params(generator=None):
    return GANParams(generator=generator or {"architecture": "unet", "block_sizes": [4, 8], "depths": [1, 1]},
                     discriminator={"block_sizes": [4, 8]})


def _events(batch=3, seed=0):
    """(B, 1, 9, 113) 0/1 hit images, about a tenth of the cells hit."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((batch, 1, *SHAPE), generator=g) < 0.1).float()


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of training; the net's weights as the system received them (before any step)."""
    tmp = tmp_path_factory.mktemp("adversarial")
    initial: dict[str, torch.Tensor] = {}
    original = AdversarialSystem.__init__

    def recording_init(self, net, *args, **kwargs):
        initial.update({k: v.detach().clone() for k, v in net.state_dict().items()})
        original(self, net, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AdversarialSystem, "__init__", recording_init)
        result = Experiment(_config(tmp)).train()
    return tmp, result, initial


# --- config -------------------------------------------------------------------------------------------


def test_a_gan_model_is_the_adversarial_family_with_cluster_metrics(tmp_path):
    cfg = load_config(_config(tmp_path))
    assert family_name(cfg) == "adversarial"
    assert list(cfg.train.metrics) == ["hit_efficiency", "hit_purity"]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"train": {"lr_schedule": {"name": "onecycle"}}},
     "train.lr_schedule: not supported by the adversarial family (two optimizers stepped by hand each batch); "
     "remove it"),
    ({"train": {"gradient_clip_val": 1.0}},
     "train.gradient_clip_val: not supported by the adversarial family (two optimizers stepped by hand each "
     "batch); remove it"),
    ({"train": {"accumulate_grad_batches": 2}},
     "train.accumulate_grad_batches: not supported by the adversarial family"),
    ({"train": {"loss": "mse"}},
     "train.loss 'mse': the generator gives logits of 0/1 images (hits of one track); use bce_with_logits"),
    ({"data": {"standardize": {"images": "per_channel"}}},
     "model.mask_to_hits keeps the output to cells with a hit (> 0), which needs the images unstandardized: set "
     "data.standardize.images: none (it is 'per_channel'), or mask_to_hits: false"),
], ids=["lr_schedule", "gradient_clip_val", "accumulate_grad_batches", "mse", "standardized_images"])
def test_config_mistakes_are_refused_with_what_to_do(tmp_path, changes, expected):
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, **changes))
    assert expected in str(info.value)


def test_standardized_images_are_allowed_without_mask_to_hits(tmp_path):
    cfg = _config(tmp_path, data={"standardize": {"images": "per_channel"}})
    cfg["model"]["mask_to_hits"] = False
    assert family_name(load_config(cfg)) == "adversarial"


def test_two_views_are_refused_when_the_model_is_built(trained, tmp_path):
    data_dir = trained[0]  # the simulated events of the trained run: nothing to simulate again
    cfg = _config(data_dir, log={"dir": str(tmp_path / "runs")})
    cfg["data"]["views"]["other"] = {**TOP, "select": {"tracker_side": 1}}
    with pytest.raises(ConfigError) as info:
        Experiment(cfg).train()
    assert ("model.architecture gan takes one image (the event's view); the data has 2 (top, other): keep one "
            "view in data.views") in str(info.value)


def test_class_label_targets_are_refused(trained, tmp_path):
    data_dir = trained[0]
    cfg = _config(data_dir, log={"dir": str(tmp_path / "runs")})
    cfg["data"]["target"] = {"branch": "n_tracks", "classes": [1, 2]}
    with pytest.raises(ConfigError) as info:
        Experiment(cfg).train()
    assert ("model.architecture gan generates images: the targets must be images of the input's size (e.g. "
            "data.target: {mask: tracker_track, view: top}); they are one value per sample") in str(info.value)


def test_the_net_refuses_label_targets_and_two_images():
    labels = InputSpec(images={"top": ImageSpec(1, SHAPE)}, target_kind="label", n_classes=4)
    with pytest.raises(ConfigError, match="the targets must be images of the input's size"):
        GANNet(labels, _params())
    two = InputSpec(images={"top": ImageSpec(1, SHAPE), "side": ImageSpec(1, SHAPE)}, target_shape=(1, *SHAPE))
    with pytest.raises(ConfigError, match=r"takes one image .*the data has 2 \(top, side\)"):
        GANNet(two, _params())


# --- the net ------------------------------------------------------------------------------------------


def test_the_output_is_the_generators_logits_where_the_event_has_a_hit_and_no_hit_logit_elsewhere():
    torch.manual_seed(0)
    net = GANNet(_spec(), _params()).eval()
    events = _events()
    images = {"top": events}
    with torch.no_grad():
        out = net(images)
        raw = net.generator(images=images)
    assert out.shape == (3, 1, *SHAPE)
    hit = events > 0
    assert hit.any() and (~hit).any()
    assert torch.all(out[~hit] == NO_HIT_LOGIT) and NO_HIT_LOGIT == -30.0
    assert torch.equal(out[hit], raw[hit])
    assert not torch.all(raw[~hit] == NO_HIT_LOGIT)  # the mask did it, not the generator


def test_without_mask_to_hits_the_output_is_the_generators():
    torch.manual_seed(0)
    net = GANNet(_spec(), _params().model_copy(update={"mask_to_hits": False})).eval()
    images = {"top": _events()}
    with torch.no_grad():
        assert torch.equal(net(images), net.generator(images=images))


def test_discriminate_gives_one_logit_per_pair():
    torch.manual_seed(0)
    net = GANNet(_spec(), _params())
    events = _events(batch=5)
    candidate = torch.rand(5, 1, *SHAPE)
    scores = net.discriminate({"top": events}, candidate)
    assert scores.shape == (5,) and torch.isfinite(scores).all()
    scores.sum().backward()  # the generator's step backpropagates through the discriminator
    assert all(p.grad is not None for p in net.discriminator.parameters())


@pytest.mark.parametrize("generator", [
    {"architecture": "unet", "block_sizes": [4, 8], "depths": [1, 1], "skip_connections": False},
    {"architecture": "cae", "block_sizes": [4, 8], "depths": [1, 1], "latent_size": 8},
], ids=["unet_without_skips", "cae"])
def test_other_generators_build_and_run_on_tracker_images(generator):
    torch.manual_seed(0)
    net = GANNet(_spec(), _params(generator))
    events = _events(batch=2)
    out = net({"top": events})
    assert out.shape == (2, 1, *SHAPE) and torch.isfinite(out).all()
    assert torch.all(out[events == 0] == NO_HIT_LOGIT)
    assert net.discriminate({"top": events}, torch.sigmoid(out)).shape == (2,)


# --- one trained run ----------------------------------------------------------------------------------


def test_both_nets_were_trained_with_their_own_optimizer(trained):
    tmp, result, initial = trained
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert len(ckpt["optimizer_states"]) == 2
    generator, discriminator = ckpt["optimizer_states"]
    fresh = GANNet(_spec(), load_config(_config(tmp)).model)
    # Adam state for every parameter of each net: each optimizer holds one net's parameters
    assert len(generator["state"]) == len(list(fresh.generator.parameters()))
    assert len(discriminator["state"]) == len(list(fresh.discriminator.parameters()))
    steps = {float(s["step"]) for opt in (generator, discriminator) for s in opt["state"].values()}
    assert len(steps) == 1 and steps.pop() > 0  # both stepped on every batch

    net = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    assert set(initial) == set(net)
    changed = {k for k in net if not torch.equal(net[k], initial[k])}
    assert any(k.startswith("generator.") for k in changed)
    assert {k for k in net if k.startswith("discriminator.")} <= changed  # every discriminator tensor moved


def test_final_metrics_hold_cluster_metrics_for_val_and_test(trained):
    _, result, _ = trained
    metrics = json.loads((result.run_dir / "final_metrics.json").read_text())
    for split in ("val", "test"):
        assert {"hit_efficiency", "hit_purity"} <= set(metrics[split])
        assert 0.0 <= metrics[split]["hit_efficiency"] <= 1.0
        purity = metrics[split]["hit_purity"]
        assert np.isnan(purity) or 0.0 <= purity <= 1.0  # NaN: nothing predicted
    assert set(result.metrics) == {"val", "test"}


def test_the_cluster_figure_is_written(trained):
    _, result, _ = trained
    figure = result.run_dir / "figures" / "clusters_val.png"
    assert figure.is_file() and figure.stat().st_size > 0


def test_predictions_are_0_1_images_among_the_events_hits(trained):
    tmp, result, _ = trained
    saved = np.load(result.run_dir / "predictions" / "test.npz")
    predictions, targets, probabilities = saved["predictions"], saved["targets"], saved["probabilities"]
    assert predictions.shape == targets.shape == (len(saved["index"]), 1, *SHAPE)
    assert set(np.unique(predictions)) <= {0, 1}
    prepared = prepare_data(load_config(_config(tmp)))
    events = prepared.stores["test"].read(np.asarray(saved["index"]))["images"]["top"]
    hit = np.asarray(events).reshape(predictions.shape) > 0
    assert not np.any(predictions[~hit])  # a track's hits are among the event's
    assert not np.any(targets[~hit])  # (and so are the true ones: the mask target is in the view's binning)
    no_hit_probability = np.float32(1.0 / (1.0 + np.exp(-NO_HIT_LOGIT)))
    assert np.allclose(probabilities[~hit], no_hit_probability, rtol=1e-3, atol=0)


def test_metrics_csv_has_the_adversarial_losses(trained):
    _, result, _ = trained
    rows = _csv_rows(result.run_dir / "metrics.csv")
    assert len(rows) == 1
    assert {"train_d_loss", "train_g_adversarial", "train_loss", "val_loss", "val_hit_efficiency",
            "val_hit_purity"} <= set(rows[0])
    assert np.isfinite(float(rows[0]["train_d_loss"])) and np.isfinite(float(rows[0]["train_g_adversarial"]))


# runs last: it trains the same run folder one epoch further (what the tests above check still holds after it)
def test_raising_epochs_resumes_the_run(trained):
    tmp, first, _ = trained
    assert not first.resumed and first.epochs == 1
    cfg = copy.deepcopy(_config(tmp))
    cfg["train"]["epochs"] = 2
    result = Experiment(cfg).train()
    assert result.resumed and result.epochs == 2 and result.run_dir == first.run_dir
    rows = _csv_rows(result.run_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert len(ckpt["optimizer_states"]) == 2
