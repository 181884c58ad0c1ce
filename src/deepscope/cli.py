"""The ``deepscope`` command line: a thin layer over the Python API.

``--help``, ``init``, ``schema``, ``list`` and ``simulate`` never import torch or Lightning, so they
answer at once. ``validate`` never imports Lightning; it imports torch when the config has something to build
(component options, or data whose shapes are known: the model), as ``train`` would before its first
step (:mod:`deepscope.preflight`). User errors print one message and exit 2 (no traceback unless
``--debug``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib import resources
from typing import Any

from deepscope.errors import DeepscopeError

__all__ = ["main"]

TEMPLATES = ("digits", "regression", "minimal", "deconvolution")


def _console() -> Any:
    from rich.console import Console

    tty = sys.stderr.isatty()
    return Console(stderr=True, highlight=False, width=None if tty else 200, soft_wrap=not tty)


def _setup_logging(debug: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=_console(), show_time=False, show_path=False, show_level=False,
                          markup=False, rich_tracebacks=debug)
    logger = logging.getLogger("deepscope")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


# --- commands --------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    text = resources.files("deepscope.templates").joinpath(f"{args.template}.yaml").read_text()
    if args.override:
        import yaml

        from deepscope.config import apply_overrides, dump_yaml, load_config

        cfg = load_config(apply_overrides(yaml.safe_load(text), args.override))
        text = f"# deepscope config (template '{args.template}' with overrides, defaults filled)\n" + dump_yaml(cfg)
    sys.stdout.write(text)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from deepscope import preflight
    from deepscope.config import dump_yaml, load_config

    cfg = load_config(args.config, args.override)
    preflight.check(cfg)  # what train checks before its first step (torch only when there is something to build)
    if args.resolved:
        sys.stdout.write(dump_yaml(cfg))
    else:
        print(f"OK: {args.config} is a valid deepscope config (run name '{cfg.name}')")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from deepscope.config import ExperimentConfig

    print(json.dumps(ExperimentConfig.model_json_schema(), indent=2))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from deepscope.components import ALL_REGISTRIES

    kinds = [args.kind] if args.kind else list(ALL_REGISTRIES)
    for kind in kinds:
        registry = ALL_REGISTRIES[kind]
        print(f"{kind}:")
        for entry in registry.entries():
            aliases = f"  (also: {', '.join(entry.aliases)})" if entry.aliases else ""
            doc = f"  {entry.doc}" if entry.doc else ""
            print(f"  {entry.name}{doc}{aliases}")
        print()
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from deepscope.training.experiment import Experiment

    result = Experiment(args.config, overrides=args.override).train(new_version=args.new_version)
    if result.global_rank == 0:  # under DDP every process runs this command; one reports
        _print_metrics(result.metrics, f"run folder: {result.run_dir}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from deepscope.tuning import tune

    result = tune(args.config, overrides=args.override)
    counts = ", ".join(f"{n} {k.lower()}" for k, n in result.counts.items() if k.isupper() and n)
    print(f"study folder: {result.folder} ({counts or 'no trials'})")
    if result.best_value is None:
        print("no trial completed; see trials.csv for the failures")
        return 0
    print(f"best: trial {result.best_number}, {result.metric} {result.best_value:.6g}")
    for path, value in result.best_params.items():
        print(f"  {path}: {value}")
    if result.best_config is not None:
        print(f"train it: deepscope train {result.best_config}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from deepscope.training.experiment import evaluate

    metrics = evaluate(args.run, split=args.split, checkpoint=args.checkpoint, overrides=args.override)
    _print_metrics({args.split: metrics}, f"evaluated {args.run} ({args.split})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from deepscope.training.experiment import predict

    result = predict(args.run, args.input, args.output, channels=args.channels, checkpoint=args.checkpoint,
                     overrides=args.override)
    if "files" in result:  # a folder of files in, one file per input out (e.g. FITS cubes)
        print(f"wrote {len(result['files'])} file(s) to {args.output}")
    else:
        print(f"wrote {len(result['index'])} predictions to {args.output} (keys: {', '.join(result)})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from deepscope.export import export_model

    written = export_model(args.run, args.output, format=args.format, separate=args.separate,
                           checkpoint=args.checkpoint, overwrite=args.force)
    print("wrote " + " and ".join(str(p) for p in written))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """One folder: its report.html (a run, a phased experiment, a study); several runs: a comparison."""
    from pathlib import Path

    from deepscope.reports import write_comparison, write_report
    from deepscope.reports.folders import ReportError

    if len(args.folders) == 1:
        if args.output is not None:
            raise ReportError("-o/--output names the file of a comparison of several runs; one folder's report is "
                              "always <folder>/report.html")
        written = write_report(args.folders[0])
    else:
        written = write_comparison(args.folders, Path(args.output or "comparison.html"), overwrite=args.force)
    print(f"wrote {written}")
    return 0


def cmd_simulate_grf(args: argparse.Namespace) -> int:
    """Write RACCOON/PENGUIN's HDF5 cube file of Gaussian-random-field cubes: the file the ``grf_cubes``
    source writes with the same settings (docs/grf-simulator.md)."""
    from pathlib import Path

    from pydantic import ValidationError

    from deepscope.config.grf import GRFCubesData
    from deepscope.data.grf_cubes import grf_options
    from deepscope.data.simulators.grf import check_grf_file, write_grf_file
    from deepscope.errors import ConfigError

    if args.seeds < 1:
        raise ConfigError(f"--seeds: found {args.seeds}; expected the number of simulation seeds to write, >= 1")
    given = {k: getattr(args, k) for k in ("size", "slope", "slope_difference", "simulation_seed")
             if getattr(args, k) is not None}
    try:  # the source's own checks, so the CLI accepts exactly what data.* accepts
        cfg = GRFCubesData.model_validate({"source": "grf_cubes", "path": args.output,
                                           "seeds": {"train": [0, args.seeds]}, **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "path"
        option = "OUTPUT" if key == "path" else "--" + key.replace("_", "-")
        raise ConfigError(f"{option}: found {err['input']!r}; {err['msg']}") from None
    opts, path = grf_options(cfg), Path(cfg.path)
    if check_grf_file(path, opts, cfg.n_seeds, key="OUTPUT"):
        print(f"{args.output} already holds these cubes (seeds 0..{cfg.n_seeds - 1}); nothing written")
        return 0
    write_grf_file(path, opts, cfg.n_seeds, key="OUTPUT")
    last = cfg.n_seeds - 1
    print(f"wrote {args.output}: seeds 0..{last}, datasets gr_seed0000 ... newton_seed{last:04d}, {opts.size}^3 "
          "float32 (read it with data.source cube_hdf5, or as data_params.datafile of a RACCOON/PENGUIN run file)")
    return 0


def _print_metrics(metrics: dict[str, dict[str, float]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    names = sorted({k for m in metrics.values() for k in m})
    if len(names) > 4:  # many metrics (per-column ones, baselines): one row per metric, a column per split
        table.add_column("metric")
        for split in metrics:
            table.add_column(split, justify="right")
        for n in names:
            table.add_row(n, *(f"{values[n]:.4g}" if n in values else "" for values in metrics.values()))
    else:
        table.add_column("split")
        for n in names:
            table.add_column(n, justify="right")
        for split, values in metrics.items():
            table.add_row(split, *(f"{values[n]:.4g}" if n in values else "" for n in names))
    Console().print(table)


# --- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and Lightning's own messages")
    # after the command: SUPPRESS, so that a subcommand's default does not undo 'deepscope --debug CMD'
    sub_common = argparse.ArgumentParser(add_help=False)
    sub_common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show tracebacks and Lightning's own messages")
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                           help="set a config value by its dotted path, e.g. -o train.epochs=3 (repeatable)")

    parser = argparse.ArgumentParser(
        prog="deepscope", parents=[common],
        description="Build, train, evaluate and tune deep convolutional models on instrument data.",
        epilog="Run 'deepscope COMMAND --help' for a command's options.",
    )
    from deepscope import __version__

    parser.add_argument("--version", action="version", version=f"deepscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("init", parents=[sub_common, overrides], help="print a commented starter config")
    p.add_argument("--template", choices=TEMPLATES, default="digits", help="which starter (default: digits)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("validate", parents=[sub_common, overrides], help="check a config; print every problem")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--resolved", action="store_true", help="print the config with every default filled")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", parents=[sub_common], help="print the JSON Schema of the config (for editors)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("list", parents=[sub_common], help="list every registered component")
    from deepscope.components import ALL_REGISTRIES

    p.add_argument("kind", nargs="?", choices=list(ALL_REGISTRIES), help="only this kind")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", parents=[sub_common, overrides], help="train (or resume) the run a config describes")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--new-version", action="store_true",
                   help="if a run folder of this name exists, start <name>-2 (-3, …) beside it; "
                        "resume that one later with -o name=<name>-2")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", parents=[sub_common, overrides],
                       help="search hyperparameters: run (or join, or resume) the study of the config's tune section",
                       description="Run trials of the study the config's tune section describes until the study holds "
                                   "tune.n_trials finished trials. Start it several times at once (one storage) to "
                                   "share the work; run it again to resume. See docs/tune.md.")
    p.add_argument("config", help="YAML config file with a tune section")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("evaluate", parents=[sub_common, overrides], help="recompute metrics of a run on a split")
    p.add_argument("run", help="run folder (runs/<name>)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--checkpoint", help="checkpoint file (default: best.ckpt, or last.ckpt when "
                                        "train.restore_best_weights is false)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", parents=[sub_common, overrides], help="apply a run's model to new data")
    p.add_argument("run", help="run folder (runs/<name>)")
    p.add_argument("--input", required=True, help=".npz with images/<name>, scalars, tracks (targets optional), "
                                                  "or a file of the run's source format read with the run's data "
                                                  "section: HDF5 (hdf5; registration: atlalign's layout), ROOT (root, "
                                                  "track_detector), a folder of FITS cubes (fits_dirs, radio_cubes)")
    p.add_argument("--output", required=True, help="where to write the predictions, never over an existing file: "
                                                   ".npz, .h5 or .root by its suffix, else the input's format; a "
                                                   "folder for a folder input (one FITS cube per input cube, or a "
                                                   "parameters CSV)")
    p.add_argument("--channels", choices=("last", "first"), help="image layout in --input (default: the run's)")
    p.add_argument("--checkpoint", help="checkpoint file (default: best.ckpt, or last.ckpt when "
                                        "train.restore_best_weights is false)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", parents=[sub_common],
                       help="write a run's trained net: a deepscope .pt (default), ONNX, TorchScript or an "
                            "ExportedProgram with its preprocessing metadata (docs/export.md)")
    p.add_argument("run", help="run folder (runs/<name>)")
    p.add_argument("output", help="path without extension: <output>.pt, or <output>.yaml + <output>.weights.pt; "
                                  "other formats: <output>.onnx / .pt / .pt2 and the metadata <output>.json")
    p.add_argument("--format", choices=("pt", "onnx", "torchscript", "exported-program"), default="pt",
                   help="pt: architecture and weights for deepscope's load_model (default); onnx, torchscript, "
                        "exported-program: the net alone, for onnxruntime or torch without deepscope")
    p.add_argument("--separate", action="store_true", help="architecture (.yaml) and weights (.weights.pt) apart "
                                                           "(--format pt only)")
    p.add_argument("--checkpoint", help="checkpoint file (default: best.ckpt, or last.ckpt when "
                                        "train.restore_best_weights is false)")
    p.add_argument("--force", action="store_true", help="replace files that exist")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", parents=[sub_common],
                       help="write a run's (or a study's) report.html, or compare runs side by side",
                       description="One folder: write <folder>/report.html for a run, the folder of a phased "
                                   "experiment, or a study folder (deepscope tune). Several run folders: write a "
                                   "page comparing them (config differences, final metrics, curves overlaid). "
                                   "Reports are single HTML files that open offline (docs/reports.md).")
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="run folder(s) (runs/<name>), or one study folder")
    p.add_argument("-o", "--output", metavar="OUT.html",
                   help="the comparison's file (default: comparison.html here; several folders only)")
    p.add_argument("--force", action="store_true", help="replace the comparison's file if it exists")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("simulate", parents=[sub_common], help="write a simulated data file")
    simulators = p.add_subparsers(dest="simulator", metavar="SIMULATOR", required=True)
    p = simulators.add_parser(
        "grf", parents=[sub_common],
        help="Gaussian-random-field cubes in RACCOON/PENGUIN's HDF5 layout (gr_seed0000, newton_seed0000, ...)",
        description="Write the HDF5 file the grf_cubes source writes with the same settings: one GR and one Newtonian "
                    "cube per seed, from the same white noise, with power spectra k^-(slope + difference) and "
                    "k^-slope. An existing file is kept when it holds these cubes, and never overwritten otherwise.")
    p.add_argument("output", metavar="OUTPUT", help="the HDF5 file to write (e.g. data/grf_cubes.h5)")
    p.add_argument("--seeds", type=int, default=70, metavar="N", help="simulation seeds 0..N-1 (default: 70)")
    p.add_argument("--size", type=int, metavar="N", help="cube side (default: 64, as data.size)")
    p.add_argument("--slope", type=float, help="spectral slope of the Newtonian cubes (default: 2.0)")
    p.add_argument("--slope-difference", type=float, metavar="D",
                   help="the GR cubes' slope minus the Newtonian one (default: 0.1)")
    p.add_argument("--simulation-seed", type=int, metavar="S", help="seed of the white noise (default: 0)")
    p.set_defaults(func=cmd_simulate_grf)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deepscope`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.debug)
    try:
        return int(args.func(args) or 0)
    except DeepscopeError as exc:
        if args.debug:
            raise
        from rich.markup import escape

        # escape: messages quote user text (paths, keys, values) that may contain [brackets]
        _console().print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        _console().print("[bold red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
