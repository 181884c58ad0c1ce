"""DeepCalo's combined model.

Assembly order (DeepCalo's): ``scalar_net`` → ``track_net`` → ``gate_net`` → ``upsampling`` →
images concatenated on channels → ``FiLM_gen`` → ``cnn`` → ``network_in_network`` → ``top``.
The top sees the flattened CNN (or network in network) output, then the outputs of the scalar
and track nets whose ``connect_to`` contains ``'top'``. Submodels exist only for the inputs the
data has; their attribute names are DeepCalo's, so checkpoints, summaries and pretrained
loading can name them (``None`` when unused).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from deepscope.config.model import CombinedParams, TopConfig
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError, DataError
from deepscope.models.blocks import DeepSets, DenseStack, FiLMGenerator, GateNet, NetworkInNetwork, merge_gate
from deepscope.models.layers import EnergyUpsample, as_tuple, initialize, make_activation, upsampling_factors
from deepscope.models.nets.cnn import CNN, downsampling_factors
from deepscope.models.regularization import activity_recorders, attach_layer_reg

__all__ = ["CNN", "GATE_PREFIX", "CombinedNet", "Top", "build_combined", "downsampling_factors", "split_gate_images"]

GATE_PREFIX = "gate_"


class Top(nn.Module):
    """Hidden dense layers, then the output layer (with bias) and ``final_activation``."""

    def __init__(self, in_features: int, cfg: TopConfig, path: str = "model.top") -> None:
        super().__init__()
        self.hidden = DenseStack(in_features, cfg.units[:-1], cfg.activation, cfg.normalization, cfg.dropout,
                                 cfg.initialization, path)
        self.output = nn.Linear(self.hidden.out_features, cfg.units[-1]) if cfg.units else nn.Identity()
        initialize(self.output, cfg.initialization, f"{path}.initialization")
        self.final_activation = make_activation(cfg.final_activation, None, f"{path}.final_activation")
        self.out_features = cfg.units[-1] if cfg.units else in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, out)
        return self.final_activation(self.output(self.hidden(x)))


class CombinedNet(nn.Module):
    """The assembled model; see the module docstring for the order.

    Args:
        image_names: the CNN's images (not the gate images), in channel-concatenation order.
        gated: the images that have a ``gate_<name>`` partner.
        merge_method: how a gate merges into its image (``multiply`` or ``concatenate``).
        scalar_net, track_net: submodels, or ``None``; ``scalars_to``/``tracks_to`` are their
            ``connect_to`` (``top`` and/or ``FiLM_gen``).
        gate_net: the per-pixel gate, shared by every gated image, or ``None``.
        upsampling: one module per image of ``image_names`` (identity when not upsampled), or ``None``.
        FiLM_gen: the FiLM generator, or ``None``.
        cnn: the CNN, or ``None`` when the data has no images.
        network_in_network: 1×1 convs on the CNN's feature maps, or ``None``.
        top: the head.
    """

    def __init__(self, *, image_names: Sequence[str], gated: Sequence[str] = (), merge_method: str = "concatenate",
                 scalar_net: DenseStack | None = None, scalars_to: tuple[str, ...] = ("top",),
                 track_net: DeepSets | None = None, tracks_to: tuple[str, ...] = ("top",),
                 gate_net: GateNet | None = None, upsampling: nn.ModuleList | None = None,
                 FiLM_gen: FiLMGenerator | None = None, cnn: CNN | None = None,  # noqa: N803 (DeepCalo's name)
                 network_in_network: NetworkInNetwork | None = None, top: Top) -> None:
        super().__init__()
        self.image_names, self.gated, self.merge_method = list(image_names), set(gated), merge_method
        self.scalars_to, self.tracks_to = tuple(scalars_to), tuple(tracks_to)
        self.scalar_net, self.track_net, self.gate_net, self.upsampling = scalar_net, track_net, gate_net, upsampling
        self.FiLM_gen, self.cnn, self.network_in_network, self.top = FiLM_gen, cnn, network_in_network, top
        self._activity = activity_recorders(self)  # layer_reg is attached to the parts before they get here

    def forward(self, images: dict[str, torch.Tensor] | None = None, scalars: torch.Tensor | None = None,
                tracks: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, *S) by name (gate images under ``gate_<name>``), scalars (B, S), tracks
        (B, T, F) -> (B, out)."""
        if self.training:
            for recorder in self._activity:  # activity penalties belong to the last training forward
                recorder.values.clear()
        to_top: list[torch.Tensor] = []
        to_film: list[torch.Tensor] = []
        for net, inputs, targets in ((self.scalar_net, scalars, self.scalars_to),
                                     (self.track_net, tracks, self.tracks_to)):
            if net is None:
                continue
            out = net(inputs)
            if "top" in targets:
                to_top.append(out)
            if "FiLM_gen" in targets and self.FiLM_gen is not None:
                to_film.append(out)
        if self.cnn is not None:
            x = self.merged_images(images or {})
            film = self.FiLM_gen(_cat(to_film)) if self.FiLM_gen is not None else None
            x = self.cnn(x, film)
            if self.network_in_network is not None:
                x = self.network_in_network(x)  # the CNN returns its maps then
            to_top.insert(0, x)
        return self.top(_cat(to_top))

    def merged_images(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """Gate, upsample and concatenate the images on channels: the CNN's input (B, C, *S).

        With ``cnn.conv_dim: 3`` on 2D images the CNN itself then stacks these C channels as its
        third conv dim, (B, 1, H, W, C), in this channel order.
        """
        missing = [n for n in self.image_names + [GATE_PREFIX + n for n in sorted(self.gated)] if n not in images]
        if missing:
            raise KeyError(f"images {missing} missing from the input (given: {sorted(images)})")
        parts = []
        for i, name in enumerate(self.image_names):
            x = images[name]
            if name in self.gated:
                x = merge_gate(x, self.gate_net(images[GATE_PREFIX + name]), self.merge_method)
            if self.upsampling is not None:
                x = self.upsampling[i](x)
            parts.append(x)
        return _cat(parts)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts, 1) if len(parts) > 1 else parts[0]


# --- building --------------------------------------------------------------------------------------


def _size(spatial: tuple[int, ...]) -> str:
    return "x".join(map(str, spatial))


def split_gate_images(spec: InputSpec) -> tuple[list[str], list[str]]:
    """(the CNN's images, those of them with a gate partner), in the data's order.

    Raises:
        DataError: a ``gate_<name>`` image without image ``<name>``, or of another shape.
    """
    names = [n for n in spec.images if not n.startswith(GATE_PREFIX)]
    gated = []
    for gate in (n for n in spec.images if n.startswith(GATE_PREFIX)):
        partner = gate[len(GATE_PREFIX):]
        if partner not in names:
            raise DataError(f"images['{gate}'] has no partner image '{partner}': a gate image modulates the image "
                            f"named like it without '{GATE_PREFIX}' (images: {', '.join(spec.images)})")
        g, p = spec.images[gate], spec.images[partner]
        if (g.channels, g.spatial) != (p.channels, p.spatial):
            raise DataError(f"images['{gate}'] has {g.channels} channel(s) of {_size(g.spatial)} but its partner "
                            f"images['{partner}'] has {p.channels} of {_size(p.spatial)}; a gate image must match "
                            "its partner's channels and size")
        gated.append(partner)
    return names, [n for n in names if n in gated]


def _dense_keys(cfg: Any) -> dict[str, Any]:
    return dict(activation=cfg.activation, normalization=cfg.normalization, dropout=cfg.dropout,
                initialization=cfg.initialization)


def _wanted_size_mismatch(wanted: list[int], name: str, spatial: tuple[int, ...], conv_dim: int | None) -> str:
    dims = len(spatial)
    msg = (f"model.upsampling.wanted_size {wanted} has {len(wanted)} entries but images['{name}'] is {dims}D "
           f"({_size(spatial)}); wanted_size is the size the images are upsampled to, one entry per image dim")
    if dims == 2 and conv_dim == 3:
        msg += (": with model.cnn.conv_dim 3 it is still their 2D (H, W) size, since the images are upsampled "
                f"before their layers are stacked as the CNN's third dim; give 2 entries, e.g. {wanted[:2]}")
    return msg


def _upsampling(names: list[str], specs: dict[str, ImageSpec], p: CombinedParams) -> tuple[nn.ModuleList | None,
                                                                                            dict[str, tuple[int, ...]]]:
    """Per-image upsampling modules and the sizes after them; the sizes must agree."""
    sizes = {n: specs[n].spatial for n in names}
    modules = None
    up = p.upsampling
    if up.use:
        modules = nn.ModuleList()
        for n in names:
            if len(up.wanted_size) != len(sizes[n]):
                raise ConfigError(_wanted_size_mismatch(up.wanted_size, n, sizes[n], p.cnn.conv_dim))
            factors = upsampling_factors(sizes[n], up.wanted_size)
            modules.append(EnergyUpsample(len(factors), factors, up.interpolation) if math.prod(factors) > 1
                           else nn.Identity())
            sizes[n] = tuple(s * f for s, f in zip(sizes[n], factors))
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"'{n}': {_size(specs[n].spatial)}"
                            + (f" -> {_size(sizes[n])}" if sizes[n] != specs[n].spatial else "") for n in names)
        if up.use:
            raise ConfigError(f"model.upsampling: the images still differ in size after upsampling towards "
                              f"wanted_size {_size(tuple(up.wanted_size))} ({listing}); the CNN concatenates them on "
                              "channels, so pick a wanted_size every image reaches by an integer factor")
        raise ConfigError(f"model.upsampling: the images differ in size ({listing}); the CNN concatenates them on "
                          "channels: set model.upsampling.use: true with a common wanted_size, or give images of "
                          "one size")
    return modules, sizes


def build_combined(spec: InputSpec, p: CombinedParams) -> CombinedNet:
    """Build the combined model for the inputs in ``spec``.

    Raises:
        ConfigError: the config does not fit the data (FiLM without images or inputs, images of
            different sizes, ``upsampling.wanted_size`` with other dims than the images,
            ``cnn.conv_dim: 2`` on 3D images, kernel lists of the wrong length, …).
        DataError: a gate image without its partner, or of another shape.
    """
    names, gated = split_gate_images(spec)
    film_on = p.FiLM_gen.use
    feeds = {"scalar_net": bool(spec.scalars), "track_net": bool(spec.tracks)}
    if film_on:
        keys = " / ".join(f"model.{n}.connect_to" for n in feeds)
        if not names:
            raise ConfigError(f"model.FiLM_gen.use is true but the data has no images: FiLM modulates the CNN; set "
                              f"model.FiLM_gen.use: false and remove 'FiLM_gen' from {keys}")
        if not any(present and "FiLM_gen" in getattr(p, n).connect_to for n, present in feeds.items()):
            lacking = ", ".join(f"model.{n}.connect_to contains 'FiLM_gen' but the data has no "
                                f"{'scalars' if n == 'scalar_net' else 'tracks'}"
                                for n in feeds if "FiLM_gen" in getattr(p, n).connect_to)
            raise ConfigError(f"model.FiLM_gen.use is true but no input reaches it ({lacking or 'nothing connected'}); "
                              f"connect a net whose input the data has through {keys}")

    def wanted(name: str) -> tuple[str, ...]:
        targets = getattr(p, name).connect_to
        return tuple(t for t in targets if t == "top" or (t == "FiLM_gen" and film_on))

    scalar_net = None
    if spec.scalars and wanted("scalar_net"):
        scalar_net = DenseStack(spec.scalars, p.scalar_net.units, path="model.scalar_net", **_dense_keys(p.scalar_net))
    track_net = None
    if spec.tracks and wanted("track_net"):
        t = p.track_net
        phi = DenseStack(spec.tracks[1], t.phi_units, path="model.track_net", **_dense_keys(t))
        rho = DenseStack(phi.out_features, t.rho_units, path="model.track_net", **_dense_keys(t))
        track_net = DeepSets(phi, rho)

    gate_net = upsampling = film_gen = cnn = nin = None
    if names:
        g = p.gate_net
        if gated:
            gate_net = GateNet(g.units, g.use_res, g.final_activation, g.final_activation_init,
                               path="model.gate_net", **_dense_keys(g))
        specs = {n: spec.images[n] for n in names}
        upsampling, sizes = _upsampling(names, specs, p)
        channels = sum(specs[n].channels * (2 if n in gated and g.merge_method == "concatenate" else 1) for n in names)
        cnn = CNN(channels, sizes[names[0]], p.cnn, film=film_on, flatten=not p.network_in_network.use)
        if film_on:
            width = sum(m.out_features for m, n in ((scalar_net, "scalar_net"), (track_net, "track_net"))
                        if m is not None and "FiLM_gen" in wanted(n))
            film_gen = FiLMGenerator(width, p.FiLM_gen.units, cnn.block_filters, path="model.FiLM_gen",
                                     **_dense_keys(p.FiLM_gen))
        if p.network_in_network.use:
            q = p.network_in_network
            dims = len(cnn.out_shape) - 1
            strides = as_tuple(q.strides, dims, path="model.network_in_network.strides")
            nin = NetworkInNetwork(dims, cnn.out_shape[0], cnn.out_shape[1:], q.units, strides,
                                   globalavgpool=q.globalavgpool, path="model.network_in_network", **_dense_keys(q))

    head = nin if nin is not None else cnn
    width = (head.out_features if head is not None else 0) + sum(
        m.out_features for m, n in ((scalar_net, "scalar_net"), (track_net, "track_net"))
        if m is not None and "top" in wanted(n))
    if width == 0:
        raise ConfigError("model: no submodel receives any input (check scalar_net.connect_to / track_net.connect_to)")
    top = Top(width, p.top)
    parts = {"scalar_net": scalar_net, "track_net": track_net, "gate_net": gate_net, "FiLM_gen": film_gen,
             "cnn": cnn, "network_in_network": nin, "top": top}
    for name, module in parts.items():
        if module is not None:
            attach_layer_reg(module, getattr(p, name).layer_reg, f"model.{name}")
    return CombinedNet(image_names=names, gated=gated, merge_method=p.gate_net.merge_method,
                       scalar_net=scalar_net, scalars_to=wanted("scalar_net"), track_net=track_net,
                       tracks_to=wanted("track_net"), gate_net=gate_net, upsampling=upsampling, FiLM_gen=film_gen,
                       cnn=cnn, network_in_network=nin, top=top)
