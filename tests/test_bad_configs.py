"""The corpus of bad configs in tests/bad_configs/: each must fail with a readable ConfigError.

Every file starts with one or more ``# expect: <substring>`` lines; the error message must contain
each of them (at least the dotted key path and the key fact) and nothing of pydantic's internals.
``deepscope train`` refuses each with the same message as ``deepscope validate``. Configs that pass
the schema and fail only when things are built are in tests/bad_configs_pretrain/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deepscope.cli import main
from deepscope.config import load_config
from deepscope.errors import ConfigError

BAD = Path(__file__).parent / "bad_configs"
FILES = sorted(BAD.glob("*.yaml"))

# Wording that must never reach a user: tracebacks and pydantic's own phrasing.
FORBIDDEN = ("Traceback", "validation error for", "errors.pydantic.dev", "Input should be", "Value error,",
             "<class '", "[type=")


def expectations(path: Path) -> list[str]:
    """The ``# expect:`` lines at the top of a file (before the first other line)."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# expect:"):
            break
        found.append(line.removeprefix("# expect:").strip())
    return found


def test_corpus_is_large_and_well_formed():
    assert len(FILES) >= 35
    for path in FILES:
        exp = expectations(path)
        assert len(exp) >= 2, f"{path.name}: needs at least two '# expect:' lines at the top"
        assert all(exp), f"{path.name}: empty '# expect:' line"


def test_corpus_covers_every_section_and_kind():
    names = {p.stem for p in FILES}
    for level in ("top", "data", "data_split", "data_standardize", "model", "model_cnn", "model_top",
                  "model_scalar_net", "model_track_net", "train", "train_early_stopping", "log"):
        assert f"unknown_key_{level}" in names
    for kind in ("loss", "metric", "optimizer", "activation", "normalization", "initializer", "data_source",
                 "architecture"):
        assert f"name_{kind}" in names
    for name in ("file_malformed_yaml", "file_empty", "file_list"):
        assert name in names
    assert sum(n.startswith("contra_") for n in names) >= 12
    assert sum(n.startswith(("range_", "type_")) for n in names) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_config_raises_readable_error(path):
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    for expected in expectations(path):
        assert expected in message, f"{expected!r} not in:\n{message}"
    for word in FORBIDDEN:
        assert word not in message, f"{word!r} in:\n{message}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_config_in_cli(path, capsys):
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ")
    for expected in expectations(path):
        assert expected in err, f"{expected!r} not in:\n{err}"
    assert "Traceback" not in err


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_train_refuses_a_bad_config_as_validate_does(path, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # log.dir as the file has it (one file has a bad one): runs/ in here
    assert main(["validate", str(path)]) == 2
    validate_err = capsys.readouterr().err
    assert main(["train", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == validate_err
    assert list(tmp_path.iterdir()) == []  # no run folder


def test_validation_problems_are_one_per_line_with_a_dotted_key():
    with pytest.raises(ConfigError) as info:
        load_config(BAD / "several_problems.yaml")
    err = info.value
    assert len(err.problems) == 4
    assert str(err).splitlines()[0] == "invalid config (4 problems):"
    assert sorted(p.split(":")[0] for p in err.problems) == [
        "bogus", "model.cnn.n_init_filter", "train.epochs", "train.loss"]


SUBPROCESS_FILES = ["unknown_key_model_cnn", "contra_softmax_with_cross_entropy", "file_malformed_yaml", "file_empty"]


@pytest.mark.parametrize("stem", SUBPROCESS_FILES)
def test_bad_config_exit_code_in_a_real_process(stem):
    path = BAD / f"{stem}.yaml"
    proc = subprocess.run([sys.executable, "-m", "deepscope", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "error:" in proc.stderr
    for expected in expectations(path):
        assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
