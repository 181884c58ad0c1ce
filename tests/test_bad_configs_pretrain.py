"""Configs that pass the schema but fail before the first training step: ``validate`` and ``train`` agree.

Each file in tests/bad_configs_pretrain/ is run through ``deepscope validate`` and ``deepscope train``
(in-process ``cli.main``; two of them in real processes, for the exit codes). Both must exit 2 with
the same message, which contains every ``# expect:`` line and none of the FORBIDDEN phrases, and
train must not have written a run folder. The checks are :mod:`deepscope.preflight`'s; before them,
``validate`` said "OK" to every one of these files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deepscope.cli import main
from deepscope.config import load_config
from deepscope.errors import ConfigError
from tests.test_bad_configs import FORBIDDEN, expectations

BAD = Path(__file__).parent / "bad_configs_pretrain"
FILES = sorted(BAD.glob("*.yaml"))


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_corpus_covers_what_train_checks_before_its_first_step():
    names = {p.stem for p in FILES}
    assert len(FILES) >= 25
    for prefix in ("optimizer_", "schedule_", "warmup_", "loss_", "activation_", "initializer_", "normalization_",
                   "regularizer_", "constraint_", "dropblock_", "film_", "pretrained_", "npz_", "calorimeter_"):
        assert any(n.startswith(prefix) for n in names), prefix
    for path in FILES:
        assert expectations(path), f"{path.name}: needs '# expect:' lines at the top"


# the few that the schema itself refuses (DropBlock, squeeze-and-excite and warm-up are checked there)
SCHEMA_STAGE = {"dropblock_rate", "dropblock_unknown_key", "squeeze_and_excite_too_small", "warmup_length_twice"}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_only_building_finds_the_problem(path):
    if path.stem in SCHEMA_STAGE:
        with pytest.raises(ConfigError):
            load_config(path)
    else:
        load_config(path)  # valid as far as the schema goes: the problem shows when things are built


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_validate_and_train_give_the_same_verdict_and_message(path, capsys, tmp_path):
    v_code, v_out, v_err = run(["validate", str(path)], capsys)
    t_code, t_out, t_err = run(["train", str(path), "-o", f"log.dir={tmp_path / 'runs'}"], capsys)
    assert (v_code, t_code) == (2, 2), v_err or t_err
    assert v_out == "" and t_out == ""
    assert v_err == t_err
    assert v_err.startswith("error: ")
    for expected in expectations(path):
        assert expected in v_err, f"{expected!r} not in:\n{v_err}"
    for word in FORBIDDEN:
        assert word not in v_err, f"{word!r} in:\n{v_err}"
    assert not (tmp_path / "runs").exists()  # train stopped before the run folder


def test_exit_codes_in_real_processes(tmp_path):
    path = BAD / "several_problems.yaml"
    procs = [subprocess.run([sys.executable, "-m", "deepscope", *argv], capture_output=True, text=True, timeout=120)
             for argv in (["validate", str(path)], ["train", str(path), "-o", f"log.dir={tmp_path / 'runs'}"])]
    for proc in procs:
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and "Traceback" not in proc.stderr
        for expected in expectations(path):
            assert expected in proc.stderr
    assert procs[0].stderr == procs[1].stderr
    assert not (tmp_path / "runs").exists()
