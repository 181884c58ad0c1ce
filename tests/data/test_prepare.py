"""prepare_data: bad data stops before training; the InputSpec is derived from the data."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.config import load_config
from deepscope.data.prepare import prepare_data
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError, DataError


def _cfg(loss="mse", units=(8, 1), final_activation=None, **data):
    top = {"units": list(units)}
    if final_activation:
        top["final_activation"] = final_activation
    return load_config({"data": {"source": "arrays", **data}, "model": {"top": top}, "train": {"loss": loss}})


def _set(n, seed=0, targets=None, image_shape=(6, 7, 2)):
    rng = np.random.default_rng(seed)
    tracks = rng.normal(size=(n, 5, 3)).astype(np.float32)
    tracks[:, 3:] = 0.0
    return {"images": {"calo": rng.normal(size=(n, *image_shape)).astype(np.float32)},
            "scalars": rng.normal(size=(n, 4)).astype(np.float32),
            "tracks": tracks,
            "targets": rng.normal(size=n).astype(np.float32) if targets is None else targets}


def _split(**over):
    data = {"train": _set(20, 1), "val": _set(6, 2), "test": _set(6, 3)}
    for name, value in over.items():
        data[name] = value
    return data


def test_spec_of_regression_data():
    prepared = prepare_data(_cfg(), _split())
    spec = prepared.spec
    assert spec.images == {"calo": ImageSpec(2, (6, 7))}
    assert spec.scalars == 4
    assert spec.tracks == (5, 3)
    assert spec.target_shape == () and spec.target_kind == "value" and spec.n_classes is None
    assert spec.output_size == 1
    assert not spec.sample_weights and not spec.multiply_output_with
    assert prepared.sizes() == {"train": 20, "val": 6, "test": 6}


def test_spec_of_vector_targets_and_extras():
    data = _split()
    for name, part in data.items():
        n = len(part["targets"])
        part["targets"] = np.zeros((n, 3), np.float32)
        part["sample_weights"] = np.ones(n)
        part["multiply_output_with"] = np.ones(n)
    spec = prepare_data(_cfg(units=(8, 3)), data).spec
    assert spec.target_shape == (3,) and spec.output_size == 3
    assert spec.sample_weights and spec.multiply_output_with


def test_spec_of_integer_labels_counts_classes_over_all_splits():
    data = _split()
    data["train"]["targets"] = np.arange(20) % 3
    data["val"]["targets"] = np.zeros(6, dtype=np.int64)
    data["test"]["targets"] = np.full(6, 4)  # class 4 only in test
    spec = prepare_data(_cfg("cross_entropy", units=(8, 5)), data).spec
    assert spec.target_kind == "label" and spec.n_classes == 5 and spec.target_shape == ()
    assert spec.output_size == 5


def test_spec_of_one_hot_targets():
    data = _split()
    for part in data.values():
        n = len(part["targets"])
        part["targets"] = np.eye(4, dtype=np.float32)[np.arange(n) % 4]
    spec = prepare_data(_cfg("categorical_crossentropy", units=(8, 4), final_activation="softmax"), data).spec
    assert spec.target_kind == "value" and spec.n_classes == 4 and spec.target_shape == (4,)


def test_spec_of_3d_images():
    data = {"train": _set(8, image_shape=(3, 4, 5, 1)), "val": _set(4, image_shape=(3, 4, 5, 1))}
    spec = prepare_data(_cfg(), data).spec
    assert spec.images["calo"] == ImageSpec(1, (3, 4, 5)) and spec.images["calo"].spatial_dims == 3


def test_spec_json_round_trip(tmp_path):
    spec = prepare_data(_cfg(), _split()).spec
    path = tmp_path / "input_spec.json"
    path.write_text(spec.to_json())
    assert InputSpec.load(path) == spec


def test_pool_is_split_and_standardized_on_train_only():
    pool = _set(100, 5)
    pool["scalars"] = pool["scalars"] * 3 + 1
    cfg = _cfg(split={"val": 0.2, "test": 0.1})
    prepared = prepare_data(cfg, pool)
    assert prepared.sizes() == {"train": 70, "val": 20, "test": 10}
    train = prepared.indices["train"]
    mean, std = prepared.standardizer.stats["scalars"]
    np.testing.assert_allclose(mean, pool["scalars"][train].astype(np.float64).mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, pool["scalars"][train].astype(np.float64).std(0), rtol=1e-5)
    everything = pool["scalars"].astype(np.float64).mean(0)
    assert not np.allclose(mean, everything, rtol=1e-4)


def test_digits_source_spec():
    cfg = load_config({"data": {"source": "sklearn_digits", "n_samples": 100},
                       "model": {"top": {"units": [8, 10]}}, "train": {"loss": "cross_entropy"}})
    prepared = prepare_data(cfg)
    assert prepared.spec.images == {"digits": ImageSpec(1, (8, 8))}
    assert prepared.spec.target_kind == "label" and prepared.spec.n_classes == 10
    assert sum(prepared.sizes().values()) == 100


def test_npz_source(tmp_path):
    path = tmp_path / "d.npz"
    data = _split()
    np.savez(path, **{f"{s}/{k}": v for s, part in data.items() for k, v in part.items() if k != "images"},
             **{f"{s}/images/calo": part["images"]["calo"] for s, part in data.items()})
    prepared = prepare_data(_cfg(source="npz", path=str(path)))
    assert prepared.spec.images == {"calo": ImageSpec(2, (6, 7))} and prepared.spec.tracks == (5, 3)


# --- errors before training ---------------------------------------------------------------------


def test_already_split_data_with_split_config():
    with pytest.raises(ConfigError, match="data.split"):
        prepare_data(_cfg(split={"val": 0.2}), _split())


def test_data_argument_with_another_source():
    cfg = load_config({"data": {"source": "sklearn_digits"}, "model": {"top": {"units": [8, 10]}},
                       "train": {"loss": "cross_entropy"}})
    with pytest.raises(ConfigError, match="data.source"):
        prepare_data(cfg, _split())


def test_no_data_for_arrays_source():
    with pytest.raises(DataError):
        prepare_data(_cfg(), None)


def test_nan_is_caught_unless_switched_off():
    data = _split()
    data["val"]["scalars"][3, 0] = np.nan
    with pytest.raises(DataError) as info:
        prepare_data(_cfg(), data)
    assert "data['val']['scalars']" in str(info.value) and "sample 3" in str(info.value)
    prepare_data(_cfg(check_finite=False), data)


def test_nan_in_a_pool():
    pool = _set(30)
    pool["images"]["calo"][7, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"data\['images/calo'\].*sample 7"):
        prepare_data(_cfg(split={"val": 0.2}), pool)


def test_mismatched_lengths():
    data = _split()
    data["train"]["scalars"] = data["train"]["scalars"][:5]
    with pytest.raises(DataError, match=r"data\['train'\].*'scalars' has 5"):
        prepare_data(_cfg(), data)


def test_missing_targets_in_one_split():
    data = _split()
    del data["test"]["targets"]
    with pytest.raises(DataError, match=r"data\['test'\].*'targets' is missing"):
        prepare_data(_cfg(), data)


def test_key_missing_in_one_split():
    data = _split()
    del data["val"]["tracks"]
    with pytest.raises(DataError, match=r"'tracks'.*data\['val'\] does not"):
        prepare_data(_cfg(), data)


def test_per_sample_shape_differs_between_splits():
    data = _split(val=_set(6, image_shape=(6, 6, 2)))
    with pytest.raises(DataError, match=r"data\['val'\]\['images/calo'\]"):
        prepare_data(_cfg(), data)


def test_tracks_may_differ_in_count_but_not_features():
    data = _split()
    data["val"]["tracks"] = np.zeros((6, 9, 3), np.float32)
    prepare_data(_cfg(), data)  # more tracks: fine
    data["val"]["tracks"] = np.zeros((6, 5, 2), np.float32)
    with pytest.raises(DataError, match="features per track"):
        prepare_data(_cfg(), data)


def test_images_of_different_spatial_size_are_the_models_business():
    # the data may hold images of several sizes (upsampling or the model builder decides)
    data = _split()
    for part in data.values():
        n = len(part["targets"])
        part["images"]["ecal"] = np.zeros((n, 3, 3, 1), np.float32)
    spec = prepare_data(_cfg(), data).spec
    assert spec.images["calo"].spatial == (6, 7) and spec.images["ecal"].spatial == (3, 3)


def test_cross_entropy_with_float_targets():
    with pytest.raises(DataError, match="cross_entropy.*integer class labels"):
        prepare_data(_cfg("cross_entropy", units=(8, 3)), _split())


def test_negative_labels():
    data = _split()
    data["train"]["targets"] = np.arange(20) - 1
    for name in ("val", "test"):
        data[name]["targets"] = np.zeros(6, dtype=np.int64)
    with pytest.raises(DataError, match="0..K-1"):
        prepare_data(_cfg("cross_entropy", units=(8, 3)), data)


@pytest.mark.parametrize("bad", [2.0, -0.5])
def test_bce_with_targets_outside_unit_interval(bad):
    data = _split()
    for part in data.values():
        part["targets"] = np.full(len(part["targets"]), 0.5, np.float32)
    data["val"]["targets"][0] = bad
    with pytest.raises(DataError, match=r"bce.*\[0, 1\]"):
        prepare_data(_cfg("bce", final_activation="sigmoid"), data)
    data["val"]["targets"][0] = 1.0
    assert prepare_data(_cfg("bce", final_activation="sigmoid"), data).spec.target_kind == "value"


def test_no_validation_set_but_monitoring_val():
    data = {"train": _set(10)}
    with pytest.raises(DataError, match="no validation set"):
        prepare_data(_cfg(), data)
