"""Registration losses against independent numpy references, 2D and 3D."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepscope import losses as base_losses
from deepscope.components import LOSSES
from deepscope.errors import ConfigError, DataError
from deepscope.registration import losses as L

SPATIAL = {2: (10, 11), 3: (6, 7, 8)}


def _images(nd: int, b: int = 2, c: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, *SPATIAL[nd], generator=g)
    y = (0.6 * x + 0.4 * torch.rand(b, c, *SPATIAL[nd], generator=g)).clamp(0, 1)
    return x, y


def _fields(nd: int, b: int = 2, scale: float = 2.0, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(b, nd, *SPATIAL[nd], generator=g),
            scale * torch.randn(b, nd, *SPATIAL[nd], generator=g))


# --- numpy references ----------------------------------------------------------------------------


def _ncc_numpy(pred: np.ndarray, target: np.ndarray, window: int) -> np.ndarray:
    """A direct loop over windows, TensorFlow 'SAME' placement, zeros outside."""
    pred, target = pred.astype(np.float64), target.astype(np.float64)
    nd = pred.ndim - 2
    before, after = (window - 1) // 2, window // 2
    pad = [(0, 0), (0, 0)] + [(before, after)] * nd
    i_pad, j_pad = np.pad(pred, pad), np.pad(target, pad)
    n = window ** nd
    out = np.zeros(pred.shape[0])
    for b in range(pred.shape[0]):
        ccs = []
        for c in range(pred.shape[1]):
            for p in np.ndindex(*pred.shape[2:]):
                box = tuple(slice(q, q + window) for q in p)
                wi, wj = i_pad[b, c][box], j_pad[b, c][box]
                si, sj = wi.sum(), wj.sum()
                cross = (wi * wj).sum() - si * sj / n
                vi = (wi * wi).sum() - si * si / n
                vj = (wj * wj).sum() - sj * sj / n
                ccs.append(cross ** 2 / (vi * vj + 1e-5))
        out[b] = 1 - np.mean(ccs)
    return out


def _det_numpy(field: np.ndarray) -> np.ndarray:
    """det(I + ∇Δ) with np.gradient, x first (channel i moves along the spatial axis nd - 1 - i)."""
    b, nd = field.shape[:2]
    dets = []
    for s in range(b):
        jac = np.zeros((*field.shape[2:], nd, nd))
        for i in range(nd):
            grads = np.gradient(field[s, i], axis=tuple(range(nd)))
            for j in range(nd):
                jac[..., i, j] = grads[nd - 1 - j] + (1.0 if i == j else 0.0)
        dets.append(np.linalg.det(jac))
    return np.stack(dets)


# --- image losses --------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [3, 4, 5, 12])
def test_ncc_matches_numpy_window_loop_2d(window):
    x, y = _images(2, c=2)
    got = L.ncc(x, y, window=window).numpy()
    np.testing.assert_allclose(got, _ncc_numpy(x.numpy(), y.numpy(), window), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window", [3, 4])
def test_ncc_matches_numpy_window_loop_3d(window):
    x, y = _images(3)
    got = L.ncc(x, y, window=window).numpy()
    np.testing.assert_allclose(got, _ncc_numpy(x.numpy(), y.numpy(), window), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,window", [("ncc_5", 5), ("ncc_9", 9), ("ncc_12", 12), ("ncc_20", 20)])
def test_fixed_window_ncc(name, window):
    x, y = _images(2)
    torch.testing.assert_close(getattr(L, name)(x, y), L.ncc(x, y, window=window))


def test_ncc_rejects_bad_window():
    x, y = _images(2)
    with pytest.raises(ConfigError, match="window"):
        L.ncc(x, y, window=0)


def test_pearson_matches_corrcoef():
    x, y = _images(2, c=2)
    expected = [1 - np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(x.numpy(), y.numpy())]
    np.testing.assert_allclose(L.pearson(x, y).numpy(), expected, rtol=1e-4, atol=1e-6)


def test_psnr_matches_formula():
    x, y = _images(2)
    mse = ((x.numpy().astype(np.float64) - y.numpy()) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(L.psnr(x, y).numpy(), -10 * np.log10(1.0 / mse), rtol=1e-5)
    assert torch.equal(L.psnr(x, x), torch.full((2,), -100.0))


def test_mse_mae_ssim_are_the_base_losses():
    assert L.mse is base_losses.mse and L.mae is base_losses.mae and L.ssim is base_losses.ssim


# --- field losses --------------------------------------------------------------------------------


@pytest.mark.parametrize("nd", [2, 3])
def test_vector_distance_and_vdclip_match_numpy(nd):
    p, t = _fields(nd)
    d = p.numpy().astype(np.float64) - t.numpy()
    vd = np.sqrt((d ** 2).sum(1) + 1e-3).reshape(2, -1).mean(1)
    np.testing.assert_allclose(L.vector_distance(p, t).numpy(), vd, rtol=1e-5)
    np.testing.assert_allclose(L.vdclip(p, t, threshold=3.0, power=1.5).numpy(), (vd / 3.0) ** 1.5, rtol=1e-5)
    np.testing.assert_allclose(L.vdclip2(p, t).numpy(), (vd / 20) ** 2, rtol=1e-5)
    np.testing.assert_allclose(L.vdclip3(p, t).numpy(), (vd / 20) ** 3, rtol=1e-5)


@pytest.mark.parametrize("nd", [2, 3])
def test_grad_matches_np_diff(nd):
    p, t = _fields(nd)
    f = p.numpy().astype(np.float64)
    expected = sum((np.diff(f, axis=a) ** 2).reshape(2, -1).mean(1) for a in range(2, 2 + nd))
    np.testing.assert_allclose(L.grad(p, t).numpy(), expected, rtol=1e-5)
    torch.testing.assert_close(L.grad(p, t), L.grad(p, torch.zeros_like(t)))  # the target is ignored


@pytest.mark.parametrize("nd", [2, 3])
def test_jacobian_matches_np_gradient(nd):
    p, _ = _fields(nd, scale=1.0)
    det = _det_numpy(p.numpy().astype(np.float64))
    expected = np.maximum(-det, 0).reshape(2, -1).mean(1)
    assert expected.min() > 0  # the random fields fold: the test checks a non-trivial value
    np.testing.assert_allclose(L.jacobian(p, None).numpy(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("nd", [2, 3])
def test_dvf2img_is_the_image_loss_on_scaled_channels(nd):
    p, t = _fields(nd)
    for name in ("ncc_5", "mse", "pearson"):
        fn = LOSSES.get(name)
        expected = torch.stack([fn(p[:, c:c + 1] / 4.0, t[:, c:c + 1] / 4.0) for c in range(nd)]).mean(0)
        torch.testing.assert_close(L.dvf2img(p, t, loss=name, scale=4.0), expected)
    torch.testing.assert_close(L.dvf2img(p, t), L.dvf2img(p, t, loss=L.ncc_9, scale=10.0))


def test_dvf2img_unknown_loss_names_the_options():
    p, t = _fields(2)
    with pytest.raises(ConfigError, match="did you mean 'ncc_9'.*available"):
        L.dvf2img(p, t, loss="ncc_99")


def test_field_losses_reject_images():
    x, y = _images(2, c=3)
    with pytest.raises(DataError, match="field"):
        L.vector_distance(x, y)


# --- every loss: shapes, gradients, minimum ------------------------------------------------------

# the registry's registration losses (atlalign's ALL_IMAGE_LOSSES / ALL_DVF_LOSSES) and the image losses
# they share with every family; perceptual needs a trained run (tested below)
IMAGE_NAMES = [n for n in LOSSES.names() if LOSSES.entry(n).meta.get("registration") == "image"
               and n != "perceptual"] + ["mse", "mae", "ssim"]
FIELD_NAMES = [n for n in LOSSES.names() if LOSSES.entry(n).meta.get("registration") == "field"]


def test_the_registry_holds_atlaligns_losses():
    assert {"ncc", "ncc_5", "ncc_9", "ncc_12", "ncc_20", "pearson", "psnr"} <= set(IMAGE_NAMES)
    assert set(FIELD_NAMES) == {"vector_distance", "vdclip", "vdclip2", "vdclip3", "grad", "jacobian", "dvf2img"}


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("name", IMAGE_NAMES + FIELD_NAMES)
def test_loss_is_per_sample_with_finite_gradients(name, nd):
    image = name in IMAGE_NAMES
    pred, target = _images(nd, b=3) if image else _fields(nd, b=3)
    pred = pred.clone().requires_grad_(True)
    fn = LOSSES.get(name)
    value = fn(pred, target)
    assert value.shape == (3,) and torch.isfinite(value).all()
    value.sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


@pytest.mark.parametrize("nd", [2, 3])
def test_perfect_prediction_gives_the_minimum(nd):
    x, y = _images(nd)
    p, _ = _fields(nd)
    for name in ("ncc", "ncc_5", "pearson", "mse", "mae", "ssim"):
        torch.testing.assert_close(LOSSES.get(name)(x, x), torch.zeros(2), atol=1e-5, rtol=0)
        assert (LOSSES.get(name)(x, y) > 1e-3).all()
    assert torch.equal(L.psnr(x, x), torch.full((2,), -100.0))
    floor = float(np.sqrt(1e-3))
    torch.testing.assert_close(L.vector_distance(p, p), torch.full((2,), floor))
    torch.testing.assert_close(L.vdclip2(p, p), torch.full((2,), (floor / 20) ** 2))
    torch.testing.assert_close(L.dvf2img(p, p, loss="mse"), torch.zeros(2))
    translation = torch.ones_like(p) * 3.0  # smooth, nothing folds
    assert torch.equal(L.grad(translation, p), torch.zeros(2))
    assert torch.equal(L.jacobian(translation, p), torch.zeros(2))


# --- perceptual ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny trained run: the digits example for one epoch (about 2 s)."""
    import yaml

    from deepscope.training.experiment import train

    with open(Path(__file__).parents[2] / "configs" / "digits.yaml") as f:
        cfg = yaml.safe_load(f)
    log_dir = tmp_path_factory.mktemp("runs")
    result = train(cfg, overrides=["train.epochs=1", f"log.dir={log_dir}", "log.tensorboard=false",
                                   "log.figures=false", "model.cnn.n_init_filters=4", "model.top.units=[16,10]"])
    return result.run_dir


def test_perceptual_distance(digits_run):
    x, y = _images(2, b=3)
    x = x[..., :8, :8].contiguous().requires_grad_(True)
    y = y[..., :8, :8].contiguous()
    value = L.perceptual(x, y, run=str(digits_run))
    assert value.shape == (3,) and (value > 0).all()
    value.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.equal(L.perceptual(y, y, run=str(digits_run)), torch.zeros(3))
    # a checkpoint file names the same run; more layers add terms
    ckpt = next((digits_run / "checkpoints").glob("*.ckpt"))
    more = L.perceptual(x, y, run=ckpt, layers=4)
    assert (more > L.perceptual(x, y, run=ckpt, layers=1)).all()


def test_perceptual_matches_features_by_hand_and_stops_early(digits_run):
    net, name, _, _, _ = L._run_net(digits_run, torch.device("cpu"))
    assert L._run_net(digits_run, torch.device("cpu"))[0] is net  # loaded once
    linear_calls = []
    handle = next(m for m in net.modules() if isinstance(m, torch.nn.Linear)).register_forward_hook(
        lambda *a: linear_calls.append(1))
    try:
        x, y = _images(2, b=2, seed=3)  # 10x11: the dense layers could not take this size; they never run
        got = L.perceptual(x, y, run=digits_run, layers=2)
    finally:
        handle.remove()
    assert not linear_calls
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][:2]
    feats = []
    handles = [c.register_forward_hook(lambda m, a, o: feats.append(o.numpy())) for c in convs]
    try:
        with torch.no_grad():
            net.cnn(torch.cat([x, y]))
    finally:
        for h in handles:
            h.remove()
    expected = np.zeros(2)
    for f in feats[:2]:
        f = f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-10)
        expected += ((f[:2] - f[2:]) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_perceptual_errors(digits_run, tmp_path):
    x, y = _images(2)
    with pytest.raises(DataError, match="holds no deepscope run"):
        L.perceptual(x, y, run=tmp_path)
    x3, y3 = _images(3)
    with pytest.raises(DataError, match="2D images"):
        L.perceptual(x3, y3, run=digits_run)
    x2, y2 = _images(2, c=2)
    with pytest.raises(DataError, match="1-channel"):
        L.perceptual(x2, y2, run=digits_run)
    with pytest.raises(DataError, match="convolutions"):
        L.perceptual(x, y, run=digits_run, layers=50)
    with pytest.raises(ConfigError, match="config.run"):
        L.perceptual(x, y)


def test_perceptual_repeats_one_channel_and_feeds_zero_scalars(tmp_path, monkeypatch):
    from deepscope.data.spec import ImageSpec, InputSpec

    class TwoInputNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
            self.dense = torch.nn.Linear(10 ** 6, 1)  # would fail on these images if it ran

        def forward(self, images, scalars=None):
            assert scalars is not None and scalars.shape == (4, 5) and not scalars.any()
            assert images["a"].shape[1] == 2
            return self.dense(self.conv(images["a"]).flatten(1))

    net = TwoInputNet().eval()
    spec = InputSpec(images={"a": ImageSpec(2, (8, 8))}, scalars=5)
    monkeypatch.setitem(L._NETS, (str(tmp_path.resolve()), "cpu"), (net, "a", 2, 2, spec))
    x, y = _images(2)
    conv = net.conv(torch.cat([x, y]).expand(-1, 2, -1, -1)).detach().numpy()
    conv = conv / (np.linalg.norm(conv, axis=1, keepdims=True) + 1e-10)
    expected = ((conv[:2] - conv[2:]) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(L.perceptual(x, y, run=tmp_path, layers=1).detach().numpy(), expected, rtol=1e-5)
