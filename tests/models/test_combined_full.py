"""The full combined model: gate net, upsampling, FiLM generator, network in network, submodel names,
assembly order, 2D/3D backprop with everything on, and the errors for bad combinations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepscope.config.model import CombinedParams
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError, DataError
from deepscope.models.blocks import FiLM, GateNet
from deepscope.models.build import build_model
from deepscope.models.layers import DropBlock, EnergyUpsample
from deepscope.models.nets.combined import build_combined
from deepscope.models.regularization import apply_constraints, layer_reg_of, regularization_penalty
from deepscope.models.summary import summarize

SUBMODELS = ("scalar_net", "track_net", "gate_net", "FiLM_gen", "cnn", "network_in_network", "top")


def _params(**model):
    base = {"cnn": {"n_init_filters": 2, "init_kernel_size": 3, "activation": "relu"},
            "scalar_net": {"units": [4], "activation": "relu"},
            "track_net": {"phi_units": [5], "rho_units": [3], "activation": "relu"},
            "top": {"units": [6, 1], "activation": "relu"}}
    for key, value in model.items():
        base[key] = {**base.get(key, {}), **value}
    return CombinedParams.model_validate(base)


def _inputs(spec, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = {"images": {k: torch.randn(b, v.channels, *v.spatial, generator=g) for k, v in spec.images.items()}}
    if spec.scalars:
        inputs["scalars"] = torch.randn(b, spec.scalars, generator=g)
    if spec.tracks:
        tracks = torch.randn(b, *spec.tracks, generator=g)
        tracks[:, 2:] = 0
        inputs["tracks"] = tracks
    return inputs


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


# --- names and assembly ----------------------------------------------------------------------------


def test_submodel_names_are_deepcalos():
    net = build_combined(InputSpec(images={"calo": ImageSpec(1, (6, 6))}), _params())
    for name in SUBMODELS:
        assert hasattr(net, name)
    assert net.gate_net is None and net.FiLM_gen is None and net.network_in_network is None
    assert net.scalar_net is None and net.track_net is None and net.upsampling is None
    assert {n.split(".")[0] for n, _ in net.named_parameters()} == {"cnn", "top"}


def test_scalar_net_connected_only_to_film_exists_and_feeds_only_the_generator():
    spec = InputSpec(images={"calo": ImageSpec(1, (6, 6))}, scalars=3)
    net = build_combined(spec, _params(scalar_net={"connect_to": ["FiLM_gen"]}, FiLM_gen={"use": True, "units": [5]}))
    assert net.scalar_net is not None and net.FiLM_gen is not None
    assert net.FiLM_gen.hidden.layers[0].linear.in_features == 4
    assert net.top.hidden.layers[0].linear.in_features == net.cnn.out_features  # scalars not in the top
    assert net.FiLM_gen.out_features == 2 * 2 * (2**1 - 1)
    inputs = _inputs(spec)
    out = net(**inputs)
    film = net.FiLM_gen(net.scalar_net(inputs["scalars"]))
    torch.testing.assert_close(out, net.top(net.cnn(inputs["images"]["calo"], film)))


def test_film_from_scalars_and_tracks_in_that_order():
    spec = InputSpec(images={"calo": ImageSpec(1, (6, 6))}, scalars=3, tracks=(4, 2))
    p = _params(cnn={"block_depths": [1, 1], "normalization": "batch"},
                scalar_net={"connect_to": ["top", "FiLM_gen"]}, track_net={"connect_to": ["FiLM_gen"]},
                FiLM_gen={"use": True, "units": []})
    net = build_combined(spec, p).eval()
    assert net.FiLM_gen.output.in_features == 4 + 3 and net.FiLM_gen.out_features == 2 * 2 * 3
    assert sum(isinstance(m, FiLM) for m in net.cnn.modules()) == 2
    inputs = _inputs(spec)
    s, t = net.scalar_net(inputs["scalars"]), net.track_net(inputs["tracks"])
    film = net.FiLM_gen(torch.cat([s, t], 1))
    ref = net.top(torch.cat([net.cnn(inputs["images"]["calo"], film), s], 1))  # tracks feed only the generator
    torch.testing.assert_close(net(**inputs), ref)


def test_nin_replaces_the_cnn_output_in_the_top():
    spec = InputSpec(images={"calo": ImageSpec(1, (6, 6))}, scalars=3)
    p = _params(cnn={"block_depths": [1, 1]},
                network_in_network={"use": True, "units": [5, 3], "strides": 2, "activation": "relu"})
    net = build_combined(spec, p).eval()
    assert net.cnn.out_shape == (4, 6, 6)
    assert net.network_in_network.out_shape == (3, 2, 2)
    assert net.top.hidden.layers[0].linear.in_features == 3 * 2 * 2 + 4
    inputs = _inputs(spec)
    maps = net.cnn(inputs["images"]["calo"])
    assert maps.shape == (3, 4, 6, 6)  # the CNN hands over its maps
    ref = net.top(torch.cat([net.network_in_network(maps), net.scalar_net(inputs["scalars"])], 1))
    torch.testing.assert_close(net(**inputs), ref)
    pooled = build_combined(spec, _params(network_in_network={"use": True, "units": [5], "globalavgpool": True}))
    assert pooled.top.hidden.layers[0].linear.in_features == 5 + 4


# --- gate net in the model -------------------------------------------------------------------------


@pytest.mark.parametrize("merge", ["multiply", "concatenate"])
def test_gate_net_merges_into_its_partner(merge):
    spec = InputSpec(images={"em": ImageSpec(2, (5, 5)), "gate_em": ImageSpec(2, (5, 5)), "had": ImageSpec(1, (5, 5))})
    p = _params(gate_net={"units": [], "final_activation": "gauss", "merge_method": merge})
    net = build_combined(spec, p)
    assert isinstance(net.gate_net, GateNet) and net.image_names == ["em", "had"]
    assert net.cnn.blocks[0][0].conv.conv.in_channels == (2 if merge == "multiply" else 4) + 1
    images = _inputs(spec)["images"]
    x = net.merged_images(images)
    gated = images["em"] * torch.exp(-images["gate_em"] ** 2)
    parts = [gated] if merge == "multiply" else [images["em"], gated]
    torch.testing.assert_close(x, torch.cat([*parts, images["had"]], 1))


def test_gate_net_parameter_count_and_sharing():
    spec = InputSpec(images={"a": ImageSpec(1, (4, 4)), "gate_a": ImageSpec(1, (4, 4)),
                             "b": ImageSpec(1, (4, 4)), "gate_b": ImageSpec(1, (4, 4))})
    p = _params(gate_net={"units": [3], "use_res": True, "final_activation": "pgauss", "final_activation_init": [2.0]})
    net = build_combined(spec, p)
    assert _n_params(net.gate_net) == (1 * 3 + 3) + (3 * 1 + 1) + 1  # one net for both images
    assert float(net.gate_net.final_activation.alpha.detach()) == 2.0
    out = net(**_inputs(spec))
    out.sum().backward()
    assert net.gate_net.final_activation.alpha.grad is not None


def test_gate_without_partner_or_of_another_shape():
    with pytest.raises(DataError, match=r"images\['gate_x'\] has no partner image 'x'"):
        build_combined(InputSpec(images={"y": ImageSpec(1, (4, 4)), "gate_x": ImageSpec(1, (4, 4))}), _params())
    with pytest.raises(DataError, match=r"images\['gate_x'\] has 2 channel\(s\) of 4x4 but its partner images\['x'\]"):
        build_combined(InputSpec(images={"x": ImageSpec(1, (4, 4)), "gate_x": ImageSpec(2, (4, 4))}), _params())
    with pytest.raises(DataError, match="4x5"):
        build_combined(InputSpec(images={"x": ImageSpec(1, (4, 4)), "gate_x": ImageSpec(1, (4, 5))}), _params())


# --- upsampling in the model -----------------------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3])
def test_upsampling_keeps_every_images_energy(dims):
    sa, sb = ((6, 8), (3, 4)) if dims == 2 else ((4, 6, 2), (2, 3, 2))
    spec = InputSpec(images={"a": ImageSpec(1, sa), "b": ImageSpec(2, sb)})
    net = build_combined(spec, _params(upsampling={"use": True, "wanted_size": list(sa)}))
    assert isinstance(net.upsampling[0], nn.Identity) and isinstance(net.upsampling[1], EnergyUpsample)
    assert net.upsampling[1].factors == ((2, 2) if dims == 2 else (2, 2, 1))
    images = {k: v.abs() for k, v in _inputs(spec)["images"].items()}
    x = net.merged_images(images)
    assert x.shape == (3, 3, *sa)
    space = tuple(range(2, 2 + dims))
    torch.testing.assert_close(x[:, :1].sum(space), images["a"].sum(space))
    torch.testing.assert_close(x[:, 1:].sum(space), images["b"].sum(space))
    assert net(**_inputs(spec)).shape == (3, 1)


def test_upsampling_happens_after_the_gate_merge():
    spec = InputSpec(images={"a": ImageSpec(1, (2, 2)), "gate_a": ImageSpec(1, (2, 2)), "b": ImageSpec(1, (4, 4))})
    p = _params(gate_net={"final_activation": "gauss_f"}, upsampling={"use": True, "wanted_size": [4, 4]})
    net = build_combined(spec, p)
    images = _inputs(spec)["images"]
    a = images["a"]
    merged = torch.cat([a, a * (1 - torch.exp(-images["gate_a"] ** 2))], 1)
    ref = merged.repeat_interleave(2, 2).repeat_interleave(2, 3) / 4
    torch.testing.assert_close(net.merged_images(images)[:, :2], ref)


def test_images_of_different_sizes_need_upsampling():
    spec = InputSpec(images={"a": ImageSpec(1, (6, 8)), "b": ImageSpec(1, (3, 4))})
    with pytest.raises(ConfigError) as info:
        build_combined(spec, _params())
    msg = str(info.value)
    assert "model.upsampling" in msg and "'a': 6x8" in msg and "'b': 3x4" in msg
    with pytest.raises(ConfigError) as info:  # 4x4 -> x2 -> 8x8 still differs from 6x8
        build_combined(InputSpec(images={"a": ImageSpec(1, (6, 8)), "b": ImageSpec(1, (4, 4))}),
                       _params(upsampling={"use": True, "wanted_size": [6, 8]}))
    msg = str(info.value)
    assert "model.upsampling" in msg and "'a': 6x8" in msg and "'b': 4x4 -> 8x8" in msg
    wrong_dims = r"model.upsampling.wanted_size \[6, 8\] has 2 entries but images\['c'\] is 3D"
    with pytest.raises(ConfigError, match=wrong_dims):
        build_combined(InputSpec(images={"c": ImageSpec(1, (4, 4, 2))}),
                       _params(upsampling={"use": True, "wanted_size": [6, 8]}))


# --- FiLM errors -----------------------------------------------------------------------------------


def test_film_needs_images_and_a_connected_input():
    film = {"FiLM_gen": {"use": True}, "scalar_net": {"connect_to": ["top", "FiLM_gen"]}}
    with pytest.raises(ConfigError) as info:
        build_combined(InputSpec(scalars=3), _params(**film))
    msg = str(info.value)
    assert "model.FiLM_gen" in msg and "no images" in msg and "model.scalar_net.connect_to" in msg
    with pytest.raises(ConfigError) as info:
        build_combined(InputSpec(images={"calo": ImageSpec(1, (6, 6))}, tracks=(4, 2)), _params(**film))
    msg = str(info.value)
    assert "model.FiLM_gen" in msg and "model.scalar_net.connect_to contains 'FiLM_gen' but the data has no scalars" \
        in msg and "model.track_net.connect_to" in msg


# --- everything at once, 2D and 3D -----------------------------------------------------------------


def _everything(dims):
    sa, sb = ((6, 8), (3, 4)) if dims == 2 else ((4, 6, 2), (2, 3, 2))
    spec = InputSpec(images={"a": ImageSpec(1, sa), "gate_a": ImageSpec(1, sa), "b": ImageSpec(2, sb)},
                     scalars=3, tracks=(4, 2))
    reg = {"kernel_regularizer": "l2", "bias_regularizer": "l1", "activity_regularizer": "l2",
           "kernel_constraint": "max_norm"}
    p = _params(
        cnn={"cnn_type": "res", "block_depths": [1, 1], "n_init_filters": 4, "normalization": "batch",
             "use_squeeze_and_excite": True, "squeeze_and_excite_ratio": 2, "downsampling": "avgpool",
             "dropout": {"block_size": 2, "keep_prob": 0.8}, "cardinality": 2, "layer_reg": reg},
        scalar_net={"connect_to": ["top", "FiLM_gen"], "layer_reg": reg},
        track_net={"connect_to": ["FiLM_gen"], "normalization": "layer"},
        FiLM_gen={"use": True, "units": [5], "activation": "relu", "layer_reg": reg},
        gate_net={"units": [3], "use_res": True, "final_activation": "pgauss_f", "final_activation_init": [0.5],
                  "activation": "tanh", "layer_reg": reg},
        upsampling={"use": True, "wanted_size": list(sa)},
        network_in_network={"use": True, "units": [6], "globalavgpool": True, "activation": "relu",
                            "normalization": "batch", "dropout": 0.1, "layer_reg": reg},
        top={"layer_reg": reg},
    )
    return spec, p


@pytest.mark.parametrize("dims", [2, 3])
def test_everything_builds_and_backpropagates(dims):
    torch.manual_seed(0)
    spec, p = _everything(dims)
    net = build_model(p, spec, "mse")
    for name in SUBMODELS:
        assert getattr(net, name) is not None, name
    assert any(isinstance(m, DropBlock) for m in net.cnn.modules())
    untagged = set(net.track_net.modules())  # its layer_reg is empty
    assert all(layer_reg_of(m) is not None for m in net.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)) and m not in untagged)
    net.train()
    out = net(**_inputs(spec, b=4))
    assert out.shape == (4, 1)
    penalty = regularization_penalty(net)
    assert float(penalty.detach()) > 0
    (out.square().mean() + penalty).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    apply_constraints(net)
    convs = [m for m in net.cnn.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    norms = [m.weight.detach().flatten(1).norm(dim=1) for m in convs]
    assert max(float(n.max()) for n in norms) <= 2.0 + 1e-5
    net.eval()
    torch.testing.assert_close(net(**_inputs(spec, b=2)), net(**_inputs(spec, b=2)))
    text = summarize(net, spec)
    assert all(f"\n{name} " in text for name in SUBMODELS)


def test_default_gate_and_film_sizes_follow_deepcalo():
    spec, p = _everything(2)
    net = build_combined(spec, p)
    blocks = len(p.cnn.block_depths)
    assert net.FiLM_gen.out_features == 2 * p.cnn.n_init_filters * (2**blocks - 1)
    # after the concatenate merge image a has 2 channels, b has 2: the CNN sees 4
    assert net.cnn.blocks[0][0].conv1.conv.in_channels == 4
    assert math.prod(net.cnn.out_shape[1:]) >= 1


def test_stride_and_kernel_lists_must_match_the_image_dims():
    spec3 = InputSpec(images={"cube": ImageSpec(1, (4, 4, 4))})
    with pytest.raises(ConfigError, match=r"model.network_in_network.strides: kernel/stride \[1, 1\] has 2 entries"):
        build_combined(spec3, _params(network_in_network={"use": True, "strides": [1, 1]}))
    with pytest.raises(ConfigError) as info:
        build_combined(spec3, _params(cnn={"block_depths": [1, 1], "rest_kernel_size": [3, 3]}))
    assert str(info.value) == ("model.cnn.rest_kernel_size [3, 3] has 2 entries but the images are 3D (4x4x4); "
                               "give 3 entries, or an int")


def test_training_forward_traces_without_graph_breaks():
    """torch.compile sees the whole training forward as one graph (a module walk in forward once made it
    fall back to eager for the whole net; bench/README.md, GPU throughput)."""
    torch.manual_seed(0)
    spec, p = _everything(2)
    p = p.model_copy(update={name: getattr(p, name).model_copy(update={"layer_reg": {}})
                             for name in ("cnn", "scalar_net", "FiLM_gen", "gate_net", "network_in_network", "top")})
    net = build_model(p, spec, "mse").train()
    explanation = torch._dynamo.explain(net)(**_inputs(spec, b=4))
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_activity_penalty_belongs_to_the_last_training_forward():
    spec, p = _everything(2)
    net = build_model(p, spec, "mse").train()
    inputs = _inputs(spec, b=4)
    torch.manual_seed(1)  # the same dropout masks for the forwards that are compared
    net(**inputs)
    first = float(regularization_penalty(net).detach())
    net(**inputs)
    torch.manual_seed(1)
    net(**inputs)  # two forwards without reading: only the last one's activity penalties count
    torch.testing.assert_close(float(regularization_penalty(net).detach()), first, rtol=1e-4, atol=1e-6)
