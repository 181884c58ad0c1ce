"""The capsule network: squash, routing and the margin loss against NumPy references written here,
shapes, parameter counts, errors, and a short training run that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope.config.nets.capsnet import CapsNetParams
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.losses import margin
from deepscope.models.nets.capsnet import CapsNet, route, squash


def np_squash(s: np.ndarray) -> np.ndarray:
    """v = |s|^2 / (1 + |s|^2) * s / |s|, vector by vector."""
    out = np.zeros_like(s)
    flat, res = s.reshape(-1, s.shape[-1]), out.reshape(-1, s.shape[-1])
    for k, vec in enumerate(flat):
        norm = np.sqrt(np.sum(vec ** 2))
        if norm > 0:
            res[k] = norm ** 2 / (1 + norm ** 2) * vec / norm
    return out


def np_route(u_hat: np.ndarray, iterations: int) -> np.ndarray:
    """Procedure 1 of Sabour et al. (2017), with explicit loops over the capsules."""
    batch, n_in, n_out, _ = u_hat.shape
    out = np.zeros((batch, n_out, u_hat.shape[-1]))
    for b_idx in range(batch):
        logits = np.zeros((n_in, n_out))
        for r in range(iterations):
            c = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            v = np.stack([np_squash(sum(c[i, j] * u_hat[b_idx, i, j] for i in range(n_in))) for j in range(n_out)])
            if r < iterations - 1:
                for i in range(n_in):
                    for j in range(n_out):
                        logits[i, j] += u_hat[b_idx, i, j] @ v[j]
        out[b_idx] = v
    return out


def np_margin(lengths: np.ndarray, labels: np.ndarray, m_plus=0.9, m_minus=0.1, lam=0.5) -> np.ndarray:
    t = np.eye(lengths.shape[1])[labels]
    return (t * np.maximum(0, m_plus - lengths) ** 2 + lam * (1 - t) * np.maximum(0, lengths - m_minus) ** 2).sum(1)


def test_squash_matches_numpy_and_keeps_directions():
    s = np.random.default_rng(0).normal(size=(5, 7, 8)) * np.array([0.01, 0.1, 1, 10, 100])[:, None, None]
    v = squash(torch.from_numpy(s)).numpy()
    np.testing.assert_allclose(v, np_squash(s), rtol=1e-6, atol=1e-9)
    lengths = np.linalg.norm(v, axis=-1)
    assert (lengths < 1).all() and lengths[-1].min() > 0.999  # long vectors saturate towards 1
    cos = (v * s).sum(-1) / (lengths * np.linalg.norm(s, axis=-1))
    np.testing.assert_allclose(cos, 1.0, rtol=1e-6)
    assert not torch.isnan(squash(torch.zeros(2, 4))).any()


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_routing_matches_the_papers_procedure(iterations):
    u_hat = np.random.default_rng(iterations).normal(size=(2, 6, 3, 4))
    v = route(torch.from_numpy(u_hat), iterations).numpy()
    np.testing.assert_allclose(v, np_route(u_hat, iterations), rtol=1e-6, atol=1e-9)


def test_routing_sends_agreeing_predictions_to_their_capsule():
    # five input capsules all predict the same vector for output 0 and random ones for output 1: routing
    # must raise the coupling to output 0, so its capsule is longer after 3 iterations than after 1
    rng = np.random.default_rng(1)
    u_hat = np.empty((1, 5, 2, 4))
    u_hat[0, :, 0] = [0.5, 0.5, 0.0, 0.0]
    u_hat[0, :, 1] = rng.normal(scale=0.5, size=(5, 4))
    one, three = (route(torch.from_numpy(u_hat), k).norm(dim=-1).numpy()[0] for k in (1, 3))
    assert three[0] > one[0] and three[1] < one[1]


def test_margin_loss_matches_the_formula_for_labels_and_multi_hot():
    rng = np.random.default_rng(2)
    lengths, labels = rng.uniform(0, 1, size=(16, 4)), rng.integers(0, 4, 16)
    got = margin(torch.from_numpy(lengths), torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(got, np_margin(lengths, labels), rtol=1e-12)
    hot = np.eye(4)[labels]
    np.testing.assert_allclose(margin(torch.from_numpy(lengths), torch.from_numpy(hot)).numpy(), got, rtol=1e-12)
    perfect = np.where(hot > 0, 0.95, 0.05)
    assert margin(torch.from_numpy(perfect), torch.from_numpy(labels)).abs().max() == 0


def _spec(h=28, w=28, channels=1, classes=10):
    return InputSpec(images={"view": ImageSpec(channels, (h, w))}, target_shape=(), target_kind="label",
                     n_classes=classes)


def test_papers_mnist_layout_shapes_and_parameter_count():
    net = CapsNet(_spec(), CapsNetParams())
    out = net({"view": torch.randn(2, 1, 28, 28)})
    assert out.shape == (2, 10) and ((out >= 0) & (out < 1)).all()
    assert net.weight.shape == (1152, 10, 16, 8)  # the paper's 32 x 6 x 6 primary capsules
    conv = 1 * 256 * 81 + 256
    primary = 256 * 256 * 81 + 256
    assert sum(p.numel() for p in net.parameters()) == conv + primary + 1152 * 10 * 16 * 8


def test_small_views_backward_and_the_size_error():
    cfg = CapsNetParams(conv_channels=8, conv_kernel=3, primary_types=4, primary_dim=4, primary_kernel=3,
                        primary_stride=1, class_dim=6)
    net = CapsNet(_spec(9, 113, classes=4), cfg)  # SuperNEMO's top view: 9 layers x 113 columns
    out = net({"view": torch.randn(3, 1, 9, 113)})
    out.sum().backward()
    assert out.shape == (3, 4) and all(p.grad is not None for p in net.parameters())
    with pytest.raises(ConfigError, match="too small for capsnet's conv_kernel 9 and primary_kernel 9"):
        CapsNet(_spec(9, 113, classes=4), CapsNetParams())


def test_several_images_are_refused():
    spec = InputSpec(images={"top": ImageSpec(1, (9, 113)), "side": ImageSpec(1, (30, 113))}, target_shape=(),
                     target_kind="label", n_classes=4)
    with pytest.raises(ConfigError, match="takes one image; the data has 2"):
        CapsNet(spec, CapsNetParams())


@pytest.mark.slow
def test_capsnet_learns_digits_far_above_the_majority_class(tmp_path):
    import deepscope

    result = deepscope.train({
        "name": "caps", "log": {"dir": str(tmp_path), "progress_bar": "none", "tensorboard": False, "figures": False},
        "data": {"source": "sklearn_digits", "n_samples": 600},
        "model": {"architecture": "capsnet", "conv_channels": 16, "conv_kernel": 3, "primary_types": 8,
                  "primary_kernel": 3, "primary_stride": 1, "class_dim": 8},
        "train": {"epochs": 3, "batch_size": 32, "loss": "margin", "metrics": ["accuracy"]},
    })
    assert result.metrics["test"]["accuracy"] > 0.6  # the majority class is about 0.1
