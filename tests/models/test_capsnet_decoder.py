"""The capsnet's reconstruction decoder: its config, the class mask against a hand computation, the
reconstruction loss against NumPy, and the training system's hook that adds it to the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from deepscope.config.common import Component
from deepscope.config.io import load_config
from deepscope.config.nets.capsnet import CapsNetParams
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.losses import margin
from deepscope.models.nets.capsnet import CapsNet, class_mask
from deepscope.training.system import SupervisedSystem
from deepscope.training.task import Task

TINY = {"conv_channels": 4, "conv_kernel": 3, "primary_types": 2, "primary_dim": 4, "primary_kernel": 3,
        "primary_stride": 2, "class_dim": 5}


def _spec(channels=1, h=12, w=12, classes=3):
    return InputSpec(images={"view": ImageSpec(channels, (h, w))}, target_shape=(), target_kind="label",
                     n_classes=classes)


def _net(channels=1, units=(8,), weight=0.0005, seed=0) -> CapsNet:
    torch.manual_seed(seed)
    cfg = CapsNetParams(**TINY, decoder={"use": True, "units": list(units), "weight": weight})
    return CapsNet(_spec(channels), cfg)


def np_decoder(net: CapsNet, masked: np.ndarray) -> np.ndarray:
    """Dense + ReLU layers, then a sigmoid, from the decoder's own weights: (B, K*D) -> (B, C*H*W)."""
    linears = [m for m in net.decoder.modules() if isinstance(m, nn.Linear)]
    h = masked
    for k, lin in enumerate(linears):
        h = h @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
        h = np.maximum(h, 0) if k < len(linears) - 1 else 1 / (1 + np.exp(-h))
    return h


def test_the_decoder_is_off_by_default_and_adds_no_parameters():
    cfg = CapsNetParams(**TINY)
    assert cfg.decoder.use is False and cfg.decoder.units == [512, 1024] and cfg.decoder.weight == 0.0005
    plain = CapsNet(_spec(), cfg)
    assert plain.decoder is None and not any(n.startswith("decoder") for n, _ in plain.named_parameters())
    plain({"view": torch.randn(2, 1, 12, 12)})
    assert plain.auxiliary_loss(torch.tensor([0, 1])).item() == 0.0
    with pytest.raises(RuntimeError, match="no decoder; build it with decoder.use: true"):
        plain.reconstruct()


@pytest.mark.parametrize("bad, message", [
    ({"weight": -0.1}, "greater than or equal to 0"),
    ({"units": [512, 0]}, "greater than 0"),
    ({"use": True, "unit": [8]}, "Extra inputs are not permitted"),
])
def test_bad_decoder_values_name_their_key(bad, message):
    with pytest.raises(ValidationError, match=message) as info:
        CapsNetParams(decoder=bad)
    assert "decoder." in str(info.value)
    with pytest.raises(ConfigError, match=r"model\.decoder\."):
        load_config({"name": "caps", "data": {"source": "sklearn_digits"},
                     "model": {"architecture": "capsnet", "decoder": bad}, "train": {"loss": "margin"}})


@pytest.mark.parametrize("channels", [1, 2])
def test_reconstruction_has_the_input_shape(channels):
    net = _net(channels, units=(8, 16))
    x = torch.rand(3, channels, 12, 12)
    net({"view": x})
    recon = net.reconstruct(torch.tensor([0, 2, 1]))
    assert recon.shape == x.shape and ((recon > 0) & (recon < 1)).all()
    assert net.reconstruct().shape == x.shape
    widths = [(3 * 5, 8), (8, 16), (16, channels * 144)]  # classes x class_dim -> units -> C*H*W
    assert sum(p.numel() for p in net.decoder.parameters()) == sum(i * o + o for i, o in widths)


def test_reconstruct_needs_a_forward_first():
    with pytest.raises(RuntimeError, match="call the net first"):
        _net().reconstruct()


def test_class_mask_against_a_hand_computation():
    # lengths: sample 0 (0.1, 0.5, 0.3) -> class 1 is longest; sample 1 (0.6, 0.2, 0.1) -> class 0
    v = torch.tensor([[[0.1, 0.0], [0.3, 0.4], [0.0, 0.3]],
                      [[0.0, 0.6], [0.2, 0.0], [0.06, 0.08]]])
    assert class_mask(v).tolist() == [[0, 1, 0], [1, 0, 0]]
    assert class_mask(v, torch.tensor([2, 1])).tolist() == [[0, 0, 1], [0, 1, 0]]
    assert class_mask(v, torch.tensor([[0.0, 0, 1], [0, 1, 0]])).tolist() == [[0, 0, 1], [0, 1, 0]]


def test_the_mask_is_the_true_class_in_training_and_the_longest_capsule_in_eval():
    net = _net(weight=1.0).double()
    with torch.no_grad():
        net.weight.mul_(100.0)  # long capsules: the decoder's input then depends clearly on the mask
    x = torch.rand(4, 1, 12, 12, dtype=torch.float64)
    net({"view": x})
    v = net._last[0].detach().numpy()  # (B, K, D)
    longest = np.linalg.norm(v, axis=-1).argmax(1)
    labels = (longest + 1) % 3  # never the longest capsule, so the two masks differ everywhere
    expected, recons = {}, {}
    for mode, classes in (("train", labels), ("eval", longest)):
        masked = v * np.eye(3)[classes][:, :, None]
        recons[mode] = np_decoder(net, masked.reshape(4, -1))
        expected[mode] = ((recons[mode] - x.numpy().reshape(4, -1)) ** 2).sum(1).mean()
    assert np.abs(recons["train"] - recons["eval"]).max() > 1e-3  # the two masks give different images
    target = torch.from_numpy(labels)
    net.train()
    np.testing.assert_allclose(net.auxiliary_loss(target).item(), expected["train"], rtol=1e-10)
    net.eval()
    np.testing.assert_allclose(net.auxiliary_loss(target).item(), expected["eval"], rtol=1e-10)
    np.testing.assert_allclose(net.reconstruct().detach().numpy().reshape(4, -1), recons["eval"], rtol=1e-10)


@pytest.mark.parametrize("one_hot", [False, True])
def test_auxiliary_loss_is_the_weight_times_the_summed_squared_error(one_hot):
    weight = 0.25
    net = _net(channels=2, units=(8, 6), weight=weight).double()
    x = torch.rand(5, 2, 12, 12, dtype=torch.float64)
    labels = np.array([0, 1, 2, 1, 0])
    net({"view": x})
    target = torch.from_numpy(np.eye(3)[labels] if one_hot else labels)
    recon = net.reconstruct(target).detach().numpy()
    v = net._last[0].detach().numpy()
    masked = v * np.eye(3)[labels][:, :, None]  # (B, K, D): zero but the labelled capsule
    np.testing.assert_allclose(recon.reshape(5, -1), np_decoder(net, masked.reshape(5, -1)), rtol=1e-10)
    expected = weight * ((recon - x.numpy()) ** 2).sum(axis=(1, 2, 3)).mean()
    np.testing.assert_allclose(net.auxiliary_loss(target).item(), expected, rtol=1e-10)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # a training step outside a Trainer
def test_the_system_adds_the_reconstruction_loss_in_training_and_the_decoder_gets_gradients():
    net = _net(units=(8,), weight=0.5)
    system = SupervisedSystem(net, margin, Task("margin", _spec()), Component(class_name="adam"))
    assert system._auxiliary_loss
    assert not SupervisedSystem(nn.Linear(2, 3), margin, Task("margin", InputSpec(scalars=2)),
                                Component(class_name="adam"))._auxiliary_loss
    batch = {"images": {"view": torch.rand(4, 1, 12, 12)}, "targets": torch.tensor([0, 1, 2, 1])}
    system.train()
    loss = system.training_step(batch, 0)
    data = margin(net({"view": batch["images"]["view"]}), batch["targets"]).mean()
    torch.testing.assert_close(loss, data + net.auxiliary_loss(batch["targets"]))
    loss.backward()
    grads = [p.grad for p in net.decoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    system.eval()
    with torch.no_grad():
        torch.testing.assert_close(system._step(batch, "val"), data.detach())  # validation: the data loss only
