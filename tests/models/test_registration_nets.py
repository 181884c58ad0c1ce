"""The registration nets (atlalign, SEED-FACTS §5): shapes in 2D and 3D, identity at initialisation, the
affine head, field composition and inversion, weight transfer into the merged net, the seed's parameter
counts and the build errors."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from deepscope.config.nets.registration import (RegistrationGlobalParams, RegistrationLocalParams,
                                                RegistrationMergedParams)
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.models.nets.registration import (GlobalNet, LocalNet, MergedNet, build_registration_global,
                                                build_registration_local, build_registration_merged, invert_affine,
                                                RegistrationPart)
from deepscope.registration.ops import (affine_to_field, centered_affine_to_pixels, compose, inverse_residual,
                                        warp)

SMALL_GLOBAL = {"filters": [4, 8], "dense_layers": [8]}
SMALL_LOCAL = {"start_filters": [4], "downsample_filters": [4, 8], "middle_filters": [8],
               "upsample_filters": [8, 4], "end_filters": [8]}
BUILDERS = {"registration_global": build_registration_global, "registration_local": build_registration_local,
            "registration_merged": build_registration_merged}


def _spec(spatial: tuple[int, ...], names: tuple[str, ...] = ("reference", "moving"), channels: int = 1) -> InputSpec:
    return InputSpec(images={name: ImageSpec(channels, spatial) for name in names})


def _cfg(arch: str, small: bool = True, compute_inv: bool = False):
    if arch == "registration_global":
        return RegistrationGlobalParams(**(SMALL_GLOBAL if small else {}))
    if arch == "registration_local":
        return RegistrationLocalParams(**(SMALL_LOCAL if small else {}), compute_inv=compute_inv)
    return RegistrationMergedParams(global_model=SMALL_GLOBAL if small else {},
                                    local_model=SMALL_LOCAL if small else {}, compute_inv=compute_inv)


def _net(arch: str, spatial: tuple[int, ...], small: bool = True, compute_inv: bool = False) -> nn.Module:
    torch.manual_seed(0)
    net = BUILDERS[arch](_spec(spatial), _cfg(arch, small, compute_inv))
    return net.part if isinstance(net, RegistrationPart) else net  # a standalone net's global/local part


def _images(spatial: tuple[int, ...], batch: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"reference": torch.rand(batch, 1, *spatial, generator=gen),
            "moving": torch.rand(batch, 1, *spatial, generator=gen)}


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _rotation(degrees: float, scale: float, shift: tuple[float, float]) -> torch.Tensor:
    """A 2D affine map on centred normalised coordinates (2, 3)."""
    a = math.radians(degrees)
    return torch.tensor([[scale * math.cos(a), -scale * math.sin(a), shift[0]],
                         [scale * math.sin(a), scale * math.cos(a), shift[1]]])


def _set_global(net: GlobalNet, centred: torch.Tensor) -> None:
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(centred.flatten())


def _roughen_local(net: LocalNet, std: float = 0.3) -> None:
    """Weights of the field output large enough for a visible, non-trivial field."""
    with torch.no_grad():
        nn.init.normal_(net.to_field.conv.weight, std=std)


# --- shapes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch, compute_inv", [("registration_global", False), ("registration_local", False),
                                               ("registration_local", True), ("registration_merged", False),
                                               ("registration_merged", True)])
@pytest.mark.parametrize("spatial", [(36, 114), (16, 20, 26)], ids=["2d_odd_width", "3d"])
def test_output_shape(arch: str, spatial: tuple[int, ...], compute_inv: bool) -> None:
    net = _net(arch, spatial, compute_inv=compute_inv)
    nd = len(spatial)
    out = net(images=_images(spatial), scalars=None, tracks=None)
    assert out.shape == (2, 1 + nd * (2 if compute_inv else 1), *spatial)
    assert net.field_channels == nd
    assert net.outputs == (("registered", "field", "inverse") if compute_inv else ("registered", "field"))


def test_local_crop_is_central_and_padded_back() -> None:
    net = _net("registration_local", (36, 114))
    _roughen_local(net)
    field = net.field(*_images((36, 114)).values())
    # multiple of 4: 36 is kept, 114 -> 112 (one column cut on each side), the field is 0 there
    assert field[..., 0].abs().max() == 0 and field[..., -1].abs().max() == 0
    assert field[..., 1].abs().max() > 0 and field[..., -2].abs().max() > 0
    seed_layout = _net("registration_local", (320, 456), small=False)
    assert seed_layout._crop((320, 456)) == [(0, 0), (4, 4)]  # atlalign's Cropping2D((0, 4))
    assert seed_layout._crop((33, 115)) == [(0, 1), (1, 2)]


# --- identity at initialisation ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(BUILDERS))
@pytest.mark.parametrize("spatial", [(36, 40), (16, 16, 20)], ids=["2d", "3d"])
def test_untrained_net_is_identity(arch: str, spatial: tuple[int, ...]) -> None:
    net = _net(arch, spatial)
    images = _images(spatial)
    with torch.no_grad():
        out = net(images=images)
    assert out[:, 1:].abs().max() < 1e-3
    assert torch.allclose(out[:, :1], images["moving"], atol=1e-3)


# --- the global head ---------------------------------------------------------------------------------


def test_global_head_with_hand_set_theta_matches_affine_to_field() -> None:
    spatial = (36, 48)
    net = _net("registration_global", spatial)
    centred = _rotation(12.0, 1.1, (0.05, -0.1))
    _set_global(net, centred)
    images = _images(spatial)
    expected_theta = centered_affine_to_pixels(centred.expand(2, 2, 3), spatial)
    expected = affine_to_field(expected_theta, spatial)
    with torch.no_grad():
        out = net(images=images)
        assert torch.allclose(net.theta(images), expected_theta, atol=1e-5)
    assert torch.allclose(out[:, 1:], expected, atol=1e-4)
    assert torch.equal(out[:, :1], warp(images["moving"], out[:, 1:]))


def test_invert_affine() -> None:
    theta = centered_affine_to_pixels(_rotation(20.0, 0.9, (0.1, 0.2)).expand(3, 2, 3), (30, 40))
    twice = invert_affine(invert_affine(theta))
    assert torch.allclose(twice, theta, atol=1e-4)
    homogeneous = torch.cat([theta, torch.tensor([[[0.0, 0.0, 1.0]]]).expand(3, 1, 3)], dim=1)
    inverse = torch.cat([invert_affine(theta), torch.tensor([[[0.0, 0.0, 1.0]]]).expand(3, 1, 3)], dim=1)
    assert torch.allclose(homogeneous @ inverse, torch.eye(3).expand(3, 3, 3), atol=1e-5)


# --- registered image and composition ----------------------------------------------------------------


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_registered_is_moving_warped_by_field(arch: str) -> None:
    spatial = (36, 114)
    net = _net(arch, spatial, compute_inv=arch != "registration_global")
    if arch == "registration_global":
        _set_global(net, _rotation(8.0, 1.05, (0.02, 0.0)))
    else:
        local = net if arch == "registration_local" else net.local_net
        _roughen_local(local)
        if arch == "registration_merged":
            _set_global(net.global_net, _rotation(8.0, 1.05, (0.02, 0.0)))
    images = _images(spatial)
    with torch.no_grad():
        out = net(images=images)
    nd = len(spatial)
    assert out[:, 1:1 + nd].abs().max() > 0.01  # a real field, not the identity
    assert torch.equal(out[:, :1], warp(images["moving"], out[:, 1:1 + nd]))


def test_local_inverse_is_the_swapped_pair() -> None:
    spatial = (36, 40)
    net = _net("registration_local", spatial, compute_inv=True)
    _roughen_local(net)
    images = _images(spatial)
    with torch.no_grad():
        out = net(images=images)
        assert torch.equal(out[:, 3:5], net.field(images["moving"], images["reference"]))
        assert torch.equal(out[:, 1:3], net.field(images["reference"], images["moving"]))


def test_merged_field_is_local_composed_with_global() -> None:
    spatial = (36, 48)
    net = _net("registration_merged", spatial)
    _set_global(net.global_net, _rotation(-10.0, 0.95, (0.05, 0.03)))
    _roughen_local(net.local_net)
    images = _images(spatial)
    with torch.no_grad():
        out = net(images=images)
        global_field = affine_to_field(net.global_net.theta(images), spatial)
        local_field = net.local_net.field(images["reference"], warp(images["moving"], global_field))
    assert torch.allclose(out[:, 1:3], compose(local_field, global_field), atol=1e-6)
    assert torch.equal(out[:, :1], warp(images["moving"], out[:, 1:3]))


def test_merged_inverse_of_a_known_affine() -> None:
    spatial = (48, 64)
    net = _net("registration_merged", spatial, compute_inv=True)
    _set_global(net.global_net, _rotation(10.0, 1.1, (0.05, -0.04)))
    with torch.no_grad():
        net.local_net.to_field.conv.weight.zero_()  # local field exactly 0: the model is the affine map
        out = net(images=_images(spatial))
    field, inverse = out[:, 1:3], out[:, 3:5]
    residual = inverse_residual(field, inverse)  # (B, H, W)
    # only where p + inverse(p) lands inside the image: outside, the field is read at the border
    ys, xs = torch.meshgrid(torch.arange(spatial[0]), torch.arange(spatial[1]), indexing="ij")
    tx, ty = xs + inverse[:, 0], ys + inverse[:, 1]
    inside = (tx >= 0) & (tx <= spatial[1] - 1) & (ty >= 0) & (ty <= spatial[0] - 1)
    assert inside.float().mean() > 0.5
    assert residual[inside].max() < 1e-3
    # and the inverse is the analytic one
    expected = affine_to_field(invert_affine(net.global_net.theta(_images(spatial))), spatial)
    assert torch.allclose(inverse, expected, atol=1e-4)


# --- weights of standalone runs load into the merged net ----------------------------------------------


def test_standalone_weights_load_into_merged() -> None:
    spatial = (36, 48)
    standalone_global = _net("registration_global", spatial)
    standalone_local = _net("registration_local", spatial, compute_inv=True)
    merged = _net("registration_merged", spatial, compute_inv=True)
    assert list(standalone_global.state_dict()) == list(merged.global_net.state_dict())
    assert list(standalone_local.state_dict()) == list(merged.local_net.state_dict())
    _set_global(standalone_global, _rotation(5.0, 1.0, (0.0, 0.1)))
    _roughen_local(standalone_local)
    merged.global_net.load_state_dict(standalone_global.state_dict(), strict=True)
    merged.local_net.load_state_dict(standalone_local.state_dict(), strict=True)
    images = _images(spatial)
    with torch.no_grad():
        assert torch.equal(merged.global_net.theta(images), standalone_global.theta(images))
        assert torch.equal(merged.local_net.field(*images.values()), standalone_local.field(*images.values()))
    assert set(merged.state_dict()) == ({f"global_net.{k}" for k in standalone_global.state_dict()}
                                        | {f"local_net.{k}" for k in standalone_local.state_dict()})


# --- the seed's layouts ------------------------------------------------------------------------------


def test_parameter_counts_match_the_seed_listing() -> None:
    assert _count(_net("registration_global", (320, 456), small=False)) == 237_630
    assert _count(_net("registration_local", (320, 456), small=False, compute_inv=True)) == 192_578
    assert _count(_net("registration_merged", (320, 456), small=False)) == 237_630 + 192_578


def test_defaults_are_the_seed_best_settings() -> None:
    g, loc = RegistrationGlobalParams(), RegistrationLocalParams()
    assert (g.filters, g.dense_layers, g.activation.class_name) == ([16, 16, 32, 32, 32], [40], "relu")
    assert (loc.start_filters, loc.downsample_filters, loc.middle_filters, loc.upsample_filters,
            loc.end_filters, loc.compute_inv) == ([16], [16, 32, 32, 32], [32], [32, 32, 32, 32], [64, 64], False)
    net = _net("registration_local", (32, 32), small=False)
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}
    assert MergedNet is type(_net("registration_merged", (32, 32)))


# --- gradients ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_gradients_reach_every_parameter(arch: str) -> None:
    spatial = (36, 44)
    net = _net(arch, spatial, compute_inv=arch != "registration_global")
    globals_ = [m for m in net.modules() if isinstance(m, GlobalNet)]
    for g in globals_:  # a zero head passes no gradient back to the features
        nn.init.normal_(g.head.weight, std=1e-3)
    images = _images(spatial)
    out = net(images=images)
    loss = (out[:, :1] - images["reference"]).pow(2).mean() + out[:, 1:].pow(2).mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_wrong_image_names(arch: str) -> None:
    with pytest.raises(ConfigError, match="reference and moving"):
        BUILDERS[arch](_spec((36, 48), names=("fixed", "moving")), _cfg(arch))


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_more_than_one_channel(arch: str) -> None:
    with pytest.raises(ConfigError, match="2 channels"):
        BUILDERS[arch](_spec((36, 48), channels=2), _cfg(arch))


@pytest.mark.parametrize("arch, key", [("registration_global", "model.filters"),
                                       ("registration_local", "model.downsample_filters"),
                                       ("registration_merged", "model.global_model.filters")])
def test_too_small_for_the_pooling_levels(arch: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        BUILDERS[arch](_spec((12, 300)), _cfg(arch, small=False))
    assert "at least" in str(err.value) and "(12, 300)" in str(err.value)


def test_merged_names_the_local_key() -> None:
    cfg = RegistrationMergedParams(global_model=SMALL_GLOBAL, local_model={**SMALL_LOCAL,
                                                                           "downsample_filters": [4] * 6,
                                                                           "upsample_filters": [4] * 6})
    with pytest.raises(ConfigError, match=r"model\.local_model\.downsample_filters"):
        build_registration_merged(_spec((36, 48)), cfg)


def test_config_rules() -> None:
    with pytest.raises(ValidationError, match="upsample_filters has 3 entries but downsample_filters has 4"):
        RegistrationLocalParams(upsample_filters=[8, 8, 8])
    with pytest.raises(ValidationError, match="compute_inv"):
        RegistrationMergedParams(local_model={"compute_inv": True})
    with pytest.raises(ValidationError, match="filters"):
        RegistrationGlobalParams(filters=[])


def test_standalone_nets_hold_their_part_under_the_merged_name() -> None:
    """A run of registration_global / registration_local has the part the merged net loads by name."""
    spatial = (36, 48)
    merged = _net("registration_merged", spatial)
    for arch, name in (("registration_global", "global_net"), ("registration_local", "local_net")):
        torch.manual_seed(0)
        standalone = BUILDERS[arch](_spec(spatial), _cfg(arch, True, False))
        assert isinstance(standalone, RegistrationPart) and standalone.part_name == name
        assert {k for k in standalone.state_dict()} == {k for k in merged.state_dict() if k.startswith(name + ".")}
        images = _images(spatial)
        with torch.no_grad():
            assert torch.equal(standalone(images=images), standalone.part(images))
