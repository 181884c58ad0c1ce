"""The registration sources: the demo generator's conventions, atlalign's file layout, the lazy store,
splits, augmentation, and every bad-input message."""

from __future__ import annotations

import json
import pickle
import threading

import h5py
import numpy as np
import pytest
from pydantic import ValidationError
from scipy.ndimage import map_coordinates

from deepscope.config import load_config
from deepscope.config.registration import RegistrationDemoData, RegistrationHDF5Data
from deepscope.data import registration as R
from deepscope.data.prepare import prepare_data
from deepscope.data.simulators import registration as sim
from deepscope.errors import DataError

SHAPE = (40, 57)  # width not divisible by 16, as the demo's default
SMALL = sim.RegistrationOptions(n_pairs=12, shape=SHAPE, n_sections=6, section_thickness=25.0,
                                elastic_amplitude=2.0, elastic_smoothness=5.0, n_datasets=4)


def _grid(shape):
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return x, y


def _scipy_warp(image, deltas_xy):
    """SEED-FACTS §5, written out: out(x, y) = img(x + Δx, y + Δy), bilinear, zero outside."""
    x, y = _grid(image.shape)
    return map_coordinates(image.astype(np.float64), [y + deltas_xy[..., 1], x + deltas_xy[..., 0]],
                           order=1, cval=0.0, mode="constant")


@pytest.fixture(scope="module")
def volume():
    return sim.simulate_reference(SMALL)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's files, written once for the module."""
    folder = tmp_path_factory.mktemp("demo")
    path = folder / "demo.h5"
    sim.ensure_registration_demo(path, SMALL, folder / "demo_reference.npy", folder / "demo_annotation.npy")
    return path


def _hdf5_cfg(path, **extra):
    folder, stem = path.parent, path.stem
    raw = {"source": "registration_hdf5", "path": str(path), "reference": str(folder / f"{stem}_reference.npy"),
           "section_thickness": 25, **extra}
    return RegistrationHDF5Data.model_validate(raw)


def _custom_file(tmp_path, n=6, shape=SHAPE, depth=4, drop=(), p=None, fields=None, dataset_id=None):
    """A hand-made atlalign file and a (depth, H, W) reference volume beside it."""
    rng = np.random.default_rng(0)
    h, w = shape
    arrays = {"img": rng.integers(0, 256, (n, h, w), dtype=np.uint8),
              "deltas_xy": rng.normal(0, 1, (n, h, w, 2)).astype(np.float16),
              "inv_deltas_xy": rng.normal(0, 1, (n, h, w, 2)).astype(np.float16),
              "p": np.arange(n) % depth * 25 if p is None else np.asarray(p),
              "image_id": np.arange(n), "dataset_id": np.arange(n) % 3 if dataset_id is None else dataset_id}
    arrays.update(fields or {})
    path = tmp_path / "pairs.h5"
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            if k not in drop:
                f.create_dataset(k, data=v)
    np.save(tmp_path / "pairs_reference.npy", rng.uniform(0, 1, (depth, h, w)).astype(np.float32))
    return path


# --- the generator's conventions ------------------------------------------------------------------


def test_warp_is_atlaligns_backward_warp():
    image = np.random.default_rng(1).uniform(0, 1, SHAPE)
    deltas = np.zeros((*SHAPE, 2))
    deltas[..., 0] = 2.0  # Δx: columns
    out = sim.warp(image, deltas)
    np.testing.assert_allclose(out[:, :-2], image[:, 2:])  # out(x, y) = img(x + 2, y)
    assert np.all(out[:, -2:] == 0)  # zero outside
    deltas = np.random.default_rng(2).normal(0, 3, (*SHAPE, 2))
    np.testing.assert_allclose(sim.warp(image, deltas), _scipy_warp(image, deltas))


@pytest.mark.parametrize("deformation", ["affine", "elastic"])
def test_pair_conventions(volume, deformation):
    opts = sim.RegistrationOptions(**{**SMALL.__dict__, "deformation": deformation})
    section = volume[0][3].astype(np.float64)
    x, y = _grid(SHAPE)
    for seed in range(4):
        pair = sim.simulate_pair(section, np.random.default_rng(seed), opts)
        fwd, inv = pair["deltas_xy"], pair["inv_deltas_xy"]
        # the moving image is the reference section warped by the inverse field
        np.testing.assert_allclose(pair["moving"], _scipy_warp(section, inv))
        # warping the moving image by the forward field gives the reference section back (away from borders)
        back = _scipy_warp(pair["moving"], fwd)
        inside = _scipy_warp(np.ones(SHAPE), fwd) > 0.999
        inside[:6], inside[-6:], inside[:, :6], inside[:, -6:] = False, False, False, False
        assert inside.sum() > 0.3 * inside.size
        assert np.abs(back - section)[inside].mean() < 0.02
        # the inverse: inv(p) + Δ(p + inv(p)) = 0 (scipy's bilinear sampling of the gridded field)
        qx, qy = x + inv[..., 0], y + inv[..., 1]
        within = (qx >= 0) & (qx <= SHAPE[1] - 1) & (qy >= 0) & (qy <= SHAPE[0] - 1)
        sampled = np.stack([map_coordinates(fwd[..., c], [qy, qx], order=1) for c in range(2)], -1)
        assert np.abs(inv + sampled)[within].max() < 1e-3
        assert pair["residual"] < sim.INVERSE_TOLERANCE
        assert sim.jacobian_determinant(fwd).min() > 0
        if deformation == "affine":  # exact: the affine part is linear
            assert np.abs(inv + sampled)[within].max() < 1e-9


def test_affine_field_and_composition():
    shape = (10, 13)
    a = np.array([[1.0, 0.1, 2.0], [0.0, 0.9, -1.0]])
    field = sim.affine_field(a, shape)
    x, y = _grid(shape)
    np.testing.assert_allclose(field[..., 0], x + 0.1 * y + 2 - x)
    np.testing.assert_allclose(field[..., 1], 0.9 * y - 1 - y)
    shift = np.zeros((*shape, 2))
    shift[..., 1] = 1.0
    np.testing.assert_allclose(sim.compose(shift, shift)[2:-2, 2:-2], 2 * shift[2:-2, 2:-2])


def test_invert_field_refuses_a_folding_field():
    def forward(x, y):
        return np.stack([-3.0 * x + 0.0 * y, 0.0 * y], -1)  # p -> -2 x: contraction factor 3

    with pytest.raises(RuntimeError, match="did not converge"):
        sim.invert_field(forward, (8, 8))


def test_reference_volume(volume):
    vol, labels = volume
    assert vol.shape == (SMALL.n_sections, *SHAPE) and vol.dtype == np.float32
    assert 0 <= vol.min() and vol.max() <= 1
    assert labels.dtype == np.int32 and labels.shape == vol.shape
    assert set(np.unique(labels)) >= {0, 1, 2, 3}
    step = np.abs(np.diff(vol, axis=0)).mean()
    assert step < np.abs(vol - vol.mean()).mean()  # neighbouring sections look alike


# --- the files ------------------------------------------------------------------------------------


def test_demo_file_layout(demo):
    n, (h, w) = SMALL.n_pairs, SHAPE
    with h5py.File(demo, "r") as f:
        assert set(f) == {"img", "deltas_xy", "inv_deltas_xy", "p", "image_id", "dataset_id"}
        assert f["img"].dtype == np.uint8 and f["img"].shape == (n, h, w)
        for name in ("deltas_xy", "inv_deltas_xy"):
            assert f[name].dtype == np.float16 and f[name].shape == (n, h, w, 2)
        for name in ("p", "image_id", "dataset_id"):
            assert np.issubdtype(f[name].dtype, np.integer) and f[name].shape == (n,)
        p = f["p"][()]
        assert np.all(p % 25 == 0) and p.max() < SMALL.n_sections * 25
        assert sorted(set(f["dataset_id"][()])) == [0, 1, 2, 3]
        assert json.loads(f.attrs[sim.SETTINGS_ATTR])["shape"] == list(SHAPE)
        img, inv, sections = f["img"][()], f["inv_deltas_xy"][()].astype(np.float64), p // 25
    ref = np.load(demo.with_name("demo_reference.npy"))
    labels = np.load(demo.with_name("demo_annotation.npy"))
    assert ref.dtype == np.float32 and ref.shape == (SMALL.n_sections, h, w)
    assert np.issubdtype(labels.dtype, np.integer) and labels.shape == ref.shape
    # the stored moving image is the reference section warped by the stored inverse, up to a mild intensity change
    for i in range(3):
        expected = _scipy_warp(ref[sections[i]], inv[i])
        assert np.corrcoef(expected.ravel(), img[i].ravel())[0, 1] > 0.97


def test_demo_refuses_other_settings_and_overwrites_nothing(demo, tmp_path):
    before = demo.read_bytes()
    other = sim.RegistrationOptions(**{**SMALL.__dict__, "rotation": 5.0})
    with pytest.raises(DataError, match=r"other settings \(rotation 10.0 \(now 5.0\)\)") as exc:
        sim.ensure_registration_demo(demo, other, demo.with_name("demo_reference.npy"))
    assert str(demo) in str(exc.value)
    assert demo.read_bytes() == before
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["img"] = np.zeros((1, 4, 4), np.uint8)
    with pytest.raises(DataError, match="not written by the registration demo"):
        sim.ensure_registration_demo(foreign, SMALL, tmp_path / "r.npy")
    # a reference volume of other settings beside a missing pair file is refused, not replaced
    np.save(tmp_path / "x_reference.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(DataError, match="holds another volume"):
        sim.ensure_registration_demo(tmp_path / "x.h5", SMALL, tmp_path / "x_reference.npy")
    assert not (tmp_path / "x.h5").exists()


def test_demo_concurrent_starts(tmp_path):
    opts = sim.RegistrationOptions(**{**SMALL.__dict__, "n_pairs": 4})
    path, errors = tmp_path / "c.h5", []

    def start():
        try:
            sim.ensure_registration_demo(path, opts, tmp_path / "c_reference.npy", tmp_path / "c_annotation.npy")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sim.check_registration_demo(path, opts)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_registration_hdf5_roundtrip(tmp_path):
    n, (h, w) = 3, (5, 7)
    fields = np.random.default_rng(0).normal(0, 2, (n, h, w, 2))
    path = sim.write_registration_hdf5(tmp_path / "out.h5", np.full((n, h, w), 0.5), fields, -fields,
                                       [0, 25, 50], [7, 8, 9], [1, 1, 2], attrs={"note": "x"})
    with h5py.File(path, "r") as f:
        assert f["img"].dtype == np.uint8 and int(f["img"][0, 0, 0]) == 128
        assert f["deltas_xy"].dtype == np.float16
        np.testing.assert_allclose(f["inv_deltas_xy"][()], -fields, atol=2e-2)
        assert list(f["image_id"][()]) == [7, 8, 9] and f.attrs["note"] == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]
    with pytest.raises(ValueError, match="deltas_xy"):
        sim.write_registration_hdf5(tmp_path / "bad.h5", np.zeros((n, h, w), np.uint8), fields[:, :, :, :1], None,
                                    [0] * n, [0] * n, [0] * n)


# --- the store ------------------------------------------------------------------------------------


def test_store_reads_the_contract(demo):
    cfg = _hdf5_cfg(demo, inverse=True, annotation=str(demo.with_name("demo_annotation.npy")),
                    holdout={"val": 0.25, "test": 0.0})
    stores = R.load_registration_hdf5(cfg)
    assert set(stores) == {"train", "val"}
    store = stores["train"]
    assert store.target_names == ("registered", "dx", "dy", "inv_dx", "inv_dy", "reference_labels", "moving_labels")
    batch = store.read(np.array([4, 0, 2]))
    assert batch["images"]["reference"].shape == (3, 1, *SHAPE) and batch["images"]["moving"].dtype == np.float32
    assert batch["targets"].shape == (3, 7, *SHAPE) and batch["targets"].dtype == np.float32
    ref = np.load(demo.with_name("demo_reference.npy"))
    labels = np.load(demo.with_name("demo_annotation.npy"))
    with h5py.File(demo, "r") as f:
        for k, pos in enumerate([4, 0, 2]):
            row = int(store.rows[pos])
            one = store.read(np.array([pos]))
            np.testing.assert_array_equal(one["targets"][0], batch["targets"][k])  # in the order asked
            np.testing.assert_allclose(batch["images"]["moving"][k, 0], f["img"][row] / 255.0, rtol=1e-6)
            section = int(round(f["p"][row] / 25))
            np.testing.assert_array_equal(batch["images"]["reference"][k, 0], ref[section])
            np.testing.assert_array_equal(batch["targets"][k, 0], ref[section])
            np.testing.assert_array_equal(batch["targets"][k, 1], f["deltas_xy"][row][..., 0])
            np.testing.assert_array_equal(batch["targets"][k, 2], f["deltas_xy"][row][..., 1])
            np.testing.assert_array_equal(batch["targets"][k, 3], f["inv_deltas_xy"][row][..., 0])
            np.testing.assert_array_equal(batch["targets"][k, 5], labels[section])
            moved = sim.warp(labels[section], f["inv_deltas_xy"][row].astype(np.float32), order=0)
            np.testing.assert_array_equal(batch["targets"][k, 6], moved)
    again = pickle.loads(pickle.dumps(store))  # no open handle crosses processes
    np.testing.assert_array_equal(again.read(np.array([1]))["targets"], store.read(np.array([1]))["targets"])
    store.close()
    assert store.h5._file is None


def test_plain_targets_and_single_reference_image(tmp_path):
    path = _custom_file(tmp_path, drop=("inv_deltas_xy",), p=[0, 10**6, 5, 7, 9, 11])
    np.save(tmp_path / "one.npy", np.full(SHAPE, 0.25, np.float32))  # one (H, W) image for every p
    cfg = _hdf5_cfg(path, reference=str(tmp_path / "one.npy"), holdout={"val": 0, "test": 0})
    store = R.load_registration_hdf5(cfg)["train"]
    assert store.target_names == ("registered", "dx", "dy")
    batch = store.read(np.arange(6))
    assert batch["targets"].shape == (6, 3, *SHAPE) and np.all(batch["images"]["reference"] == 0.25)


def test_augmentation_only_on_train_and_new_per_call(demo):
    aug = {"brightness": 0.2, "contrast": 0.3, "gamma": 0.3, "noise": 0.05}
    cfg = _hdf5_cfg(demo, augment_reference=aug, augment_moving=aug, holdout={"val": 0.25, "test": 0.25})
    stores = R.load_registration_hdf5(cfg)
    plain = R.load_registration_hdf5(_hdf5_cfg(demo, holdout={"val": 0.25, "test": 0.25}))
    idx = np.arange(3)
    first, second = stores["train"].read(idx), stores["train"].read(idx)
    for name in ("reference", "moving"):
        assert not np.allclose(first["images"][name], second["images"][name])
        assert not np.allclose(first["images"][name], plain["train"].read(idx)["images"][name])
        assert 0 <= first["images"][name].min() and first["images"][name].max() <= 1
    np.testing.assert_array_equal(first["targets"], plain["train"].read(idx)["targets"])  # targets untouched
    for split in ("val", "test"):
        a, b = stores[split].read(np.arange(2)), plain[split].read(np.arange(2))
        np.testing.assert_array_equal(a["images"]["moving"], b["images"]["moving"])
        np.testing.assert_array_equal(a["images"]["reference"], b["images"]["reference"])


def test_splits_by_sample_and_by_dataset_id(demo):
    by_sample = R.load_registration_hdf5(_hdf5_cfg(demo, holdout={"val": 0.25, "test": 0.25}))
    rows = {k: set(v.rows.tolist()) for k, v in by_sample.items()}
    assert sum(map(len, rows.values())) == SMALL.n_pairs and not rows["train"] & rows["val"]
    assert {k: len(v) for k, v in rows.items()} == {"train": 6, "val": 3, "test": 3}
    grouped = R.load_registration_hdf5(_hdf5_cfg(demo, group_by="dataset_id", holdout={"val": 0.25, "test": 0.25}))
    with h5py.File(demo, "r") as f:
        ids = f["dataset_id"][()]
    groups = {k: set(ids[v.rows].tolist()) for k, v in grouped.items()}
    assert set(groups) == {"train", "val", "test"}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    assert sum(len(v) for v in grouped.values()) == SMALL.n_pairs
    same = R.load_registration_hdf5(_hdf5_cfg(demo, group_by="dataset_id", holdout={"val": 0.25, "test": 0.25}))
    assert all(np.array_equal(same[k].rows, grouped[k].rows) for k in grouped)  # seeded


# --- bad input: one DataError naming the file and the dataset ---------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"data.path: '.*nothing.h5' not found"):
        R.load_registration_hdf5(_hdf5_cfg(tmp_path / "nothing.h5"))


def test_missing_dataset_did_you_mean(tmp_path):
    path = _custom_file(tmp_path, drop=("deltas_xy",), fields={"deltas": np.zeros((6, *SHAPE, 2))})
    with pytest.raises(DataError, match=r"pairs.h5': no dataset 'deltas_xy'; did you mean 'deltas'\?"):
        R.load_registration_hdf5(_hdf5_cfg(path))


@pytest.mark.parametrize("fields, match", [
    ({"deltas_xy": np.zeros((6, 40, 50, 2))}, r"dataset 'deltas_xy' has shape \(6, 40, 50, 2\) but 'img' has"),
    ({"deltas_xy": np.zeros((6, *SHAPE, 3))}, r"dataset 'deltas_xy' has shape \(6, 40, 57, 3\); expected \(n, H, W, 2\)"),
    ({"img": np.zeros((6, *SHAPE, 3), np.uint8)}, r"dataset 'img' has shape \(6, 40, 57, 3\); expected \(n, H, W\)"),
    ({"p": np.zeros(5)}, r"dataset 'p' has shape \(5,\); expected \(6,\)"),
])
def test_bad_shapes(tmp_path, fields, match):
    path = _custom_file(tmp_path, fields=fields)
    with pytest.raises(DataError, match=match) as exc:
        R.load_registration_hdf5(_hdf5_cfg(path))
    assert str(path) in str(exc.value)


def test_p_outside_the_reference(tmp_path):
    path = _custom_file(tmp_path, p=[0, 25, 50, 75, 250, 0])
    with pytest.raises(DataError, match=r"dataset 'p' holds p = 250 µm \(sample 4, 1 sample\(s\) in all\), section 10 "
                                        r".* of 4 sections: p must be in \[0, 75\] µm") as exc:
        R.load_registration_hdf5(_hdf5_cfg(path))
    assert str(path) in str(exc.value) and "pairs_reference.npy" in str(exc.value)


def test_reference_shape_mismatch(tmp_path):
    path = _custom_file(tmp_path)
    np.save(tmp_path / "pairs_reference.npy", np.zeros((4, 40, 56), np.float32))
    with pytest.raises(DataError, match=r"data.reference: '.*pairs_reference.npy' has sections \(40, 56\) .* "
                                        r"'.*pairs.h5' dataset 'img' are \(40, 57\)"):
        R.load_registration_hdf5(_hdf5_cfg(path))


def test_reference_hdf5_dataset(tmp_path):
    path = _custom_file(tmp_path)
    with h5py.File(tmp_path / "atlas.h5", "w") as f:
        f["volume"] = np.zeros((4, *SHAPE), np.float32)
    with pytest.raises(DataError, match=r"data.reference: '.*atlas.h5' has no dataset 'reference'.*volume"):
        R.load_registration_hdf5(_hdf5_cfg(path, reference=str(tmp_path / "atlas.h5")))
    stores = R.load_registration_hdf5(_hdf5_cfg(path, reference=str(tmp_path / "atlas.h5"),
                                                reference_dataset="volume", holdout={"val": 0, "test": 0}))
    assert stores["train"].read(np.arange(2))["images"]["reference"].shape == (2, 1, *SHAPE)


def test_annotation_shape_mismatch(tmp_path):
    path = _custom_file(tmp_path)
    np.save(tmp_path / "labels.npy", np.zeros((3, *SHAPE), np.int32))
    with pytest.raises(DataError, match=r"data.annotation: '.*labels.npy' has shape \(3, 40, 57\) but the reference "
                                        r"'.*pairs_reference.npy' has \(4, 40, 57\)"):
        R.load_registration_hdf5(_hdf5_cfg(path, annotation=str(tmp_path / "labels.npy")))


def test_inverse_needs_inv_deltas(tmp_path):
    path = _custom_file(tmp_path, drop=("inv_deltas_xy",))
    with pytest.raises(DataError, match=r"pairs.h5': no dataset 'inv_deltas_xy' \(data.inverse: true"):
        R.load_registration_hdf5(_hdf5_cfg(path, inverse=True))


def test_grouping_that_empties_a_split(tmp_path):
    path = _custom_file(tmp_path, dataset_id=np.zeros(6, np.int64))
    with pytest.raises(DataError, match=r"pairs.h5': data.group_by: dataset_id leaves the val split empty: the file "
                                        r"holds 1 dataset_id value"):
        R.load_registration_hdf5(_hdf5_cfg(path, group_by="dataset_id", holdout={"val": 0.5, "test": 0.0}))
    path = _custom_file(tmp_path, dataset_id=np.array([0, 0, 0, 1, 1, 1]))
    with pytest.raises(DataError, match="leaves the train split empty"):
        R.load_registration_hdf5(_hdf5_cfg(path, group_by="dataset_id", holdout={"val": 0.45, "test": 0.45}))
    path = _custom_file(tmp_path, dataset_id=np.array([0, 0, 0, 1, 1, 1]))
    with pytest.raises(DataError, match="leaves the test split empty"):
        R.load_registration_hdf5(_hdf5_cfg(path, group_by="dataset_id", holdout={"val": 0.5, "test": 0.1}))
    path = _custom_file(tmp_path, drop=("dataset_id",))
    with pytest.raises(DataError, match=r"no dataset 'dataset_id' \(data.group_by"):
        R.load_registration_hdf5(_hdf5_cfg(path, group_by="dataset_id"))


# --- the config and the sources end to end --------------------------------------------------------


def test_config_defaults_and_checks(tmp_path):
    cfg = RegistrationHDF5Data.model_validate({"source": "registration_hdf5", "path": "f.h5", "reference": "v.npy",
                                               "section_thickness": 25})
    assert cfg.standardize.images == "none" and cfg.standardize.targets is False
    assert cfg.path.is_absolute() and cfg.inverse is False and cfg.group_by is None
    assert cfg.holdout.val == 0.15 and not cfg.augment_moving.enabled
    partial = _hdf5_cfg(tmp_path / "f.h5", standardize={"targets": False})
    assert partial.standardize.images == "none"
    bad = [({"split": {"val": 0.2}}, "remove data.split"),
           ({"augment": {"flips": ["x"]}}, "data.augment.flips"),
           ({"holdout": {"val": 0.6, "test": 0.5}}, "must leave samples for training"),
           ({"section_thickness": 0}, "greater than 0"),
           ({"group_by": "image_id"}, "dataset_id"),
           ({"augment_moving": {"contrast": 1.5}}, "less than 1")]
    for extra, match in bad:
        with pytest.raises(ValidationError, match=match):
            _hdf5_cfg(tmp_path / "f.h5", **extra)
    demo = RegistrationDemoData.model_validate({"source": "registration_demo", "path": str(tmp_path / "d.h5")})
    assert demo.shape == (80, 114) and demo.shape[1] % 16 != 0 and demo.deformation == "elastic"
    assert demo.reference_file == tmp_path / "d_reference.npy"
    assert demo.annotation_file == tmp_path / "d_annotation.npy"
    assert demo.as_hdf5().source == "registration_hdf5"
    assert RegistrationDemoData.model_validate({"source": "registration_demo", "path": "d.h5",
                                                "annotation": False}).annotation_file is None
    for extra, match in [({"reference": "v.npy"}, "writes its own reference"),
                         ({"elastic_amplitude": 10.0, "elastic_smoothness": 4.0}, "invertible"),
                         ({"shape": [8, 100]}, "16 <= H, W")]:
        with pytest.raises(ValidationError, match=match):
            RegistrationDemoData.model_validate({"source": "registration_demo", "path": "d.h5", **extra})


def test_demo_through_load_config_and_prepare_data(tmp_path):
    data = {"source": "registration_demo", "path": str(tmp_path / "demo.h5"), "n_pairs": 10, "shape": [32, 45],
            "n_sections": 4, "inverse": True, "holdout": {"val": 0.2, "test": 0.2}}
    cfg = load_config({"data": data, "train": {"loss": "mse"}})
    assert isinstance(cfg.data, RegistrationDemoData)
    described = R.describe_registration_demo(cfg.data, "regression")  # nothing written yet
    assert not (tmp_path / "demo.h5").exists()
    assert described.stand_in["train"].targets.shape == (1, 7, 32, 45)
    prepared = prepare_data(cfg)
    assert prepared.sizes() == {"train": 6, "val": 2, "test": 2}
    assert prepared.spec.target_names == ("registered", "dx", "dy", "inv_dx", "inv_dy", "reference_labels",
                                          "moving_labels")
    assert prepared.spec.images["moving"].spatial == (32, 45)
    assert R.describe_registration_hdf5(cfg.data.as_hdf5(), "regression").stand_in.keys() == {"train", "val", "test"}
    with pytest.raises(DataError, match="other settings"):
        R.describe_registration_demo(cfg.data.model_copy(update={"n_pairs": 11}), "regression")
