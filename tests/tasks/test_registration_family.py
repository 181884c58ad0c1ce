"""The registration family: config checks, the loss per output, scoring beside the identity field, and
trained runs on the synthetic demo (global, then merged with the global part loaded and frozen), their
figures, evaluation and ``predict`` into atlalign's HDF5 layout."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from deepscope.config import load_config
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.registration import losses as L
from deepscope.registration.baselines import identity_output
from deepscope.registration.task import Layout, RegistrationLoss, RegistrationOutputs
from deepscope.tasks import family_name
from deepscope.training.experiment import Experiment, evaluate, predict

pytestmark = pytest.mark.xdist_group("registration")

SHAPE = [32, 48]
GLOBAL = {"architecture": "registration_global", "filters": [4, 8, 8], "dense_layers": [8]}
LOCAL = {"start_filters": [4], "downsample_filters": [4, 8], "middle_filters": [8], "upsample_filters": [8, 4],
         "end_filters": [8]}


def _config(tmp, name="reg", model=None, **train):
    return {"name": name, "seed": 0,
            "data": {"source": "registration_demo", "path": str(tmp / "pairs.h5"), "n_pairs": 40, "shape": SHAPE,
                     "n_sections": 6, "deformation": "elastic", "elastic_amplitude": 1.5, "inverse": True},
            "model": model or dict(GLOBAL),
            "train": {"epochs": 1, "batch_size": 8, "optimizer": "adam", "lr": 0.001,
                      "loss": {"registered": "mse", "field": "vector_distance"}, **train},
            "log": {"dir": str(tmp / "runs"), "progress_bar": "none", "tensorboard": False}}


# --- config checks -----------------------------------------------------------------------------------


def test_a_registration_model_picks_the_family(tmp_path):
    cfg = load_config(_config(tmp_path))
    assert family_name(cfg) == "registration"
    assert "vector_distance" in cfg.train.metrics and "inverse_residual" not in cfg.train.metrics
    merged = load_config(_config(tmp_path, model={"architecture": "registration_merged", "compute_inv": True}))
    assert "inverse_residual" in merged.train.metrics


@pytest.mark.parametrize("train, expected", [
    ({"loss": "mse"}, "train.loss: the registration family takes a loss per output"),
    ({"loss": {"registred": "mse"}}, "train.loss.registred: the model has no output 'registred'; did you mean "
                                     "'registered'?"),
    ({"loss": {"registered": "mse", "inverse": "vector_distance"}}, "needs model.compute_inv: true"),
    ({"loss": {"registered": "vdclip2"}}, "train.loss.registered: 'vdclip2' compares displacement fields"),
    ({"loss": {"registered": "mse"}, "metrics": ["accuracy"]}, "train.metrics: accuracy is not a registration metric"),
    ({"loss": {"registered": "mse"}, "loss_weights": {"feild": 1.0}}, "train.loss_weights.feild: no loss for output 'feild'"),
    ({"loss": {"registered": "ncc_9&nope"}}, "unknown loss 'nope'"),
    ({"loss": {"registered": "perceptual"}}, "train.loss.registered: 'perceptual' needs config.run"),
    ({"loss": {"registered": "mse"}, "monitor": "train_dice"}, "train.monitor: 'train_dice' is scored on the "
                                                               "validation split only"),
])
def test_bad_registration_configs_name_the_key(tmp_path, train, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, **train))
    assert expected in str(err.value)


def test_standardized_images_and_per_output_losses_elsewhere_are_refused(tmp_path):
    raw = _config(tmp_path)
    raw["data"]["standardize"] = {"images": "per_channel"}
    with pytest.raises(ConfigError, match="data.standardize.images: registration compares"):
        load_config(raw)
    with pytest.raises(ConfigError, match="a loss per named output .* is for models with named outputs"):
        load_config({"model": {"architecture": "unet", "dmode": "deconvolver"},
                     "train": {"loss": {"registered": "mse"}}})


def test_the_mixer_is_the_mean_of_its_losses():
    cfg = load_config({"train": {"loss": "mse&mae"}})
    assert [(c.class_name, w) for c, w in cfg.train.loss_terms] == [("mse", 0.5), ("mae", 0.5)]


# --- the loss per output and the scores -----------------------------------------------------------------


def _spec(names=("registered", "dx", "dy", "inv_dx", "inv_dy")):
    return InputSpec(images={"reference": ImageSpec(1, (12, 16)), "moving": ImageSpec(1, (12, 16))},
                     target_shape=(len(names), 12, 16), target_names=names)


def test_the_loss_sums_each_outputs_terms_with_their_weights():
    cfg = load_config({"model": {"architecture": "registration_local", "compute_inv": True},
                       "data": {"source": "registration_hdf5", "path": "x.h5", "reference": "r.npy"},
                       "train": {"loss": {"registered": "ncc_5&mse", "field": "vdclip2",
                                          "inverse": [{"name": "vector_distance", "weight": 2.0},
                                                      {"name": "grad", "weight": 1.0}]},
                                 "loss_weights": {"field": 3.0, "inverse": 0.5}}})
    layout = Layout.of(_spec(), inverse=True)
    loss = RegistrationLoss(layout, cfg.train.output_losses, cfg.train.output_weights)
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(3, 5, 12, 16, generator=gen), torch.rand(3, 5, 12, 16, generator=gen)
    expected = (0.5 * L.ncc_5(pred[:, :1], target[:, :1]) + 0.5 * L.mse(pred[:, :1], target[:, :1])
                + 3.0 * L.vdclip2(pred[:, 1:3], target[:, 1:3])
                + 0.5 * (2.0 * L.vector_distance(pred[:, 3:5], target[:, 3:5]) + L.grad(pred[:, 3:5])))
    assert torch.allclose(loss(pred, target), expected, atol=1e-6)


def test_the_identity_field_scores_the_true_fields_size():
    spec = _spec(("registered", "dx", "dy"))
    outputs = RegistrationOutputs(spec, Layout.of(spec, inverse=False), ["vector_distance", "fold_fraction"])
    rng = np.random.default_rng(0)
    moving = rng.random((4, 1, 12, 16)).astype(np.float32)
    targets = rng.normal(size=(4, 3, 12, 16)).astype(np.float32)
    scores = outputs.score({"predictions": identity_output(moving, outputs)}, targets, None)
    assert scores["vector_distance"] == pytest.approx(np.sqrt((targets[:, 1:] ** 2).sum(1)).mean(), rel=1e-5)
    assert scores["fold_fraction"] == 0.0


# --- trained runs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def global_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registration")
    result = Experiment(_config(tmp, name="global")).train()
    return tmp, result


def test_a_global_run_is_scored_beside_the_identity_field(global_run):
    tmp, result = global_run
    metrics = json.loads((result.run_dir / "final_metrics.json").read_text())["test"]
    with h5py.File(tmp / "pairs.h5") as f:
        deltas = np.asarray(f["deltas_xy"][()], np.float32)
    # the identity field's vector distance is the size of the true fields of the test pairs
    assert 0.5 * np.sqrt((deltas ** 2).sum(-1)).mean() < metrics["identity_vector_distance"] < \
        2.0 * np.sqrt((deltas ** 2).sum(-1)).mean()
    for name in ("vector_distance", "fold_fraction", "registered_psnr", "dice", "iou", "mutual_information"):
        assert np.isfinite(metrics[name]) and np.isfinite(metrics[f"identity_{name}"])
    assert metrics["identity_fold_fraction"] == 0.0
    for figure in ("registration_test.png", "deformation_test.png", "jacobian_test.png"):
        assert (result.run_dir / "figures" / figure).stat().st_size > 1000
    header = (result.run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_vector_distance", "train_fold_fraction", "val_dice", "val_vector_distance_p90"} <= set(header)
    assert "train_dice" not in header and "train_registered_ssim" not in header  # validation only
    again = evaluate(result.run_dir, "test")
    assert again["vector_distance"] == pytest.approx(metrics["vector_distance"], rel=1e-5)


def test_predict_writes_registered_sections_and_fields_in_atlalign_layout(global_run):
    tmp, result = global_run
    out = tmp / "registered.h5"
    predicted = predict(result.run_dir, tmp / "pairs.h5", out)
    with h5py.File(tmp / "pairs.h5") as f, h5py.File(out) as g:
        n = len(f["img"])
        assert g["img"].dtype == np.uint8 and g["img"].shape == (n, *SHAPE)
        assert g["deltas_xy"].dtype == np.float16 and g["deltas_xy"].shape == (n, *SHAPE, 2)
        assert "inv_deltas_xy" not in g  # the global model was not asked for inverses
        np.testing.assert_array_equal(g["p"][()], f["p"][()])
        np.testing.assert_array_equal(g["dataset_id"][()], f["dataset_id"][()])
        truth = np.asarray(f["deltas_xy"][()], np.float32)
        np.testing.assert_allclose(np.asarray(g["deltas_xy"][()], np.float32),
                                   np.moveaxis(predicted["field"], 1, -1), atol=0.02)
    vd = np.sqrt(((np.moveaxis(predicted["field"], 1, -1) - truth) ** 2).sum(-1)).reshape(n, -1).mean(1)
    np.testing.assert_allclose(predicted["vector_distance"], vd, rtol=1e-4)


def test_predict_refuses_a_file_of_another_size(global_run, tmp_path):
    _, result = global_run
    bad = tmp_path / "small.h5"
    with h5py.File(bad, "w") as f:
        f["img"] = np.zeros((2, 16, 16), np.uint8)
        f["p"] = np.zeros(2, np.int64)
    with pytest.raises(Exception, match=r"dataset 'img' has shape \(2, 16, 16\); the model registers"):
        predict(result.run_dir, bad, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_a_merged_run_loads_and_freezes_the_global_part(global_run):
    tmp, first = global_run
    model = {"architecture": "registration_merged", "compute_inv": True,
             "global_model": {k: v for k, v in GLOBAL.items() if k != "architecture"}, "local_model": LOCAL,
             "pretrained": [{"use": True, "weights_path": str(first.run_dir), "layers_to_load": ["global_net"],
                             "freeze_loaded_layers": True}]}
    result = Experiment(_config(tmp, name="merged", model=model,
                                loss={"registered": "mse", "field": "vector_distance",
                                      "inverse": "vector_distance"})).train()
    trained = torch.load(result.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    loaded = torch.load(first.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in loaded.items():  # net.global_net.* kept exactly: loaded, then frozen
        assert torch.equal(trained[key], value), key
    metrics = json.loads((result.run_dir / "final_metrics.json").read_text())["test"]
    assert np.isfinite(metrics["inverse_residual"]) and np.isfinite(metrics["identity_inverse_residual"])


# --- save_model: architecture and weights together or apart -------------------------------------------------


@pytest.mark.parametrize("separate", [False, True])
def test_an_exported_model_gives_the_runs_outputs(global_run, tmp_path, separate):
    from deepscope.data.prepare import prepare_data
    from deepscope.export import load_model, save_model
    from deepscope.training.experiment import _load_run

    _, result = global_run
    written = save_model(result.run_dir, tmp_path / "model", separate=separate)
    assert [p.name for p in written] == (["model.yaml", "model.weights.pt"] if separate else ["model.pt"])
    net = load_model(written[0])
    run = _load_run(result.run_dir)
    batch = prepare_data(run.cfg).stores["test"].read(np.arange(3))
    images = {k: torch.from_numpy(v) for k, v in batch["images"].items()}
    with torch.no_grad():
        assert torch.equal(net(images=images), run.net.eval()(images=images))
    with pytest.raises(Exception, match="exist"):
        save_model(result.run_dir, tmp_path / "model", separate=separate)  # kept, not overwritten
    if separate:
        with pytest.raises(Exception, match="holds weights without an architecture"):
            load_model(written[1])


def test_export_from_the_cli(global_run, tmp_path):
    from deepscope.cli import main

    _, result = global_run
    assert main(["export", str(result.run_dir), str(tmp_path / "m")]) == 0
    assert (tmp_path / "m.pt").is_file()
    assert main(["export", str(tmp_path / "no-run"), str(tmp_path / "x")]) == 2
