"""The registration nets of atlalign (SEED-FACTS §5), in 2D and 3D.

Each takes ``images={"reference": (B, 1, *S), "moving": (B, 1, *S)}`` and returns one tensor
(B, 1 + nd [+ nd], *S): the moving image warped by the predicted field, the field (nd channels, pixels,
channel 0 = Δx; :mod:`deepscope.registration.ops`) and, with ``compute_inv``, the inverse field.
``outputs`` names the blocks and ``field_channels`` (= nd) sizes them, so a task can split the tensor.

- :class:`GlobalNet`: an affine spatial transformer (STN). [reference, moving] → conv blocks → dense
  layers → nd (nd + 1) affine parameters on centred, normalised coordinates, initialised to the identity.
- :class:`LocalNet`: atlalign's U-Net. It sees a central crop whose size is a multiple of
  2^len(downsample_filters) (atlalign's 320 x 456 → 320 x 448) and its field is zero-padded back.
- :class:`MergedNet`: the global net, then the local net on the globally warped image; the fields are
  composed so the moving image is interpolated once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.config.common import Component
from deepscope.config.nets.registration import (RegistrationGlobalOptions, RegistrationGlobalParams,
                                                RegistrationLocalOptions, RegistrationLocalParams,
                                                RegistrationMergedParams)
from deepscope.data.spec import InputSpec
from deepscope.errors import ConfigError
from deepscope.models.layers import ConvSame, layer_class, make_activation, pool
from deepscope.registration.ops import (affine_to_field, centered_affine_to_pixels, compose, identity_theta,
                                        warp)

__all__ = [
    "GlobalNet",
    "LocalNet",
    "MergedNet",
    "build_registration_global",
    "build_registration_local",
    "build_registration_merged",
    "invert_affine",
]

IMAGE_NAMES = ("reference", "moving")


# --- helpers -----------------------------------------------------------------------------------------


def invert_affine(theta: torch.Tensor) -> torch.Tensor:
    """The inverse of affine maps ``theta`` (B, nd, nd + 1): [A, t]⁻¹ = [A⁻¹, −A⁻¹ t] (the homogeneous
    (nd + 1) x (nd + 1) matrix inverted)."""
    nd = theta.shape[1]
    theta32 = theta.float()  # torch.linalg.inv takes no half precision
    inv_linear = torch.linalg.inv(theta32[:, :, :nd])  # (B, nd, nd)
    return torch.cat([inv_linear, -inv_linear @ theta32[:, :, nd:]], dim=2).to(theta.dtype)


def _conv_act(nd: int, in_channels: int, out_channels: int, activation: Component | None, path: str) -> nn.Sequential:
    """Conv 3x3 'same' + activation."""
    return nn.Sequential(layer_class("conv", nd)(in_channels, out_channels, 3, padding=1),
                         make_activation(activation, out_channels, path))


def _pair(images: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return images["reference"], images["moving"]


def _spatial(spec: InputSpec, name: str) -> tuple[int, ...]:
    """The images' common spatial size, checked to be a 1-channel reference/moving pair of 2D or 3D images."""
    where = f"model.architecture {name}"
    if set(spec.images) != set(IMAGE_NAMES):
        raise ConfigError(f"{where}: the images are named {sorted(spec.images)}; a registration net takes exactly "
                          "two, named reference and moving (data source registration_hdf5 or registration_demo)")
    for key, image in spec.images.items():
        if image.channels != 1:
            raise ConfigError(f"{where}: image '{key}' has {image.channels} channels; the registration nets take "
                              "one-channel (grey) reference and moving images")
    sizes = {k: tuple(v.spatial) for k, v in spec.images.items()}
    if sizes["reference"] != sizes["moving"]:
        raise ConfigError(f"{where}: reference {sizes['reference']} and moving {sizes['moving']} differ in size; "
                          "they must be the same")
    spatial = sizes["reference"]
    if len(spatial) not in (2, 3):
        raise ConfigError(f"{where}: takes 2D or 3D images; found spatial size {spatial}")
    return spatial


def _check_levels(spatial: Sequence[int], levels: int, key: str) -> None:
    if min(spatial) < 2 ** levels:
        raise ConfigError(f"{key}: {levels} max pooling(s) need at least {2 ** levels} pixels per axis; the images "
                          f"are {tuple(spatial)} (use fewer entries or larger images)")


# --- global ------------------------------------------------------------------------------------------


class GlobalNet(nn.Module):
    """Affine STN. ``forward(images) -> (B, 1 + nd, *S)``: registered moving image, affine field.

    Args:
        spatial: the images' size (H, W) or (D, H, W); the flattened feature size depends on it.
        filters: channels of each block 2 x [conv 3x3 + activation] + max pool 2.
        dense_layers: units of the dense layers before the affine head.
        activation: after every convolution.
        dense_activation: after every dense layer.
        path: config key of these options, for error messages.
    """

    def __init__(self, spatial: Sequence[int], *, filters: Sequence[int], dense_layers: Sequence[int],
                 activation: Component | None, dense_activation: Component | None, path: str = "model") -> None:
        super().__init__()
        self.spatial = tuple(int(s) for s in spatial)
        nd = len(self.spatial)
        if nd not in (2, 3):
            raise ValueError(f"GlobalNet: spatial {self.spatial} is not 2D or 3D")
        self.field_channels = nd
        self.outputs: tuple[str, ...] = ("registered", "field")
        blocks: list[nn.Module] = []
        channels = len(IMAGE_NAMES)
        for width in filters:
            blocks += [_conv_act(nd, channels, width, activation, f"{path}.activation"),
                       _conv_act(nd, width, width, activation, f"{path}.activation"),
                       pool("maxpool", nd, (2,) * nd)]
            channels = width
        self.features = nn.Sequential(*blocks, nn.Flatten())
        final = [s // 2 ** len(filters) for s in self.spatial]  # max pooling floors odd sizes
        units = channels * math.prod(final)
        dense: list[nn.Module] = []
        for width in dense_layers:
            dense += [nn.Linear(units, width), make_activation(dense_activation, width, f"{path}.dense_activation")]
            units = width
        self.dense = nn.Sequential(*dense)
        self.head = nn.Linear(units, nd * (nd + 1))
        # atlalign's get_initial_weights: an untrained net predicts the identity whatever it sees
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(identity_theta(nd).flatten())

    def theta(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """The predicted affine maps on homogeneous pixel coordinates (x first), (B, nd, nd + 1)."""
        reference, moving = _pair(images)
        nd = self.field_channels
        x = torch.cat([reference, moving], dim=1)  # (B, 2, *S): reference first, as atlalign's X
        # float32 whatever autocast chose: in half precision a pixel coordinate of 456 is off by 0.25
        centred = self.head(self.dense(self.features(x))).float().reshape(-1, nd, nd + 1)
        return centered_affine_to_pixels(centred, self.spatial)

    def forward(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        moving = images["moving"]
        field = affine_to_field(self.theta(images), tuple(moving.shape[2:]))  # (B, nd, *S)
        return torch.cat([warp(moving, field), field], dim=1)


# --- local -------------------------------------------------------------------------------------------


class LocalNet(nn.Module):
    """atlalign's registration U-Net. ``forward(images) -> (B, 1 + nd [+ nd], *S)``.

    Args:
        spatial_dims: 2 or 3.
        start_filters, downsample_filters, middle_filters, upsample_filters, end_filters: channels of the
            convolutions (see :class:`~deepscope.config.nets.registration.RegistrationLocalOptions`).
        activation: after every convolution but the field output.
        compute_inv: also output the inverse field: the same weights on [moving, reference].
        path: config key of these options, for error messages.
    """

    def __init__(self, spatial_dims: int, *, start_filters: Sequence[int], downsample_filters: Sequence[int],
                 middle_filters: Sequence[int], upsample_filters: Sequence[int], end_filters: Sequence[int],
                 activation: Component | None, compute_inv: bool = False, path: str = "model") -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"LocalNet: spatial_dims {spatial_dims}; expected 2 or 3")
        if len(upsample_filters) != len(downsample_filters) or not start_filters or not downsample_filters:
            raise ValueError("LocalNet: needs start_filters, downsample_filters and as many upsample_filters")
        nd = spatial_dims
        act = f"{path}.activation"
        self.field_channels = nd
        self.compute_inv = bool(compute_inv)
        self.outputs: tuple[str, ...] = ("registered", "field", "inverse") if compute_inv else ("registered", "field")
        self.multiple = 2 ** len(downsample_filters)

        channels = len(IMAGE_NAMES)
        start: list[nn.Module] = []
        for width in start_filters:
            start.append(_conv_act(nd, channels, width, activation, act))
            channels = width
        self.start = nn.Sequential(*start)
        skip_channels = [channels]
        self.pool = pool("maxpool", nd, (2,) * nd)
        self.down = nn.ModuleList()
        for width in downsample_filters:
            self.down.append(_conv_act(nd, channels, width, activation, act))
            channels = width
            skip_channels.append(width)
        skip_channels.pop()  # the coarsest level feeds the middle, not a skip
        middle: list[nn.Module] = []
        for width in middle_filters:
            middle.append(_conv_act(nd, channels, width, activation, act))
            channels = width
        self.middle = nn.Sequential(*middle)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")  # Keras' UpSampling2D
        self.up_convs = nn.ModuleList()
        self.merge_convs = nn.ModuleList()
        for width, skip in zip(upsample_filters, reversed(skip_channels)):
            self.up_convs.append(_conv_act(nd, channels, width, activation, act))
            self.merge_convs.append(_conv_act(nd, width + skip, width, activation, act))
            channels = width
        end: list[nn.Module] = []
        for width in end_filters:
            end.append(_conv_act(nd, channels, width, activation, act))
            channels = width
        self.end = nn.Sequential(*end)
        # atlalign's Conv2D(2, 2, padding="same"): an even kernel, padded on the far side as TensorFlow does
        self.to_field = ConvSame(nd, channels, nd, (2,) * nd, (1,) * nd)
        # tiny weights: an untrained net predicts ≈ 0, the identity (not in atlalign, which used Glorot)
        nn.init.normal_(self.to_field.conv.weight, std=1e-5)
        nn.init.zeros_(self.to_field.conv.bias)

    def _crop(self, size: Sequence[int]) -> list[tuple[int, int]]:
        """(before, after) pixels cropped per spatial axis (array order) to reach a multiple of ``multiple``."""
        cuts = []
        for n in size:
            extra = n % self.multiple
            cuts.append((extra // 2, extra - extra // 2))
        return cuts

    def field(self, reference: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """The field registering ``moving`` to ``reference`` (both (B, 1, *S)), (B, nd, *S); zero in the
        border the crop left out."""
        size = reference.shape[2:]
        cuts = self._crop(size)
        if any(n - a - b < self.multiple for n, (a, b) in zip(size, cuts)):
            raise ValueError(f"LocalNet: images of {tuple(size)} are smaller than the {self.multiple} pixels per axis "
                             "its downsampling needs")
        x = torch.cat([reference, moving], dim=1)  # (B, 2, *S)
        x = x[(..., *(slice(a, n - b) for n, (a, b) in zip(size, cuts)))]  # central crop (B, 2, *S')
        x = self.start(x)
        skips = [x]
        for conv in self.down:
            x = conv(self.pool(x))
            skips.append(x)
        skips.pop()
        x = self.middle(x)
        for up_conv, merge_conv, skip in zip(self.up_convs, self.merge_convs, reversed(skips)):
            x = merge_conv(torch.cat([up_conv(self.upsample(x)), skip], dim=1))
        field = self.to_field(self.end(x))  # (B, nd, *S')
        pads = [p for a, b in reversed(cuts) for p in (a, b)]  # F.pad wants the last axis first
        return F.pad(field, pads)

    def forward(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        reference, moving = _pair(images)
        field = self.field(reference, moving)
        out = [warp(moving, field), field]
        if self.compute_inv:
            out.append(self.field(moving, reference))  # weights shared, inputs swapped (atlalign's mov_reg)
        return torch.cat(out, dim=1)


# --- merged ------------------------------------------------------------------------------------------


class MergedNet(nn.Module):
    """Global then local. ``forward(images) -> (B, 1 + nd [+ nd], *S)``.

    Args:
        global_net: the affine net (its keys are this model's ``global_net.*``).
        local_net: the U-Net (``local_net.*``); its own ``compute_inv`` is not used.
        compute_inv: also output the inverse field.
    """

    def __init__(self, global_net: GlobalNet, local_net: LocalNet, *, compute_inv: bool = False) -> None:
        super().__init__()
        if global_net.field_channels != local_net.field_channels:
            raise ValueError(f"MergedNet: a {global_net.field_channels}D global net with a "
                             f"{local_net.field_channels}D local net")
        self.global_net = global_net
        self.local_net = local_net
        self.field_channels = global_net.field_channels
        self.compute_inv = bool(compute_inv)
        self.outputs: tuple[str, ...] = ("registered", "field", "inverse") if compute_inv else ("registered", "field")

    def forward(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        reference, moving = _pair(images)
        spatial = tuple(moving.shape[2:])
        theta = self.global_net.theta(images)  # (B, nd, nd + 1), pixels
        global_field = affine_to_field(theta, spatial)
        moving_g = warp(moving, global_field)
        local_field = self.local_net.field(reference, moving_g)
        # warp(warp(moving, g), l) = warp(moving, compose(l, g)): one interpolation of the moving image
        field = compose(local_field, global_field)
        out = [warp(moving, field), field]
        if self.compute_inv:
            # With G(p) = p + g(p) and L(p) = p + l(p), compose(l, g) is the map p -> G(L(p)): registered(p) =
            # moving(G(L(p))). Its inverse is L⁻¹(G⁻¹(q)), i.e. G⁻¹ first and then L⁻¹, which is
            # compose(inner=inv_g, outer=inv_l). G⁻¹ is exact (the inverted affine map); L⁻¹ is what the local
            # net predicts for the swapped pair (moving_g, reference): the field taking reference onto
            # moving_g, as a standalone local net with compute_inv does.
            inv_global = affine_to_field(invert_affine(theta), spatial)
            inv_local = self.local_net.field(moving_g, reference)
            out.append(compose(inv_global, inv_local))
        return torch.cat(out, dim=1)


class RegistrationPart(nn.Module):
    """A standalone global or local net, held under the name it has in :class:`MergedNet` (``global_net`` or
    ``local_net``): an earlier run's part loads into a merged model by that name
    (``model.pretrained: [{weights_path: RUN, layers_to_load: [global_net]}]``), with the machinery every
    architecture uses."""

    def __init__(self, name: str, net: nn.Module) -> None:
        super().__init__()
        self.part_name = name
        self.add_module(name, net)
        self.field_channels = net.field_channels
        self.outputs = net.outputs

    @property
    def part(self) -> nn.Module:
        """The global or local net."""
        return getattr(self, self.part_name)

    def forward(self, images: dict[str, torch.Tensor], scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        return self.part(images)


# --- factories ---------------------------------------------------------------------------------------


def _global_net(spatial: tuple[int, ...], opts: RegistrationGlobalOptions, path: str) -> GlobalNet:
    _check_levels(spatial, len(opts.filters), f"{path}.filters")
    return GlobalNet(spatial, filters=list(opts.filters), dense_layers=list(opts.dense_layers),
                     activation=opts.activation, dense_activation=opts.dense_activation, path=path)


def _local_net(spatial: tuple[int, ...], opts: RegistrationLocalOptions, compute_inv: bool, path: str) -> LocalNet:
    _check_levels(spatial, len(opts.downsample_filters), f"{path}.downsample_filters")
    return LocalNet(len(spatial), start_filters=list(opts.start_filters),
                    downsample_filters=list(opts.downsample_filters), middle_filters=list(opts.middle_filters),
                    upsample_filters=list(opts.upsample_filters), end_filters=list(opts.end_filters),
                    activation=opts.activation, compute_inv=compute_inv, path=path)


def build_registration_global(spec: InputSpec, cfg: RegistrationGlobalParams) -> RegistrationPart:
    """The affine net for a reference/moving pair, as the part ``global_net``.

    Raises:
        ConfigError: the images are not a one-channel reference/moving pair of one 2D/3D size, or are too
            small for ``model.filters``' max poolings.
    """
    return RegistrationPart("global_net", _global_net(_spatial(spec, "registration_global"), cfg, "model"))


def build_registration_local(spec: InputSpec, cfg: RegistrationLocalParams) -> RegistrationPart:
    """The U-Net for a reference/moving pair, as the part ``local_net``.

    Raises:
        ConfigError: as :func:`build_registration_global`, for ``model.downsample_filters``.
    """
    return RegistrationPart("local_net", _local_net(_spatial(spec, "registration_local"), cfg, cfg.compute_inv,
                                                    "model"))


def build_registration_merged(spec: InputSpec, cfg: RegistrationMergedParams) -> MergedNet:
    """Global then local net for a reference/moving pair.

    Raises:
        ConfigError: as the standalone builders, for ``model.global_model.*`` / ``model.local_model.*``.
    """
    spatial = _spatial(spec, "registration_merged")
    return MergedNet(_global_net(spatial, cfg.global_model, "model.global_model"),
                     _local_net(spatial, cfg.local_model, False, "model.local_model"), compute_inv=cfg.compute_inv)
