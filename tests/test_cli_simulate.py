"""``deepscope simulate grf``: the file the grf_cubes source writes, never an overwrite, exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from deepscope.cli import main
from deepscope.config import load_config
from deepscope.data.grf_cubes import grf_options
from deepscope.data.simulators import grf


def run_main(argv, capsys):
    """``main(argv)`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help, usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _contents(path):
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs[grf.SETTINGS_ATTR]), {k: f[k][()] for k in f}


def test_writes_the_file_the_source_writes(tmp_path, capsys):
    cli_file, source_file = tmp_path / "cli.h5", tmp_path / "source.h5"
    code, out, _ = run_main(["simulate", "grf", str(cli_file), "--seeds", "3", "--size", "16", "--slope", "1.5",
                             "--slope-difference", "0.2", "--simulation-seed", "4"], capsys)
    assert code == 0 and "wrote" in out and cli_file.is_file()
    cfg = load_config({"data": {"source": "grf_cubes", "path": str(source_file), "size": 16, "slope": 1.5,
                                "slope_difference": 0.2, "simulation_seed": 4,
                                "seeds": {"train": [0, 2], "test": [2, 3]}}, "train": {"loss": "bce_with_logits"}})
    grf.ensure_grf_file(source_file, grf_options(cfg.data), cfg.data.n_seeds)
    (cli_settings, cli_cubes), (src_settings, src_cubes) = _contents(cli_file), _contents(source_file)
    assert cli_settings == src_settings and sorted(cli_cubes) == sorted(src_cubes)
    for key in cli_cubes:
        np.testing.assert_array_equal(cli_cubes[key], src_cubes[key])
    # and the source reads the CLI's file as its own
    assert grf.check_grf_file(cli_file, grf_options(cfg.data), cfg.data.n_seeds)


def test_defaults_are_the_sources(tmp_path, capsys):
    path = tmp_path / "d.h5"
    assert run_main(["simulate", "grf", str(path), "--seeds", "1", "--size", "8"], capsys)[0] == 0
    cfg = load_config({"data": {"source": "grf_cubes", "path": str(path), "size": 8, "seeds": {"train": [0, 1]}}})
    assert grf.check_grf_file(path, grf_options(cfg.data), 1)


def test_an_existing_file_is_kept_or_refused_never_overwritten(tmp_path, capsys):
    path = tmp_path / "c.h5"
    assert run_main(["simulate", "grf", str(path), "--seeds", "3", "--size", "8"], capsys)[0] == 0
    stamp = path.stat().st_mtime_ns
    code, out, _ = run_main(["simulate", "grf", str(path), "--seeds", "2", "--size", "8"], capsys)
    assert code == 0 and "already holds these cubes" in out
    code, out, err = run_main(["simulate", "grf", str(path), "--seeds", "3", "--size", "16"], capsys)
    assert code == 2 and out == ""
    assert "OUTPUT:" in err and "c.h5" in err and "size 8 (now 16)" in err and "delete it" in err
    code, _, err = run_main(["simulate", "grf", str(path), "--seeds", "5", "--size", "8"], capsys)
    assert code == 2 and "seeds up to 4 are needed" in err
    other = tmp_path / "other.h5"
    other.write_bytes(b"someone else's file")
    code, _, err = run_main(["simulate", "grf", str(other), "--seeds", "1", "--size", "8"], capsys)
    assert code == 2 and "not an HDF5 file" in err
    assert path.stat().st_mtime_ns == stamp and other.read_bytes() == b"someone else's file"


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "--seeds: found 0"),
    (["--size", "2"], "--size: found 2"),
    (["--size", "100000"], "--size: found 100000"),
    (["--slope", "inf"], "--slope: found inf"),
    (["--slope-difference", "nan"], "--slope-difference: found nan"),
    (["--simulation-seed", "-3"], "--simulation-seed: found -3"),
])
def test_bad_input_exits_2_with_one_message(tmp_path, capsys, args, message):
    code, out, err = run_main(["simulate", "grf", str(tmp_path / "x.h5"), *args], capsys)
    assert code == 2 and message in err and err.count("error:") == 1 and out == ""
    assert not (tmp_path / "x.h5").exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    code, _, err = run_main(["simulate", "grf", str(tmp_path / "x.h5"), "--size", "big"], capsys)
    assert code == 2 and "--size" in err
    code, _, err = run_main(["simulate", "nbody", str(tmp_path / "x.h5")], capsys)
    assert code == 2 and "grf" in err


def test_simulate_does_not_import_torch(tmp_path):
    script = textwrap.dedent(f"""
        import contextlib, io, sys
        from deepscope.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["simulate", "grf", {str(tmp_path / "t.h5")!r}, "--seeds", "1", "--size", "8"])
        print(code, sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning")))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == ["0", "[]"]
