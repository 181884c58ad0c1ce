"""Hostile YAML: alias bombs, recursive aliases, deep nesting and huge files are refused quickly;
the anchors and aliases of ordinary configs keep working."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from deepscope.config import apply_overrides, load_config, read_yaml
from deepscope.config.io import MAX_CONFIG_BYTES, MAX_EXPANDED_VALUES, MAX_NESTING
from deepscope.errors import ConfigError


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: ``width**levels`` strings from a few hundred bytes."""
    names = "abcdefghijklmnop"
    lines = [f"{names[0]}: &{names[0]} [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"{names[i]}: &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * width) + "]")
    return "\n".join(lines) + "\n"


def alias_fan(copies: int, leaves: int = 10) -> str:
    """``copies`` aliases of one list of ``leaves`` strings: 1 + copies·(leaves + 1) + … values."""
    return f"a: &a [{', '.join(['x'] * leaves)}]\nb: [{', '.join(['*a'] * copies)}]\n"


def expanded_values(copies: int, leaves: int = 10) -> int:
    # root mapping + 2 keys + list a (1 + leaves) + list b (1 + copies · (1 + leaves))
    return 1 + 2 + (1 + leaves) + 1 + copies * (1 + leaves)


def test_billion_laughs_is_refused_in_process(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert f"more than {MAX_EXPANDED_VALUES:,} values" in message


def test_the_budget_counts_expanded_values_exactly(tmp_path):
    # just under the budget: parsed (aliases share one list; nothing is copied)
    under = next(c for c in range(9000, 10000) if expanded_values(c + 1) > MAX_EXPANDED_VALUES)
    assert expanded_values(under) <= MAX_EXPANDED_VALUES < expanded_values(under + 1)
    path = tmp_path / "fan.yaml"
    path.write_text(alias_fan(under))
    raw = read_yaml(path)
    assert len(raw["b"]) == under and raw["b"][0] == ["x"] * 10
    path.write_text(alias_fan(under + 1))
    with pytest.raises(ConfigError, match="anchors and aliases expand"):
        read_yaml(path)


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "rec.yaml"
    path.write_text("train: &t {metrics: [*t]}\n")
    with pytest.raises(ConfigError, match="recursive alias"):
        read_yaml(path)


def test_deep_nesting_is_refused_and_moderate_nesting_is_not(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=f"nested more than {MAX_NESTING} levels"):
        read_yaml(path)
    depth = MAX_NESTING - 5
    path.write_text("a: " + "[" * depth + "1" + "]" * depth + "\n")
    value = read_yaml(path)["a"]
    for _ in range(depth):
        value = value[0]
    assert value == 1


def test_aliases_through_anchors_deepen_the_expansion_too(tmp_path):
    # each level is a list holding the previous one: shallow text, deep value
    lines = ["l0: &l0 [1]"] + [f"l{i}: &l{i} [*l{i - 1}]" for i in range(1, MAX_NESTING + 5)]
    path = tmp_path / "chain.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="nested more than"):
        read_yaml(path)


def test_files_over_the_size_limit_are_refused_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:  # sparse: fast to make, and reading it would take a while
        f.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert "MiB" in str(info.value) and f"at most {MAX_CONFIG_BYTES // 2**20} MiB" in str(info.value)
    path.write_bytes(b"name: ok\n" + b"#" * (MAX_CONFIG_BYTES - 20) + b"\n")  # a big comment is fine
    assert read_yaml(path) == {"name": "ok"}


def test_ordinary_anchors_aliases_and_merge_keys_keep_working(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(textwrap.dedent("""\
        name: anchors
        data: {source: sklearn_digits}
        model:
          cnn: &block {n_init_filters: 8, block_depths: [1, 1], normalization: batch, activation: relu}
          top: {units: [32, 10], activation: relu}
          FiLM_gen:
            <<: {units: [16]}
        train:
          loss: cross_entropy
          metrics: &m [accuracy]
          early_stopping: {use: true, monitor: val_accuracy}
    """))
    cfg = load_config(path)
    assert cfg.model.cnn.n_init_filters == 8 and cfg.model.cnn.block_depths == [1, 1]
    assert cfg.model.FiLM_gen.units == [16] and cfg.train.metrics == ["accuracy"]


def test_an_override_cannot_smuggle_a_bomb():
    with pytest.raises(ConfigError, match="override 'name=.*recursive alias"):
        apply_overrides({}, ["name=&a [*a]"])
    assert apply_overrides({}, ["train.metrics=[accuracy]"]) == {"train": {"metrics": ["accuracy"]}}


@pytest.mark.parametrize("command", ["validate", "train"])
def test_cli_refuses_the_bomb_at_once_with_exit_2(tmp_path, command):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    script = textwrap.dedent(f"""
        import json, resource, subprocess, sys, time
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "deepscope", {command!r}, {str(path)!r}],
                              capture_output=True, text=True, timeout=60)
        print(json.dumps({{"code": proc.returncode, "stderr": proc.stderr,
                          "seconds": time.perf_counter() - start,
                          "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}))
    """)
    # before the limit, this hung for minutes at more than 1 GB (the timeout makes that a failure)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["code"] == 2
    lines = [line for line in report["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and "billion laughs" in lines[0] and "Traceback" not in report["stderr"]
    # the refused file was never expanded (train imports torch and Lightning first: ~430 MB)
    assert report["max_rss_kb"] < (150_000 if command == "validate" else 800_000)
    assert not (tmp_path / "runs").exists()
