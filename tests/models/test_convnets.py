"""The DeepFocus family (every architecture whose params model is a ``ConvNetParams``), 2D and 3D.

Parametrised over the registry, so a new net of the family is tested without new test code:
output shapes per ``dmode``, gradients, odd sizes, determinism, the config checks' messages, and
parameter counts against a hand count and against MONAI's reference blocks.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from deepscope.components import ARCHITECTURES
from deepscope.config.nets.common import ConvNetParams
from deepscope.config import load_config
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.errors import ConfigError
from deepscope.models.build import build_model

def _params(entry):
    module, _, attr = str(entry.params).partition(":")
    return getattr(importlib.import_module(module), attr)


# every registered net whose params model is a ConvNetParams (the dmode family; raccoon and penguin are fixed nets)
FAMILY = [e.name for e in ARCHITECTURES.entries() if issubclass(_params(e), ConvNetParams)]
DMODES = ["deconvolver", "regressor", "classifier"]
# odd sizes on purpose: every decoder must return exactly these
SPATIAL = {2: (17, 23), 3: (9, 17, 15)}
# the smallest widths each net takes (only the keys its params model has are used)
TINY = {"depths": [1, 1], "block_sizes": [4, 8], "growth_rate": 4, "init_features": 4, "bn_size": 2,
        "latent_size": 8, "hidden_size": 8}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest, and immune to a busy machine's oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params_model(name):
    module, _, attr = str(ARCHITECTURES.entry(name).params).partition(":")
    return getattr(importlib.import_module(module), attr)


def _cfg(name, **overrides):
    model = _params_model(name)
    options = {k: v for k, v in TINY.items() if k in model.model_fields}
    return model(**{**options, **overrides})


def _build(name, spec, **overrides):
    return ARCHITECTURES.get(name)(spec, _cfg(name, **overrides))


def _images(spatial):
    return {"cube": ImageSpec(1, spatial), "psf": ImageSpec(2, spatial)}  # 3 input channels together


def _spec(dmode, spatial, out_channels=2):
    if dmode == "deconvolver":
        return InputSpec(images=_images(spatial), target_shape=(out_channels, *spatial))
    if dmode == "classifier":
        return InputSpec(images=_images(spatial), target_kind="label", n_classes=4)
    return InputSpec(images=_images(spatial), target_shape=(3,))


def _inputs(spec, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, s.channels, *s.spatial, generator=g) for n, s in spec.images.items()}


def _expected(dmode, spec):
    return (2, spec.target_shape[0], *spec.spatial) if dmode == "deconvolver" else (2, spec.output_size)


# --- shapes, gradients, determinism ------------------------------------------------------------------


def test_the_family_is_registered():
    assert {"resnet", "densenet", "vgg", "unet", "cae", "deepfocus"} <= set(FAMILY)


@pytest.mark.parametrize("dmode", DMODES)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", FAMILY)
def test_output_shape_and_finite_gradients(name, dims, dmode):
    spec = _spec(dmode, SPATIAL[dims])
    net = _build(name, spec, dropout=0.2)
    assert net.dmode == dmode  # inferred from the targets
    out = net(_inputs(spec))
    assert out.shape == _expected(dmode, spec)
    (out ** 2).mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"


@pytest.mark.parametrize("spatial", [(17, 23), (16, 32), (9, 17, 15), (8, 8, 8)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", FAMILY)
def test_deconvolver_returns_the_input_size_with_other_out_channels(name, spatial):
    spec = _spec("deconvolver", spatial, out_channels=5)  # 3 channels in, 5 out
    skips = {"skip_connections": True} if "skip_connections" in _params_model(name).model_fields else {}
    out = _build(name, spec, dmode="deconvolver", **skips)(_inputs(spec))
    assert out.shape == (2, 5, *spatial)


@pytest.mark.parametrize("dmode", DMODES)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", FAMILY)
def test_eval_mode_is_deterministic(name, dims, dmode):
    spec = _spec(dmode, SPATIAL[dims])
    net = _build(name, spec, dropout=0.5).eval()
    x = _inputs(spec, seed=1)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("name", FAMILY)
def test_kernel_list_activation_dict_and_final_activation(name):
    spatial = SPATIAL[3]
    spec = _spec("deconvolver", spatial)
    net = _build(name, spec, kernel_size=[1, 3, 5], activation={"class_name": "leakyrelu", "config": {
        "negative_slope": 0.1}}, final_activation="relu", normalization="group")
    leaky = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == 0.1 for m in leaky)
    assert any(isinstance(m, nn.GroupNorm) for m in net.modules())
    assert any(getattr(m, "kernel_size", None) == (1, 3, 5) for m in net.modules())
    out = net(_inputs(spec))
    assert out.shape == _expected("deconvolver", spec) and (out >= 0).all()


@pytest.mark.parametrize("name", FAMILY)
def test_no_normalization_gives_biased_convolutions(name):
    spec = _spec("regressor", SPATIAL[2])
    net = _build(name, spec, normalization=None)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is not None for c in convs)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in net.modules())


# --- dmode ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY)
def test_dmode_is_inferred_from_the_targets_and_the_task_hint(name):
    spatial = SPATIAL[2]
    build = ARCHITECTURES.get(name)
    assert build(_spec("deconvolver", spatial), _cfg(name)).dmode == "deconvolver"
    assert build(_spec("classifier", spatial), _cfg(name)).dmode == "classifier"
    assert build(_spec("regressor", spatial), _cfg(name)).dmode == "regressor"
    one_hot = InputSpec(images=_images(spatial), target_shape=(4,), n_classes=4)
    assert build(one_hot, _cfg(name)).dmode == "classifier"
    assert build(_spec("regressor", spatial), _cfg(name), task="binary").dmode == "classifier"
    assert build(_spec("classifier", spatial), _cfg(name, dmode="regressor")).dmode == "regressor"


@pytest.mark.parametrize("name", FAMILY)
def test_deconvolver_needs_image_targets(name):
    with pytest.raises(ConfigError, match=r"^model\.dmode: deconvolver returns images .* per-sample shape \(3,\)"):
        _build(name, _spec("regressor", SPATIAL[2]), dmode="deconvolver")


@pytest.mark.parametrize("dmode", ["regressor", "classifier"])
def test_image_targets_need_the_deconvolver(dmode):
    with pytest.raises(ConfigError, match=rf"^model\.dmode: {dmode} returns 578 value\(s\) .* set dmode: deconvolver"):
        _build("unet", _spec("deconvolver", (17, 17)), dmode=dmode)


def test_image_targets_of_another_size_are_refused():
    spec = InputSpec(images=_images((16, 16)), target_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match=r"^model\.dmode: the targets look like images.* 8x8, not the input's 16x16"):
        _build("unet", spec)


# --- the data's shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY)
def test_spatial_dims_must_match_the_images(name):
    with pytest.raises(ConfigError, match=r"^model\.spatial_dims is 3 but the images are 2D .*set spatial_dims: 2"):
        _build(name, _spec("regressor", SPATIAL[2]), spatial_dims=3)
    assert _build(name, _spec("regressor", SPATIAL[3]), spatial_dims=3).dmode == "regressor"


def test_images_must_be_2d_or_3d():
    spec = InputSpec(images={"signal": ImageSpec(1, (64,))}, target_shape=(1,))
    with pytest.raises(ConfigError, match=r"^model\.spatial_dims: the images are 1D \('signal': 64\)"):
        _build("vgg", spec)


@pytest.mark.parametrize("name", FAMILY)
def test_in_channels_must_match_the_images(name):
    with pytest.raises(ConfigError, match=r"^model\.in_channels is 1 but the images have 3 channel\(s\) together "
                                          r"\('cube': 1, 'psf': 2\); set in_channels: 3"):
        _build(name, _spec("regressor", SPATIAL[2]), in_channels=1)
    assert _build(name, _spec("regressor", SPATIAL[2]), in_channels=3).dmode == "regressor"


@pytest.mark.parametrize(("dmode", "wanted"), [("deconvolver", 2), ("regressor", 3), ("classifier", 4)])
def test_out_channels_must_match_the_targets(dmode, wanted):
    spec = _spec(dmode, SPATIAL[2])
    with pytest.raises(ConfigError, match=rf"^model\.out_channels is 7 but the targets .* need {wanted} .*"
                                          rf"set out_channels: {wanted}"):
        _build("resnet", spec, out_channels=7)
    assert _build("resnet", spec, out_channels=wanted).dmode == dmode


def test_images_of_different_sizes_are_named():
    spec = InputSpec(images={"dirty": ImageSpec(1, (16, 16)), "beam": ImageSpec(1, (8, 8))}, target_shape=(2,))
    with pytest.raises(ConfigError, match=r"^model: the images differ in size \('dirty': 16x16, 'beam': 8x8\)"):
        _build("resnet", spec)


def test_kernel_list_needs_one_entry_per_dim():
    with pytest.raises(ConfigError, match=r"^model\.kernel_size: .* has 2 entries for 3D"):
        _build("unet", _spec("regressor", SPATIAL[3]), kernel_size=[3, 3])


def test_nets_need_images():
    with pytest.raises(ConfigError, match=r"^model\.architecture: 'cae' convolves images but the data has none"):
        _build("cae", InputSpec(scalars=3, target_shape=(1,)))


@pytest.mark.parametrize("name", FAMILY)
def test_too_small_images_name_the_smallest_size(name):
    spec = _spec("regressor", (4, 4))
    four = {"depths": [1, 1, 1, 1]}
    if "block_sizes" in _params_model(name).model_fields:
        four["block_sizes"] = [4, 4, 8, 8]
    with pytest.raises(ConfigError, match=r"^model\.depths: .* so every spatial dim needs at least \d+ pixels, but "
                                          r"the images are 4x4; use fewer stages"):
        _build(name, spec, **four)


def test_resnet_smallest_size_counts_the_stem_and_its_pool():
    # stem s2, pool s2, 3 stride-2 stages: 5 halvings; the last must still see 2 pixels: 2^4 + 1
    four = {"depths": [1, 1, 1, 1], "block_sizes": [4, 4, 8, 8]}
    with pytest.raises(ConfigError, match=r"^model\.depths: the stem \(stride 2\), its max pool and 3 stride-2 "
                                          r"stage\(s\) downsample the input 5 time\(s\) .* at least 17 pixels, but the "
                                          r"images are 16x17"):
        _build("resnet", _spec("regressor", (16, 17)), **four)
    assert _build("resnet", _spec("regressor", (17, 17)), **four)(_inputs(_spec("regressor", (17, 17)))).shape == (2, 3)
    assert _build("resnet", _spec("regressor", (16, 17)), stem_pool=False, **four).dmode == "regressor"


def test_stem_kernel_must_be_odd():
    from deepscope.config.nets.resnet import ResNetParams

    with pytest.raises(ValueError, match="expected a positive odd integer"):
        ResNetParams(stem_kernel_size=4)


# --- the dense latent, skips, downsampling options ----------------------------------------------------


@pytest.mark.parametrize("name", ["cae", "deepfocus"])
def test_the_dense_latent_ties_the_net_to_its_input_size(name):
    spec = _spec("deconvolver", (16, 16))
    net = _build(name, spec, latent_size=5)
    latents = [m for m in net.modules() if type(m).__name__ == "DenseLatent"]
    assert len(latents) == 1 and latents[0].latent_size == 5
    other = _spec("deconvolver", (32, 32))
    with pytest.raises(ValueError, match="built for feature maps of"):
        net(_inputs(other))


def test_cae_regressor_reads_the_latent():
    spec = _spec("regressor", (16, 16))
    head = _build("cae", spec, latent_size=5).head
    assert head.latent is not None and head.latent.expand is None  # no decoding layer to train
    assert head.hidden.in_features == 5


@pytest.mark.parametrize(("name", "levels"), [("unet", 1), ("deepfocus", 2)])
def test_skip_connections_concatenate_encoder_maps(name, levels):
    # unet [4, 8]: one decoder level (4 channels); deepfocus: the stage of 4 and the stem's 4 channels
    spec = _spec("deconvolver", (17, 23))
    with_skips, without = _build(name, spec), _build(name, spec, skip_connections=False)
    n = sum(p.numel() for p in with_skips.parameters()) - sum(p.numel() for p in without.parameters())
    assert n == levels * 4 * 4 * 3 * 3  # each level's first 3x3 conv reads the skip's 4 extra channels


@pytest.mark.parametrize("name", ["unet", "cae"])
def test_strided_conv_downsampling(name):
    spec = _spec("deconvolver", SPATIAL[3])
    net = _build(name, spec, downsampling="conv")
    assert not any(isinstance(m, nn.MaxPool3d) for m in net.modules())
    assert net(_inputs(spec)).shape == _expected("deconvolver", spec)


# --- parameter counts --------------------------------------------------------------------------------


def test_resnet_parameter_count_by_hand():
    spec = InputSpec(images={"cube": ImageSpec(1, (16, 16))}, target_shape=(3,))
    net = _build("resnet", spec, depths=[1], block_sizes=[8], hidden_size=4)
    stem = 1 * 8 * 7 * 7 + 2 * 8  # conv k7 without bias, batch norm scale and shift
    block = 2 * (8 * 8 * 3 * 3 + 2 * 8)  # two 3x3 convs + norms; no projection (8 -> 8, stride 1)
    head = (8 * 4 + 4) + (4 * 3 + 3)  # dense(hidden) and dense(K)
    assert sum(p.numel() for p in net.parameters()) == stem + block + head == 1643


def test_bottleneck_expands_four_times():
    spec = InputSpec(images={"cube": ImageSpec(1, (16, 16))}, target_shape=(3,))
    net = _build("resnet", spec, depths=[1], block_sizes=[8], block="bottleneck", hidden_size=4)
    assert net.encoder.channels == [8, 32] and net.head.hidden.in_features == 32
    block = (8 * 8 + 16) + (8 * 8 * 9 + 16) + (8 * 32 + 64) + (8 * 32 + 64)  # 1x1, 3x3, 1x1, projection
    stem, head = 1 * 8 * 49 + 16, (32 * 4 + 4) + (4 * 3 + 3)
    assert sum(p.numel() for p in net.parameters()) == stem + block + head


def _randomize_norms(module):
    """Batch norms with non-trivial statistics and affine terms, so eval-mode comparisons mean something."""
    g = torch.Generator().manual_seed(2)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for t in (m.running_mean, m.running_var, m.weight, m.bias):
                t.data.copy_(torch.rand(t.shape, generator=g) + 0.5)


def _monai_norm():
    return {"class_name": "batch", "config": {"epsilon": 1e-5}}  # MONAI's (torch's) batch norm epsilon


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("dims", [2, 3])
def test_resnet_encoder_matches_monai_resnet(dims, block):
    from monai.networks.nets.resnet import ResNet

    spatial = (33, 31) if dims == 2 else (17, 19, 18)
    spec = InputSpec(images={"cube": ImageSpec(2, spatial)}, target_shape=(3,))
    sizes = [4, 8, 8, 16]
    net = _build("resnet", spec, depths=[1, 2, 1, 1], block_sizes=sizes, block=block, normalization=_monai_norm())
    reference = ResNet(block, [1, 2, 1, 1], sizes, spatial_dims=dims,
                       n_input_channels=2, conv1_t_size=7, conv1_t_stride=2, feed_forward=False, bias_downsample=False)
    _randomize_norms(net)
    ours = net.encoder.state_dict()
    mapped = {}
    for key, value in ours.items():
        key = key.replace("stem.conv.", "conv1.").replace("stem.norm.", "bn1.")
        if key.startswith("stages."):
            _, stage, rest = key.split(".", 2)
            key = f"layer{int(stage) + 1}.{rest}"
        mapped[key] = value
    assert sum(v.numel() for v in reference.state_dict().values()) == sum(v.numel() for v in ours.values())
    reference.load_state_dict(mapped, strict=True)  # the layer names map one to one
    net.eval(), reference.eval()
    x = _inputs(spec)["cube"]
    with torch.no_grad():
        pooled = net.encoder(x)[-1].flatten(2).mean(-1)
        torch.testing.assert_close(pooled, reference(x))


@pytest.mark.parametrize("dims", [2, 3])
def test_dense_layer_and_transition_match_monai(dims):
    from monai.networks.nets.densenet import _DenseLayer, _Transition

    from deepscope.config.common import Component
    from deepscope.models.nets.convnet import ConvOptions
    from deepscope.models.nets.densenet import DenseLayer, Transition

    opts = ConvOptions(dims, (3,) * dims, Component(class_name="relu"), Component(**_monai_norm()))
    x = torch.randn(2, 6, *(8,) * dims)
    for ours, reference in ((DenseLayer(opts, 6, growth_rate=4, bn_size=2), _DenseLayer(dims, 6, 4, 2, 0.0)),
                            (Transition(opts, 6, 3), _Transition(dims, 6, 3))):
        _randomize_norms(ours)
        reference.load_state_dict(ours.state_dict(), strict=True)
        ours.eval(), reference.eval()
        with torch.no_grad():
            torch.testing.assert_close(ours(x), reference(x))


# --- through build_model -------------------------------------------------------------------------------


@pytest.mark.parametrize(("dmode", "loss"), [("deconvolver", "mse"), ("regressor", "mae"),
                                             ("classifier", "cross_entropy")])
@pytest.mark.parametrize("name", FAMILY)
def test_build_model_and_its_output_check(name, dmode, loss):
    spec = _spec(dmode, SPATIAL[2])
    model = {"architecture": name, **{k: v for k, v in TINY.items() if k in _params_model(name).model_fields}}
    cfg = load_config({"model": model, "train": {"loss": loss}})
    net = build_model(cfg.model, spec, loss)
    assert net.dmode == dmode
    assert math.prod(net(_inputs(spec)).shape[1:]) == spec.output_size


# --- the docs' examples ---------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "architectures.md"


def _doc_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _family_examples():
    """The docs' YAML examples of the dmode family (the fixed nets' are tested in test_seed_nets.py)."""
    return [b for b in _doc_blocks("yaml") if b.split("architecture: ")[1].split()[0].strip(",}") in FAMILY]


@pytest.mark.parametrize("example", _family_examples(), ids=lambda text: text.split("architecture: ")[1].split()[0])
def test_the_docs_yaml_examples_build(example):
    model = yaml.safe_load(example)["model"]
    dmode = model.get("dmode", "deconvolver")
    loss = "cross_entropy" if dmode == "classifier" else "mse"
    cfg = load_config({"model": model, "train": {"loss": loss}})
    spec = _spec(dmode, (16, 64, 64))
    assert build_model(cfg.model, spec).dmode == dmode


def test_the_docs_error_example_is_current():
    shown = " ".join(_doc_blocks("text")[-1].split())
    with pytest.raises(ConfigError) as error:
        _build("resnet", _spec("regressor", (16, 16)), depths=[2, 2, 2, 2], block_sizes=[64, 128, 256, 512])
    assert str(error.value) == shown
