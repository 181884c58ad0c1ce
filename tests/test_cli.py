"""The command line: init, validate, schema, list, exit codes; the light commands never load torch.

``validate`` loads torch only for a config with something to build, and never Lightning."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from deepscope.cli import TEMPLATES, main
from deepscope.components import ALL_REGISTRIES
from deepscope.config import load_config
from deepscope.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "configs" / "digits.yaml"
BAD = Path(__file__).parent / "bad_configs"


def run_main(argv, capsys):
    """``main(argv)`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# --- light commands never import torch or Lightning -------------------------------------------------


def test_light_commands_do_not_import_torch_or_lightning(tmp_path):
    # validate imports torch only when the config has something to build (the digits model, Adam's options);
    # those run last, as sys.modules only grows
    light = tmp_path / "light.yaml"
    light.write_text("model: {cnn: {activation: relu}}\ntrain: {loss: mse, optimizer: adam}\n")  # arrays, no options
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from deepscope.cli import main
        heavy = lambda: sorted(m for m in sys.modules
                               if m.split(".")[0] in ("torch", "lightning", "pytorch_lightning", "torchmetrics"))
        report = {{"import": heavy()}}
        for argv in (["--help"], ["list"], ["list", "losses"], ["schema"], ["init"],
                     ["init", "--template", "regression"], ["init", "-o", "train.epochs=3"], ["validate", {str(BAD / "name_loss.yaml")!r}],
                     ["validate", {str(light)!r}], ["validate", "--resolved", {str(light)!r}],
                     ["validate", {str(DIGITS)!r}], ["validate", "--resolved", {str(DIGITS)!r}]):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    code = main(argv)
                except SystemExit as exc:
                    code = exc.code
            report[" ".join(argv[:3])] = [code, heavy()]
        print(json.dumps(report))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report.pop("import") == []
    assert len(report) == 12
    for command, (code, heavy) in report.items():
        assert code == (2 if "name_loss" in command else 0), command
        if str(DIGITS) in command:  # the digits model is built for the 8x8 images: torch, never Lightning
            assert "torch" in heavy and not [m for m in heavy if not m.startswith("torch")], heavy[:3]
            assert not [m for m in heavy if m.split(".")[0] == "torchmetrics"]
        else:
            assert heavy == [], f"'deepscope {command}' imported {heavy[:3]}"


def test_module_entry_point_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "deepscope", "validate", str(DIGITS)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: ") and ok.stderr == ""
    missing = tmp_path / "does-not-exist.yaml"
    bad = subprocess.run([sys.executable, "-m", "deepscope", "validate", str(missing)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert f"config file '{missing}' not found" in bad.stderr
    assert "Traceback" not in bad.stderr


# --- init -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES)
def test_init_prints_a_valid_commented_config(template, capsys, tmp_path):
    code, out, err = run_main(["init", "--template", template], capsys)
    assert code == 0 and err == ""
    assert out.lstrip().startswith("#")  # commented starter
    path = tmp_path / "my.yaml"
    path.write_text(out)
    cfg = load_config(path)
    assert cfg.name == yaml.safe_load(out)["name"]


def test_init_default_is_digits(capsys):
    code, out, _ = run_main(["init"], capsys)
    assert code == 0
    assert load_config(yaml.safe_load(out)).data.source == "sklearn_digits"


@pytest.mark.parametrize("template", TEMPLATES)
def test_init_with_overrides_prints_the_resolved_config(template, capsys, tmp_path):
    # a model key of the template's architecture (the combined model's cnn, or a DeepFocus net's depths)
    model = "model.depths=[1, 1, 1]" if template == "deconvolution" else "model.cnn.n_init_filters=8"
    code, out, _ = run_main(["init", "--template", template, "-o", "train.epochs=3", "-o", model], capsys)
    assert code == 0
    assert out.startswith(f"# deepscope config (template '{template}' with overrides")
    assert "restore_best_weights" in out  # defaults filled
    path = tmp_path / "my.yaml"
    path.write_text(out)
    cfg = load_config(path)
    assert cfg.train.epochs == 3
    assert cfg.model.depths == [1, 1, 1] if template == "deconvolution" else cfg.model.cnn.n_init_filters == 8


def test_init_with_a_bad_override_exits_2(capsys):
    code, out, err = run_main(["init", "-o", "train.epoch=3"], capsys)
    assert code == 2 and out == ""
    assert "train.epoch: unknown key; did you mean 'epochs'?" in err
    code, out, err = run_main(["init", "-o", "train.epochs"], capsys)
    assert code == 2 and "expected key.path=value" in err


def test_init_unknown_template_is_a_usage_error(capsys):
    code, _, err = run_main(["init", "--template", "nope"], capsys)
    assert code == 2 and "invalid choice: 'nope'" in err


# --- validate ---------------------------------------------------------------------------------------


def test_validate_ok(capsys):
    code, out, err = run_main(["validate", str(DIGITS)], capsys)
    assert code == 0 and err == ""
    assert out == f"OK: {DIGITS} is a valid deepscope config (run name 'digits')\n"


def test_validate_resolved_prints_every_default(capsys):
    code, out, _ = run_main(["validate", "--resolved", str(DIGITS)], capsys)
    assert code == 0
    resolved = yaml.safe_load(out)
    assert resolved["train"]["restore_best_weights"] is True
    assert resolved["train"]["early_stopping"]["patience"] == 8
    assert resolved["data"]["standardize"] == {"images": "per_channel", "scalars": True, "tracks": True,
                                               "targets": False}
    assert "min_size_for_downsampling" in resolved["model"]["cnn"]
    assert load_config(resolved) == load_config(DIGITS)


def test_validate_with_overrides(capsys):
    code, out, _ = run_main(["validate", "--resolved", str(DIGITS), "-o", "train.epochs=7",
                             "-o", "train.optimizer=sgd"], capsys)
    assert code == 0
    resolved = yaml.safe_load(out)
    assert resolved["train"]["epochs"] == 7 and resolved["train"]["optimizer"] == "sgd"
    code, _, err = run_main(["validate", str(DIGITS), "-o", "train.epochs=-1"], capsys)
    assert code == 2 and "train.epochs: found -1" in err


def test_validate_reports_every_problem(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: -1\ntrain: {epoch: 3, loss: msee}\nlog: {figures: sometimes}\n")
    code, out, err = run_main(["validate", str(path)], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[0] == "error: invalid config (4 problems):"
    assert sorted(line.split(":")[0].strip(" -") for line in lines[1:]) == [
        "log.figures", "seed", "train.epoch", "train.loss"]


def test_validate_missing_file_names_it(capsys, tmp_path):
    missing = tmp_path / "nowhere" / "exp.yaml"
    code, out, err = run_main(["validate", str(missing)], capsys)
    assert code == 2 and out == ""
    assert err.strip() == f"error: config file '{missing}' not found"


def test_error_text_with_brackets_is_printed_verbatim(capsys, tmp_path):
    # rich markup must not eat user text such as '[test]' or '[/bold]'
    for name in ("[test]", "[/bold]"):
        missing = tmp_path / name / "exp.yaml"
        code, _, err = run_main(["validate", str(missing)], capsys)
        assert code == 2
        assert f"'{missing}'" in err


@pytest.mark.parametrize("argv", [["--debug", "validate"], ["validate", "--debug"]])
def test_debug_lets_the_exception_propagate(argv):
    with pytest.raises(ConfigError, match="train.loss: unknown loss 'msee'"):
        main([*argv, str(BAD / "name_loss.yaml")])


# --- schema and list --------------------------------------------------------------------------------


def test_schema_prints_json(capsys):
    code, out, _ = run_main(["schema"], capsys)
    assert code == 0
    schema = json.loads(out)
    assert set(schema["properties"]) == {"name", "seed", "task", "data", "model", "train", "log", "phases", "tune"}
    assert "TrainConfig" in schema["$defs"]


def test_list_shows_every_registry(capsys):
    code, out, _ = run_main(["list"], capsys)
    assert code == 0
    lines = out.splitlines()
    headers = [line[:-1] for line in lines if line and not line.startswith(" ")]
    assert headers == list(ALL_REGISTRIES)
    listed = {line.split()[0] for line in lines if line.startswith("  ")}
    for kind, reg in ALL_REGISTRIES.items():
        for name in reg.names():
            assert name in listed, f"{kind} '{name}' missing from 'deepscope list'"
    assert any(line.startswith("  mse ") and "(also: mean_squared_error" in line for line in lines)


def test_list_one_kind(capsys):
    code, out, _ = run_main(["list", "losses"], capsys)
    assert code == 0
    lines = [line for line in out.splitlines() if line]
    assert lines[0] == "losses:"
    assert [line.split()[0] for line in lines[1:]] == ALL_REGISTRIES["losses"].names()
    assert "optimizers:" not in out and "adamw" not in out


def test_list_unknown_kind_is_a_usage_error(capsys):
    code, _, err = run_main(["list", "lossess"], capsys)
    assert code == 2 and "invalid choice: 'lossess'" in err


def test_help_and_version(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for command in ("init", "validate", "schema", "list", "train", "evaluate", "predict"):
        assert command in out
    code, out, _ = run_main(["--version"], capsys)
    from deepscope import __version__

    assert code == 0 and out.strip() == f"deepscope {__version__}"
    code, _, err = run_main([], capsys)
    assert code == 2 and "required: COMMAND" in err
