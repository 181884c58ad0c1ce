"""The architecture diagram: blocks and data-flow edges read off the model, and the figure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepscope.config import load_config
from deepscope.data.spec import ImageSpec, InputSpec
from deepscope.evaluation.architecture import architecture_figure, trace_architecture
from deepscope.models.build import build_model


def _edges(blocks):
    return {b.key: b.sources for b in blocks}


def _build(model, spec, loss="mse"):
    return build_model(load_config({"model": model, "train": {"loss": loss}}).model, spec)


class _CNN(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)

    def forward(self, x, film=None):  # FiLM comes in as a keyword, as a modulating side input
        gamma, beta = film.chunk(2, 1)
        return (1 + gamma[..., None, None]) * self.conv(x) + beta[..., None, None]


class _FullLike(nn.Module):
    """Every DeepCalo submodel wired as the combined model does, from plain torch layers.

    Gate net on 'gate_em'; per-image upsampling in a ModuleDict (the container itself is never
    called); scalar_net feeds FiLM_gen and top, track_net feeds FiLM_gen only.
    """

    def __init__(self):
        super().__init__()
        self.gate_net = nn.Sequential(nn.Linear(1, 4), nn.Linear(4, 1), nn.Sigmoid())
        self.upsampling = nn.ModuleDict({"em": nn.Upsample(scale_factor=2), "had": nn.Upsample(scale_factor=4)})
        self.scalar_net = nn.Linear(3, 8)
        self.track_net = nn.Linear(2, 8)
        self.FiLM_gen = nn.Linear(16, 8)
        self.cnn = _CNN(3)
        self.network_in_network = nn.Conv2d(4, 2, 1)
        self.top = nn.Linear(2 * 8 * 8 + 8, 1)

    def forward(self, images, scalars, tracks):
        em = images["em"]
        gate = self.gate_net(images["gate_em"].reshape(-1, 1)).reshape(em.shape)
        em = self.upsampling["em"](torch.cat([em, em * gate], 1))
        had = self.upsampling["had"](images["had"])
        s, t = self.scalar_net(scalars), self.track_net(tracks).sum(1)
        maps = self.cnn(torch.cat([em, had], 1), film=self.FiLM_gen(torch.cat([s, t], 1)))
        return self.top(torch.cat([self.network_in_network(maps).flatten(1), s], 1))


FULL_SPEC = InputSpec(images={"em": ImageSpec(1, (4, 4)), "gate_em": ImageSpec(1, (4, 4)), "had": ImageSpec(1, (2, 2))},
                      scalars=3, tracks=(5, 2), multiply_output_with=True)


def test_full_model_edges_follow_the_data_flow(tmp_path):
    blocks = trace_architecture(_FullLike(), FULL_SPEC)
    assert [b.key for b in blocks][:5] == ["input:em", "input:gate_em", "input:had", "input:scalars", "input:tracks"]
    assert _edges(blocks) == {
        "input:em": set(), "input:gate_em": set(), "input:had": set(), "input:scalars": set(), "input:tracks": set(),
        "gate_net": {"input:gate_em"},
        "upsampling": {"input:em", "gate_net", "input:had"},
        "scalar_net": {"input:scalars"},
        "track_net": {"input:tracks"},
        "FiLM_gen": {"scalar_net", "track_net"},
        "cnn": {"upsampling", "FiLM_gen"},
        "network_in_network": {"cnn"},
        "top": {"network_in_network", "scalar_net"},
        "output": {"top"},
    }
    by_key = {b.key: b for b in blocks}
    assert by_key["input:gate_em"].lines[0] == "gate image"
    assert "out (B, 2, 8, 8); (B, 1, 8, 8)" in by_key["upsampling"].lines  # one line per distinct call shape
    assert by_key["cnn"].lines == ["_CNN · 112 params", "in (B, 3, 8, 8)", "out (B, 4, 8, 8)"]
    assert by_key["output"].lines == ["(B, 1)", "× multiply_output_with"]
    path = architecture_figure(_FullLike(), FULL_SPEC, tmp_path / "figures" / "architecture.png")
    assert path.stat().st_size > 10_000


def test_the_full_combined_model(tmp_path):
    spec = InputSpec(images={"em": ImageSpec(2, (8, 6)), "gate_em": ImageSpec(2, (8, 6)), "had": ImageSpec(1, (4, 3))},
                     scalars=3, tracks=(5, 4))
    net = _build({"upsampling": {"use": True, "wanted_size": [16, 12]}, "gate_net": {"units": [4]},
                  "cnn": {"n_init_filters": 4, "block_depths": [1, 1], "downsampling": "avgpool"},
                  "network_in_network": {"use": True, "units": [8], "globalavgpool": True},
                  "scalar_net": {"units": [8], "connect_to": ["top", "FiLM_gen"]},
                  "track_net": {"phi_units": [8], "rho_units": [8], "connect_to": ["FiLM_gen"]},
                  "FiLM_gen": {"use": True, "units": [16]}, "top": {"units": [16, 1]}}, spec)
    edges = _edges(trace_architecture(net, spec))
    assert {k: v for k, v in edges.items() if not k.startswith("input:")} == {
        "gate_net": {"input:gate_em"}, "upsampling": {"input:em", "gate_net", "input:had"},
        "scalar_net": {"input:scalars"}, "track_net": {"input:tracks"}, "FiLM_gen": {"scalar_net", "track_net"},
        "cnn": {"upsampling", "FiLM_gen"}, "network_in_network": {"cnn"}, "top": {"network_in_network", "scalar_net"},
        "output": {"top"},
    }
    assert architecture_figure(net, spec, tmp_path / "full.png").stat().st_size > 10_000


def test_plain_cnn_and_top_for_digits(tmp_path):
    spec = InputSpec(images={"digits": ImageSpec(1, (8, 8))}, target_kind="label", n_classes=10)
    net = _build({"cnn": {"n_init_filters": 4}, "top": {"units": [16, 10]}}, spec, loss="cross_entropy")
    net.train()
    blocks = trace_architecture(net, spec)
    assert _edges(blocks) == {"input:digits": set(), "cnn": {"input:digits"}, "top": {"cnn"}, "output": {"top"}}
    cnn = next(b for b in blocks if b.key == "cnn")
    n_cnn = sum(p.numel() for p in net.cnn.parameters())
    assert cnn.lines == [f"CNN · {n_cnn:,} params", "in (B, 1, 8, 8)", "out (B, 256)"]
    architecture_figure(net, spec, tmp_path / "digits.png")
    assert net.training and all(p.grad is None for p in net.parameters())  # mode restored, nothing accumulated


def test_scalars_only_and_pass_through_submodels(tmp_path):
    spec = InputSpec(scalars=3, tracks=(4, 2))
    net = _build({"scalar_net": {"units": []}, "track_net": {"phi_units": [4], "rho_units": [4]}}, spec)
    for p in net.track_net.parameters():
        p.requires_grad_(False)
    blocks = {b.key: b for b in trace_architecture(net, spec)}
    # scalar_net with units [] returns its input unchanged: the top still reads it, not the raw scalars
    assert blocks["top"].sources == {"scalar_net", "track_net"}
    assert blocks["scalar_net"].sources == {"input:scalars"}
    assert blocks["scalar_net"].lines[0] == "DenseStack · 0 params"
    assert blocks["track_net"].lines[0].endswith("params (frozen)")
    assert "cnn" not in blocks
    assert architecture_figure(net, spec, tmp_path / "s.png").is_file()


@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_format_follows_the_suffix(tmp_path, suffix):
    spec = InputSpec(scalars=2)
    path = architecture_figure(_build({}, spec), spec, tmp_path / f"a{suffix}")
    assert path.read_bytes()[:4] == (b"\x89PNG" if suffix == ".png" else b"%PDF")


def test_works_inside_inference_mode(tmp_path):
    spec = InputSpec(scalars=2)
    net = _build({"scalar_net": {"units": [3]}}, spec)
    with torch.inference_mode():
        blocks = {b.key: b for b in trace_architecture(net, spec)}
    assert blocks["top"].sources == {"scalar_net"}
