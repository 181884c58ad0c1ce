"""The dimension factory: every layer that depends on ``spatial_dims`` is made here.

Nothing outside this module spells ``Conv2d``/``Conv3d``, a pooling class or an interpolation
mode; DropBlock and the energy-conserving upsampling are here for the same reason. Activations,
normalizations and initializers are built from DeepCalo's "str or config dict" specs, with Keras'
names and defaults where DeepCalo relied on them (LeakyReLU slope 0.3, RandomNormal stddev 0.05).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.components import ACTIVATIONS, INITIALIZERS, NORMALIZATIONS
from deepscope.config.common import Component
from deepscope.errors import ConfigError
from deepscope.registry import check_kwargs

__all__ = [
    "ConvSame",
    "DropBlock",
    "EnergyUpsample",
    "GaussActivation",
    "WEIGHTED_LAYERS",
    "as_tuple",
    "conv_output_size",
    "initialize",
    "layer_class",
    "make_activation",
    "make_dropblock",
    "make_initializer",
    "make_normalization",
    "pool",
    "strided_conv",
    "upsampling_factors",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, *_CONV.values())  # what initialization and layer_reg touch
_POOL = {("avgpool", 2): nn.AvgPool2d, ("avgpool", 3): nn.AvgPool3d,
         ("maxpool", 2): nn.MaxPool2d, ("maxpool", 3): nn.MaxPool3d}
_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCHNORM = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
# the user's word -> torch's mode per spatial dims ('bilinear' means trilinear for 3D images)
_INTERPOLATION = {("nearest", 2): "nearest", ("nearest", 3): "nearest",
                  ("bilinear", 2): "bilinear", ("bilinear", 3): "trilinear"}


def as_tuple(value: int | Sequence[int], spatial_dims: int, kernel: bool = False,
             path: str | None = None) -> tuple[int, ...]:
    """Expand an int to one entry per spatial dim. In 3D an int *kernel* k means (k, k, 2) (DeepCalo).

    Raises:
        ConfigError: a list with another number of entries (named by ``path`` when given).
    """
    if isinstance(value, int):
        if kernel and spatial_dims == 3:
            return (value, value, 2)
        return (value,) * spatial_dims
    if len(value) != spatial_dims:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}kernel/stride {list(value)} has {len(value)} entries for {spatial_dims}D "
                          f"convolutions; give {spatial_dims} entries (one per conv dim) or an int")
    return tuple(int(v) for v in value)


def conv_output_size(size: Sequence[int], stride: Sequence[int]) -> tuple[int, ...]:
    """Spatial size after a 'same'-padded convolution: ceil(size / stride)."""
    return tuple(math.ceil(s / st) for s, st in zip(size, stride))


class ConvSame(nn.Module):
    """Convolution with TensorFlow-style 'same' padding for any kernel and stride.

    Output size is ``ceil(input / stride)``; odd kernels at stride 1 use the native symmetric
    padding, other cases pad asymmetrically (extra on the far side) as TensorFlow does.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels, out_channels: channel counts.
        kernel_size, stride: one entry per spatial dim.
        groups: grouped convolution (cardinality).
        bias: add a bias.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int], groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.native = all(s == 1 for s in stride) and all(k % 2 == 1 for k in kernel_size)
        padding = tuple(k // 2 for k in kernel_size) if self.native else 0
        self.conv = _CONV[spatial_dims](in_channels, out_channels, self.kernel_size, self.stride,
                                        padding=padding, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *spatial)
        if not self.native:
            pads: list[int] = []
            for size, k, s in zip(reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.stride)):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return self.conv(x)


def layer_class(kind: str, spatial_dims: int) -> type[nn.Module]:
    """The torch class of a ``conv``, ``conv_transpose``, ``maxpool`` or ``avgpool`` layer for 1-3 dims."""
    if kind == "conv":
        return _CONV[spatial_dims]
    if kind == "conv_transpose":
        return _CONV_TRANSPOSE[spatial_dims]
    return _POOL[(kind, spatial_dims)]


def strided_conv(spatial_dims: int, channels: int, factors: Sequence[int]) -> nn.Module:
    """Downsampling convolution with kernel = stride = ``factors`` ('valid' padding)."""
    return _CONV[spatial_dims](channels, channels, tuple(factors), tuple(factors))


def pool(kind: str, spatial_dims: int, factors: Sequence[int]) -> nn.Module:
    """Average or max pooling with window = stride = ``factors``."""
    return _POOL[(kind, spatial_dims)](tuple(factors), tuple(factors))


# --- DropBlock -------------------------------------------------------------------------------------


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018): drop contiguous blocks of feature maps, in 1D, 2D or 3D.

    In training mode, block seeds are drawn with probability γ at every position where a whole
    block fits (the valid seed region), each seed drops the ``block_size``-wide square (cube in 3D)
    starting at it, and the kept activations are scaled by count / kept so the batch sum is
    unchanged. γ is the paper's:

        γ = (1 − keep_prob) / b^d · Π_i size_i / Π_i (size_i − b + 1)

    so that about ``1 − keep_prob`` of the activations are dropped (blocks can overlap, so the
    dropped fraction is slightly smaller). In eval mode the layer is the identity.

    A dim smaller than ``block_size`` (e.g. a thin 3D depth) gets a block as large as the dim
    itself, so the block always fits; keras-drop-block would produce no seeds there.

    Args:
        spatial_dims: 1, 2 or 3.
        block_size: edge length of a dropped block (default 3).
        keep_prob: fraction of activations kept, in (0, 1] (default 0.9).
        sync_channels: drop the same blocks in every channel (keras-drop-block's option);
            otherwise every channel draws its own blocks.

    Raises:
        ValueError: ``block_size`` < 1 or ``keep_prob`` outside (0, 1].
    """

    def __init__(self, spatial_dims: int, block_size: int = 3, keep_prob: float = 0.9,
                 sync_channels: bool = False) -> None:
        super().__init__()
        if spatial_dims not in _MAX_POOL:
            raise ValueError(f"DropBlock works on 1, 2 or 3 spatial dims, not {spatial_dims}")
        if block_size < 1:
            raise ValueError(f"DropBlock block_size must be >= 1, not {block_size}")
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"DropBlock keep_prob must be in (0, 1], not {keep_prob}")
        self.spatial_dims, self.block_size = spatial_dims, int(block_size)
        self.keep_prob, self.sync_channels = float(keep_prob), bool(sync_channels)

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}, keep_prob={self.keep_prob}, sync_channels={self.sync_channels}"

    def gamma(self, size: Sequence[int]) -> float:
        """Seed probability for feature maps of spatial ``size``."""
        # plain products, not math.prod over a generator, so torch.compile traces through this
        cells = valid = block = 1
        for s in size:
            b = min(self.block_size, s)
            cells, valid, block = cells * s, valid * (s - b + 1), block * b
        return (1.0 - self.keep_prob) / block * cells / valid

    def drop_mask(self, shape: Sequence[int], device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """1 where an activation is dropped, for feature maps of ``shape`` (B, C, *spatial).

        The mask has one channel when ``sync_channels`` is set.
        """
        batch, channels, *size = shape
        blocks = [min(self.block_size, s) for s in size]
        valid = [s - b + 1 for s, b in zip(size, blocks)]  # top-left corners where a block fits
        seeds = (torch.rand(batch, 1 if self.sync_channels else channels, *valid, device=device)
                 < self.gamma(size)).to(dtype)
        # a seed at p drops [p, p + b): pad b - 1 on both sides, then a stride-1 max over b
        pads = [p for b in reversed(blocks) for p in (b - 1, b - 1)]
        return _MAX_POOL[self.spatial_dims](F.pad(seeds, pads), tuple(blocks), stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, C, *S)
        if not self.training or self.keep_prob >= 1.0:
            return x
        keep = 1.0 - self.drop_mask(x.shape, x.device, x.dtype)
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))


def make_dropblock(spatial_dims: int, options: Mapping[str, Any] | None) -> nn.Module:
    """DropBlock from its options (``block_size``, ``keep_prob``, ``sync_channels``); identity for None."""
    if options is None:
        return nn.Identity()
    return DropBlock(spatial_dims, **dict(options))


# --- upsampling ------------------------------------------------------------------------------------


def upsampling_factors(size: Sequence[int], wanted: Sequence[int]) -> tuple[int, ...]:
    """DeepCalo's integer factor per dim: max(1, round(wanted / actual)), rounding half to even (numpy)."""
    return tuple(max(1, round(w / s)) for s, w in zip(size, wanted))


class EnergyUpsample(nn.Module):
    """Upsample by integer ``factors`` and divide by their product, so each image's sum is kept.

    With ``nearest`` every pixel is spread evenly over its factors' block, so the sum is kept
    exactly; ``bilinear`` (trilinear in 3D) interpolates, and keeps the sum up to edge effects.

    Args:
        spatial_dims: 2 or 3.
        factors: integer factor per spatial dim.
        interpolation: ``nearest`` or ``bilinear``.
    """

    def __init__(self, spatial_dims: int, factors: Sequence[int], interpolation: str = "nearest") -> None:
        super().__init__()
        if (interpolation, spatial_dims) not in _INTERPOLATION:
            raise ValueError(f"interpolation {interpolation!r} for {spatial_dims}D images; "
                             "available: 'nearest', 'bilinear' (2D or 3D)")
        if len(factors) != spatial_dims or any(int(f) < 1 for f in factors):
            raise ValueError(f"upsampling factors {list(factors)} must be {spatial_dims} integers >= 1")
        self.factors = tuple(int(f) for f in factors)
        self.mode = _INTERPOLATION[(interpolation, spatial_dims)]

    def extra_repr(self) -> str:
        return f"factors={self.factors}, mode={self.mode!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, C, *S·factors)
        size = tuple(s * f for s, f in zip(x.shape[2:], self.factors))
        linear = {} if self.mode == "nearest" else {"align_corners": False}
        return F.interpolate(x, size=size, mode=self.mode, **linear) / math.prod(self.factors)


# --- activations -----------------------------------------------------------------------------------


class GaussActivation(nn.Module):
    """DeepCalo's gate activations: exp(-(x/α)²) and its flip 1 - exp(-(x/α)²).

    ``gauss``/``gauss_f`` keep α fixed at ``init`` (default 1); ``pgauss``/``pgauss_f`` learn α,
    starting from ``init``.
    """

    def __init__(self, flipped: bool, trainable: bool, init: float = 1.0) -> None:
        super().__init__()
        self.flipped = flipped
        alpha = torch.tensor(float(init))
        if trainable:
            self.alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("alpha", alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.exp(-(x / self.alpha) ** 2)
        return 1.0 - g if self.flipped else g


def _leakyrelu(negative_slope: float = 0.3, alpha: float | None = None) -> nn.Module:
    return nn.LeakyReLU(alpha if alpha is not None else negative_slope)


def _prelu(channels: int | None, init: float = 0.25, shared: bool = False) -> nn.Module:
    return nn.PReLU(1 if shared or channels is None else channels, init)


def _elu(alpha: float = 1.0) -> nn.Module:
    return nn.ELU(alpha)


def _softmax(dim: int = 1) -> nn.Module:
    return nn.Softmax(dim)


def _gauss(name: str) -> Callable[..., nn.Module]:
    def build(init: float = 1.0) -> nn.Module:
        return GaussActivation(flipped=name.endswith("_f"), trainable=name.startswith("p"), init=init)
    return build


def _no_options(cls: type[nn.Module]) -> Callable[[], nn.Module]:
    # torch modules take **kwargs in their signature; this one takes none, so typos are caught
    return lambda: cls()


def _gelu(approximate: str = "none") -> nn.Module:
    return nn.GELU(approximate)


def _softplus(beta: float = 1.0, threshold: float = 20.0) -> nn.Module:
    return nn.Softplus(beta, threshold)


_ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "linear": _no_options(nn.Identity),
    "relu": _no_options(nn.ReLU),
    "leakyrelu": _leakyrelu,
    "elu": _elu,
    "selu": _no_options(nn.SELU),
    "gelu": _gelu,
    "swish": _no_options(nn.SiLU),
    "sigmoid": _no_options(nn.Sigmoid),
    "tanh": _no_options(nn.Tanh),
    "softmax": _softmax,
    "softplus": _softplus,
    "gauss": _gauss("gauss"),
    "gauss_f": _gauss("gauss_f"),
    "pgauss": _gauss("pgauss"),
    "pgauss_f": _gauss("pgauss_f"),
}


def make_activation(spec: Component | None, channels: int | None = None, path: str = "activation") -> nn.Module:
    """An activation module from its spec (``None`` gives identity).

    Args:
        spec: the "str or config dict" spec.
        channels: feature channels, for per-channel parameters (PReLU).
        path: dotted config path, for error messages.
    """
    if spec is None:
        return nn.Identity()
    name = ACTIVATIONS.canonical(spec.class_name, path)
    if name == "prelu":
        check_kwargs(_prelu, spec.config, f"{path}.config", ignore=("channels",))
        return _prelu(channels, **spec.config)
    build = _ACTIVATIONS[name]
    check_kwargs(build, spec.config, f"{path}.config")
    return build(**spec.config)


# --- normalization ---------------------------------------------------------------------------------


def make_normalization(spec: Component | None, channels: int, spatial_dims: int,
                       path: str = "normalization", affine: bool = True) -> nn.Module:
    """A normalization layer over ``channels``; ``spatial_dims = 0`` for dense features.

    ``layer`` is group norm with one group and ``instance`` group norm with one group per channel
    (as DeepCalo built them), so both work on dense and convolutional features alike.

    Args:
        spec: the "str or config dict" spec (``None`` gives identity).
        channels: feature channels.
        spatial_dims: 0 (dense), 1, 2 or 3.
        path: dotted config path, for error messages.
        affine: ``False`` drops the learned scale and shift whatever the spec says (FiLM
            supplies them instead, as DeepCalo froze ``center``/``scale``).
    """
    if spec is None:
        return nn.Identity()
    name = NORMALIZATIONS.canonical(spec.class_name, path)
    cfg = dict(spec.config)
    if not affine:
        cfg["affine"] = False
    if name == "batch":
        # Keras' options and defaults (DeepCalo's configs are Keras configs): momentum is the weight of
        # the running average (0.99 = torch momentum 0.01), epsilon 1e-3.
        _only(cfg, {"momentum", "epsilon", "eps", "affine"}, path)
        momentum = 1.0 - float(cfg.pop("momentum", 0.99))
        eps = float(cfg.pop("epsilon", cfg.pop("eps", 1e-3)))
        return _BATCHNORM[spatial_dims](channels, eps=eps, momentum=momentum, **cfg)
    _only(cfg, {"groups", "epsilon", "eps", "affine"}, path)
    if "epsilon" in cfg:
        cfg["eps"] = cfg.pop("epsilon")
    if name == "layer":
        groups = 1
    elif name == "instance":
        groups = channels
    else:
        groups = max(1, min(int(cfg.pop("groups", 32)), channels))
        while channels % groups:  # the largest divisor of channels <= groups
            groups -= 1
    cfg.pop("groups", None)
    return nn.GroupNorm(groups, channels, **cfg)


def _only(cfg: dict[str, Any], allowed: set[str], path: str) -> None:
    from deepscope.errors import did_you_mean

    for key in cfg:
        if key not in allowed:
            raise ConfigError(f"{path}.config.{key}: unknown option{did_you_mean(key, allowed)} "
                              f"(allowed: {', '.join(sorted(allowed))})")


# --- initialization --------------------------------------------------------------------------------


def _fan_scaled(weight: torch.Tensor, scale: float, mode: str, distribution: str) -> None:
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = scale / max(1.0, fan)
    with torch.no_grad():
        if distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            weight.uniform_(-limit, limit)
        else:  # Keras' truncated normal, stddev corrected for the truncation at 2 sigma
            std = math.sqrt(variance) / 0.87962566103423978
            nn.init.trunc_normal_(weight, 0.0, std, -2.0 * std, 2.0 * std)


def _orthogonal(gain: float = 1.0) -> Callable[[torch.Tensor], None]:
    return lambda w: nn.init.orthogonal_(w, gain)


def _glorot(distribution: str) -> Callable[..., Callable[[torch.Tensor], None]]:
    return lambda: (lambda w: _fan_scaled(w, 1.0, "fan_avg", distribution))


def _he(distribution: str) -> Callable[..., Callable[[torch.Tensor], None]]:
    return lambda: (lambda w: _fan_scaled(w, 2.0, "fan_in", distribution))


def _lecun(distribution: str) -> Callable[..., Callable[[torch.Tensor], None]]:
    return lambda: (lambda w: _fan_scaled(w, 1.0, "fan_in", distribution))


def _random_normal(mean: float = 0.0, stddev: float = 0.05) -> Callable[[torch.Tensor], None]:
    return lambda w: nn.init.normal_(w, mean, stddev)


def _random_uniform(minval: float = -0.05, maxval: float = 0.05) -> Callable[[torch.Tensor], None]:
    return lambda w: nn.init.uniform_(w, minval, maxval)


def _truncated_normal(mean: float = 0.0, stddev: float = 0.05) -> Callable[[torch.Tensor], None]:
    return lambda w: nn.init.trunc_normal_(w, mean, stddev, mean - 2 * stddev, mean + 2 * stddev)


_INITIALIZERS: dict[str, Callable[..., Callable[[torch.Tensor], None] | None]] = {
    "orthogonal": _orthogonal,
    "glorot_uniform": _glorot("uniform"),
    "glorot_normal": _glorot("normal"),
    "he_uniform": _he("uniform"),
    "he_normal": _he("normal"),
    "lecun_uniform": _lecun("uniform"),
    "lecun_normal": _lecun("normal"),
    "random_normal": _random_normal,
    "random_uniform": _random_uniform,
    "truncated_normal": _truncated_normal,
    "zeros": lambda: nn.init.zeros_,
    "torch_default": lambda: None,
}


def make_initializer(spec: Component, path: str = "initialization") -> Callable[[torch.Tensor], None] | None:
    """A function that fills a weight tensor in place (``None`` keeps torch's default)."""
    name = INITIALIZERS.canonical(spec.class_name, path)
    build = _INITIALIZERS[name]
    check_kwargs(build, spec.config, f"{path}.config")
    return build(**spec.config)


def initialize(module: nn.Module, spec: Component | None, path: str = "initialization") -> None:
    """Initialize every conv and linear weight in ``module`` from ``spec``; biases start at zero."""
    if spec is None:
        return
    init = make_initializer(spec, path)
    if init is None:
        return
    for m in module.modules():
        if isinstance(m, WEIGHTED_LAYERS):
            init(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
