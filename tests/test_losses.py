"""Losses against numpy / closed-form references, one value per sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit, log_softmax, logsumexp

from deepscope import losses
from deepscope.components import LOSSES
from deepscope.config.common import Component
from deepscope.errors import ConfigError
from deepscope.losses import make_loss

EPS = 1e-7  # Keras' epsilon
RNG = np.random.default_rng(0)
B = 6


def _t(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64)


def _run(name, pred, target, **kw):
    out = LOSSES.get(name)(_t(pred), _t(target) if np.asarray(target).dtype.kind == "f" else
                          torch.tensor(target), **kw)
    assert out.shape == (len(pred),)
    return out.numpy()


REGRESSION = {
    "mse": lambda p, t: (p - t) ** 2,
    "mae": lambda p, t: np.abs(p - t),
    "logcosh": lambda p, t: np.log(np.cosh(p - t)),
    "mape": lambda p, t: 100 * np.abs(p - t) / np.maximum(np.abs(t), EPS),
    "msle": lambda p, t: (np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)) ** 2,
    "poisson": lambda p, t: p - t * np.log(p + EPS),
}


@pytest.mark.parametrize("name", sorted(REGRESSION))
@pytest.mark.parametrize("shape", [(B,), (B, 3), (B, 2, 2)])
def test_regression_losses_per_sample(name, shape):
    pred = RNG.uniform(0.1, 3.0, size=shape)
    target = RNG.uniform(0.1, 3.0, size=shape)
    ref = REGRESSION[name](pred, target).reshape(B, -1).mean(1)
    np.testing.assert_allclose(_run(name, pred, target), ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("delta", [1.0, 0.5, 2.0])
def test_huber_with_delta(delta):
    pred, target = RNG.normal(size=(B, 4)) * 2, RNG.normal(size=(B, 4))
    d = np.abs(pred - target)
    ref = np.where(d <= delta, 0.5 * d ** 2, delta * (d - 0.5 * delta)).mean(1)
    np.testing.assert_allclose(_run("huber", pred, target, delta=delta), ref, rtol=1e-10)
    if delta == 1.0:
        np.testing.assert_allclose(_run("huber", pred, target), ref, rtol=1e-10)


def test_logcosh_is_stable_for_large_errors():
    pred, target = np.array([500.0, -800.0, 0.0]), np.zeros(3)
    out = _run("logcosh", pred, target)
    np.testing.assert_allclose(out, np.abs(pred) - np.log(2.0) * (pred != 0), rtol=1e-12)
    assert out[2] == pytest.approx(0.0, abs=1e-15)


def test_mape_is_in_percent_and_clips_zero_targets():
    out = _run("mape", np.array([1.1, 2.0, 1.0]), np.array([1.0, 4.0, 0.0]))
    np.testing.assert_allclose(out, [10.0, 50.0, 100.0 / EPS], rtol=1e-9)


def test_poisson_and_msle_at_zero():
    np.testing.assert_allclose(_run("poisson", np.zeros(2), np.array([0.0, 2.0])), [0.0, -2.0 * np.log(EPS)],
                               rtol=1e-9)
    np.testing.assert_allclose(_run("msle", np.array([-1.0, 0.0]), np.array([0.0, np.e - 1])), [0.0, 1.0],
                               atol=1e-6)


def _bce_ref(p, t):
    p = np.clip(p, EPS, 1 - EPS)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


@pytest.mark.parametrize("shape", [(B,), (B, 3)])
def test_bce_on_probabilities(shape):
    p, t = RNG.uniform(0.01, 0.99, size=shape), RNG.integers(0, 2, size=shape).astype(float)
    np.testing.assert_allclose(_run("bce", p, t), _bce_ref(p, t).reshape(B, -1).mean(1), rtol=1e-9)


def test_bce_clips_like_keras():
    out = _run("bce", np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(out, [-np.log(EPS), -np.log(EPS), -np.log(1 - EPS)], rtol=1e-6)
    assert np.isfinite(out).all()


def test_bce_soft_targets():
    p, t = np.array([0.3, 0.8]), np.array([0.25, 0.5])
    np.testing.assert_allclose(_run("bce", p, t), _bce_ref(p, t), rtol=1e-10)


@pytest.mark.parametrize("shape", [(B,), (B, 3)])
def test_bce_with_logits(shape):
    rng = np.random.default_rng(len(shape))  # its own draws: the module's RNG depends on which tests ran before
    x, t = rng.normal(size=shape) * 5, rng.uniform(size=shape)
    ref = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    np.testing.assert_allclose(_run("bce_with_logits", x, t), ref.reshape(B, -1).mean(1), rtol=1e-9)
    # equal to bce on sigmoid probabilities where nothing is clipped
    kept = np.abs(x) < 10
    np.testing.assert_allclose(ref[kept], _bce_ref(expit(x), t)[kept], rtol=1e-6)


def test_bce_with_logits_pos_weight():
    x, t = RNG.normal(size=B), RNG.integers(0, 2, size=B).astype(float)
    ref = -(3.0 * t * np.log(expit(x)) + (1 - t) * np.log(1 - expit(x)))
    np.testing.assert_allclose(_run("bce_with_logits", x, t, pos_weight=3.0), ref, rtol=1e-9)


def test_bce_with_logits_is_stable():
    out = _run("bce_with_logits", np.array([200.0, -200.0]), np.array([0.0, 1.0]))
    np.testing.assert_allclose(out, [200.0, 200.0], rtol=1e-12)


def test_cross_entropy_with_labels():
    x, y = RNG.normal(size=(B, 4)) * 3, RNG.integers(0, 4, size=B)
    ref = logsumexp(x, axis=1) - x[np.arange(B), y]
    np.testing.assert_allclose(_run("cross_entropy", x, y), ref, rtol=1e-10)


def test_cross_entropy_with_probabilities():
    x = RNG.normal(size=(B, 4))
    q = RNG.dirichlet(np.ones(4), size=B)
    ref = -(q * log_softmax(x, axis=1)).sum(1)
    np.testing.assert_allclose(_run("cross_entropy", x, q), ref, rtol=1e-10)


def test_cross_entropy_label_smoothing():
    x, y = RNG.normal(size=(B, 5)), RNG.integers(0, 5, size=B)
    q = np.full((B, 5), 0.1 / 5)
    q[np.arange(B), y] += 0.9
    ref = -(q * log_softmax(x, axis=1)).sum(1)
    np.testing.assert_allclose(_run("cross_entropy", x, y, label_smoothing=0.1), ref, rtol=1e-10)


def _cce_ref(p, onehot):
    p = p / p.sum(-1, keepdims=True)
    return -(onehot * np.log(np.clip(p, EPS, 1 - EPS))).sum(-1)


def test_categorical_crossentropy_one_hot_and_labels():
    p = RNG.dirichlet(np.ones(4), size=B)
    y = RNG.integers(0, 4, size=B)
    onehot = np.eye(4)[y]
    ref = _cce_ref(p, onehot)
    np.testing.assert_allclose(ref, -np.log(p[np.arange(B), y]), rtol=1e-10)
    np.testing.assert_allclose(_run("categorical_crossentropy", p, onehot), ref, rtol=1e-10)
    np.testing.assert_allclose(_run("categorical_crossentropy", p, y), ref, rtol=1e-10)
    np.testing.assert_allclose(_run("sparse_categorical_crossentropy", p, y), ref, rtol=1e-10)


def test_categorical_crossentropy_normalizes_and_clips():
    p = np.array([[2.0, 2.0, 4.0], [1.0, 0.0, 0.0]])  # not normalized; a zero probability
    onehot = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = _run("categorical_crossentropy", p, onehot)
    np.testing.assert_allclose(out, [np.log(2.0), -np.log(EPS)], rtol=1e-9)


def test_every_loss_has_per_sample_output_and_gradients():
    for name in LOSSES.names():
        meta = LOSSES.entry(name).meta
        if meta.get("required_config"):
            continue  # perceptual needs a trained run: tests/registration/test_losses.py
        if not LOSSES.get(name).__module__.startswith("deepscope."):
            continue  # a loss another test registered (test_experiment's mse_then_nan)
        if meta["task"] == "multiclass":
            pred = torch.rand(B, 3, dtype=torch.float64) + 0.1
            target = torch.randint(0, 3, (B,))
        elif meta.get("registration") == "field":  # displacement fields (B, nd, *spatial)
            pred = torch.rand(B, 2, 8, 8, dtype=torch.float64)
            target = torch.rand(B, 2, 8, 8, dtype=torch.float64)
        elif meta.get("dense"):  # image losses take (B, C, *spatial)
            pred = torch.rand(B, 1, 8, 8, dtype=torch.float64)
            target = torch.rand(B, 1, 8, 8, dtype=torch.float64)
        else:
            pred = torch.rand(B, 2, dtype=torch.float64) * 0.8 + 0.1
            target = torch.rand(B, 2, dtype=torch.float64)
        pred.requires_grad_(True)
        out = LOSSES.get(name)(pred, target)
        assert out.shape == (B,), name
        out.sum().backward()
        assert torch.isfinite(pred.grad).all(), name


def test_sample_weights_apply_per_sample():
    pred, target = _t(RNG.normal(size=(B, 3))), _t(RNG.normal(size=(B, 3)))
    w = _t(RNG.uniform(size=B))
    weighted = (losses.mse(pred, target) * w).sum() / w.sum()
    ref = np.average(((pred - target) ** 2).numpy().mean(1), weights=w.numpy())
    assert float(weighted) == pytest.approx(ref, rel=1e-12)


# --- make_loss -----------------------------------------------------------------------------------


def test_make_loss_binds_config():
    fn = make_loss(Component(class_name="huber", config={"delta": 0.5}))
    pred, target = _t([0.0, 0.0]), _t([0.25, 2.0])
    np.testing.assert_allclose(fn(pred, target).numpy(), [0.5 * 0.25 ** 2, 0.5 * (2.0 - 0.25)], rtol=1e-12)


def test_make_loss_without_config_and_by_alias():
    fn = make_loss(Component(class_name="mean_squared_error"))
    np.testing.assert_allclose(fn(_t([1.0, 3.0]), _t([0.0, 1.0])).numpy(), [1.0, 4.0])


def test_make_loss_from_a_validated_config():
    from deepscope.config import load_config

    cfg = load_config({"train": {"loss": {"class_name": "HuberLoss", "config": {"delta": 2.0}}}})
    fn = make_loss(cfg.train.loss)
    assert float(fn(_t([0.0]), _t([3.0]))[0]) == pytest.approx(2.0 * (3.0 - 1.0))


def test_make_loss_unknown_option():
    with pytest.raises(ConfigError) as info:
        make_loss(Component(class_name="huber", config={"delt": 0.5}))
    msg = str(info.value)
    assert "train.loss.config.delt" in msg and "did you mean 'delta'" in msg
    with pytest.raises(ConfigError, match="train.loss.config.pred"):
        make_loss(Component(class_name="mse", config={"pred": 1}))
