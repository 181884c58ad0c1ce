"""Image registration (atlalign): field-operator throughput and training throughput, each against plain PyTorch.

Two parts, each with its own table and ratio (1.0 = as fast as the baseline):

* ``ops``: ``deepscope.registration.ops.warp`` and ``compose`` against raw
  ``torch.nn.functional.grid_sample`` on the same images and fields: a batch of 8 atlalign-sized
  320 x 456 one-channel images (``--batch-size``, ``--height``, ``--width``), smooth random fields of
  about 8 px, bilinear, zero padding (``border`` for the field read by ``compose``). The baseline is
  given its **normalised sampling grid precomputed** (identity grid + field scaled to [-1, 1], built
  once before the clock starts), so it times ``grid_sample`` alone; deepscope takes the pixel field
  and turns it into that grid on every call (one ``addcmul`` on a cached identity grid), which is the
  cost being measured. Three cases: warp forward; warp forward + backward (gradients for the image
  and the field, resp. the baseline's grid); compose forward (the baseline: ``inner + grid_sample(outer,
  grid_of_inner, padding_mode="border")``). Both sides are checked to give the same numbers first.
  The two sides alternate round by round (each round a fixed number of calls, about 0.2 s, the side
  that starts alternating too); the figures are medians over the rounds. warps/s counts images
  (batch entries) per second.
* ``train``: training samples/s of the merged registration model (``registration_merged``: the
  affine net, then the U-Net on the globally warped image, fields composed) through
  ``deepscope.training.experiment.Experiment`` on the ``registration_demo`` source, against a plain
  PyTorch loop on the same network (``build_model`` after the same seeding: the same initial weights),
  the same prepared training set read once into tensors, the same loss (the registration family's
  loss as deepscope builds it), Adam with the same lr and batch size; per batch forward, loss,
  ``zero_grad``, ``backward``, ``step``; no validation, metrics or checkpoints. As in
  ``bench/overhead.py``: one plain epoch runs from a callback right before each deepscope epoch, the
  first epoch of every run is discarded, figures are medians over the others; a deepscope epoch runs
  from one epoch start to the next (training batches, validation, metrics, checkpoints), its training
  batches alone are shown too. This part needs the registration family (model, data source, task);
  where it cannot be imported the part is skipped with the reason.

    python bench/registration.py                          # both parts
    python bench/registration.py ops                      # the operators only, about 1 minute on 2 cores
    python bench/registration.py ops --threads 1 --clock cpu
    python bench/registration.py train --samples 64 --epochs 4
    python bench/registration.py --out bench/results/registration.json

``--threads`` sets ``torch.set_num_threads`` (default: all CPUs) for both sides. ``--clock cpu`` times
with this process's CPU time (use with ``--threads 1``) so time spent descheduled on a shared machine
is not counted. On a CUDA GPU (``--device cuda``, the default when one is present) every clock reading
waits for the GPU first.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from benchtools import load, med, spread

import deepscope
from deepscope.registration import ops

CLOCK = time.perf_counter  # --clock cpu: time.process_time
CUDA = False  # timing on a GPU: every clock reading waits for it first


def now() -> float:
    if CUDA:
        torch.cuda.synchronize()
    return CLOCK()


def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    for cells in (head, tuple("-" * w for w in widths), *rows):
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))


# --- part 1: the operators ---------------------------------------------------------------------------


def smooth_fields(batch: int, height: int, width: int, amplitude: float, device: torch.device,
                  seed: int) -> torch.Tensor:
    """Random smooth fields (batch, 2, height, width) in pixels: noise on a coarse grid, upsampled."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 2, max(height // 32, 2), max(width // 32, 2), generator=gen)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    return (field * (amplitude / field.abs().amax())).to(device)


def normalised_grid(field: torch.Tensor) -> torch.Tensor:
    """The grid_sample grid (B, H, W, 2) of a pixel field, built directly (align_corners=True): x first."""
    _, _, h, w = field.shape
    y, x = torch.meshgrid(torch.arange(h, dtype=field.dtype, device=field.device),
                          torch.arange(w, dtype=field.dtype, device=field.device), indexing="ij")
    gx = (x + field[:, 0]) * (2.0 / (w - 1)) - 1.0
    gy = (y + field[:, 1]) * (2.0 / (h - 1)) - 1.0
    return torch.stack([gx, gy], dim=-1).contiguous()


def _calls_per_round(fn: Callable[[], Any], target: float) -> int:
    fn()  # warm-up (allocations, the cached identity grid)
    start = now()
    fn()
    one = max(now() - start, 1e-6)
    return max(1, int(round(target / one)))


def time_pair(baseline: Callable[[], Any], ours: Callable[[], Any], rounds: int,
              target: float) -> tuple[list[float], list[float]]:
    """Seconds per call of each side, one median-able figure per round; the sides alternate."""
    calls = _calls_per_round(baseline, target)
    _calls_per_round(ours, target)
    times: dict[str, list[float]] = {"baseline": [], "ours": []}
    for r in range(rounds):
        order = (("baseline", baseline), ("ours", ours))
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            start = now()
            for _ in range(calls):
                fn()
            times[name].append((now() - start) / calls)
    return times["baseline"], times["ours"]


def bench_ops(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    b, h, w = args.batch_size, args.height, args.width
    print(f"\n== 1. field operators vs raw grid_sample: batch {b} of 1 x {h} x {w}, float32, bilinear, {device} ==")
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(b, 1, h, w, generator=gen).to(device)
    field = smooth_fields(b, h, w, 8.0, device, seed=1)
    inner = smooth_fields(b, h, w, 4.0, device, seed=2)
    grid = normalised_grid(field)  # the baseline's precomputed grid
    grid_inner = normalised_grid(inner)

    def base_warp() -> torch.Tensor:
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def our_warp() -> torch.Tensor:
        return ops.warp(image, field)

    def base_compose() -> torch.Tensor:
        return inner + F.grid_sample(field, grid_inner, mode="bilinear", padding_mode="border", align_corners=True)

    def our_compose() -> torch.Tensor:
        return ops.compose(inner, field)

    image_g = image.clone().requires_grad_(True)
    field_g = field.clone().requires_grad_(True)
    grid_g = grid.clone().requires_grad_(True)

    def base_backward() -> None:
        out = F.grid_sample(image_g, grid_g, mode="bilinear", padding_mode="zeros", align_corners=True)
        out.sum().backward()
        image_g.grad = grid_g.grad = None

    def our_backward() -> None:
        ops.warp(image_g, field_g).sum().backward()
        image_g.grad = field_g.grad = None

    # the same numbers on both sides before anything is timed
    with torch.no_grad():
        for name, (x, y) in {"warp": (base_warp(), our_warp()), "compose": (base_compose(), our_compose())}.items():
            err = float((x - y).abs().max())
            if err > 1e-4:
                raise SystemExit(f"{name}: deepscope and grid_sample differ by {err:.3g}")

    cases = [("warp", base_warp, our_warp, True), ("warp fwd+bwd", base_backward, our_backward, False),
             ("compose", base_compose, our_compose, True)]
    results: dict[str, Any] = {}
    rows = []
    for name, base_fn, our_fn, no_grad in cases:
        with torch.no_grad() if no_grad else torch.enable_grad():
            base_t, our_t = time_pair(base_fn, our_fn, args.rounds, args.round_seconds)
        bt, ot = med(base_t), med(our_t)
        ratio = bt / ot
        paired = med([x / y for x, y in zip(base_t, our_t)])
        results[name] = {"grid_sample_ms": bt * 1e3, "deepscope_ms": ot * 1e3, "grid_sample_per_s": b / bt,
                         "deepscope_per_s": b / ot, "ratio": ratio, "paired_ratio": paired,
                         "spread": max(spread(base_t), spread(our_t))}
        rows.append((name, f"{bt * 1e3:.2f}", f"{ot * 1e3:.2f}", f"{b / bt:.0f}", f"{b / ot:.0f}",
                     f"{ratio:.3f}", f"{paired:.3f}"))
    table(("operation", "grid_sample ms/call", "deepscope ms/call", "grid_sample /s", "deepscope /s",
           "ratio", "paired ratio"), rows)
    print(f"(medians over {args.rounds} alternating rounds of ~{args.round_seconds} s; /s = images (batch entries) "
          "per second; ratio = deepscope /s / grid_sample /s; paired ratio = median of the per-round ratios)")
    wander = max(r["spread"] for r in results.values())
    if wander > 0.10:
        print(f"WARNING: round times vary by {wander:.0%} (interquartile range / median): the machine was busy")
    goal = results["warp"]["ratio"]
    verdict = "met" if goal >= 0.9 else "NOT met"
    print(f"warp ratio (deepscope / grid_sample warps/s): {goal:.3f}  (goal >= 0.9: {verdict})")
    return results


# --- part 2: training throughput ---------------------------------------------------------------------


def _registration_family() -> tuple[Any, ...] | str:
    """The pieces of the registration family this part needs, or why they cannot be imported."""
    try:
        from deepscope.config import load_config
        from deepscope.config.nets.registration import RegistrationMergedParams  # noqa: F401
        from deepscope.data.dataset import to_tensors
        from deepscope.data.prepare import prepare_data
        from deepscope.models.build import build_model
        from deepscope.models.nets.registration import build_registration_merged  # noqa: F401
        from deepscope.tasks import family_for
        from deepscope.training import experiment as ds_experiment
        from deepscope.training.experiment import Experiment
        from deepscope.training.system import model_inputs
    except ImportError as err:
        return f"{type(err).__name__}: {err}"
    return load_config, to_tensors, prepare_data, build_model, family_for, ds_experiment, Experiment, model_inputs


def train_config(tmp: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The demo's pairs (written once under ``tmp``, shared by both sides), the merged model with its
    defaults, Adam; quiet logging in a temporary folder."""
    return {
        "name": name,
        "seed": 0,
        "task": "registration",
        "data": {"source": "registration_demo", "path": str(tmp / "registration_demo.h5"), "n_pairs": args.samples},
        "model": {"architecture": "registration_merged"},
        "train": {"epochs": args.epochs, "batch_size": args.train_batch_size,
                  "loss": {"registered": "ncc_9", "field": "vdclip2"},
                  "optimizer": {"class_name": "adam", "config": {"lr": 1e-3}}},
        "log": {"dir": str(tmp / "runs"), "tensorboard": False, "figures": False, "predictions": False,
                "progress_bar": "none"},
    }


class PlainLoop:
    """The same network, initial weights, training data, loss, optimizer and batch size, in plain PyTorch."""

    def __init__(self, cfg_dict: dict[str, Any], family: tuple[Any, ...], device: torch.device) -> None:
        load_config, to_tensors, prepare_data, build_model, family_for, _, _, model_inputs = family
        import lightning as L

        cfg = load_config(cfg_dict)
        prepared = prepare_data(cfg)
        fam = family_for(cfg)
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # as deepscope seeds before it builds its net
        self.reference = build_model(cfg.model, prepared.spec, cfg.train.loss_name)
        self.initial_state = copy.deepcopy(self.reference.state_dict())
        task = fam.outputs(cfg, prepared.spec, prepared.standardizer)
        try:  # per sample (B,), as deepscope's system reads it; the registration loss reads the outputs' layout
            self.loss_fn = fam.loss(cfg, task)
        except TypeError:
            self.loss_fn = fam.loss(cfg)
        self.shape_output = task.shape_output  # what deepscope's system does to the net's output (a reshape)
        store, per_batch = prepared.training_store("train")
        batch = store.read(prepared.indices["train"])
        batch = per_batch.transform(batch) if per_batch is not None else batch
        tensors = to_tensors(batch)
        self.inputs = {k: ({n: v.to(device) for n, v in x.items()} if isinstance(x, dict) else x.to(device))
                       for k, x in model_inputs(tensors).items()}
        self.targets = tensors["targets"].to(device)
        self.model_inputs = model_inputs
        self.n = len(self.targets)
        self.batch_size = cfg.train.batch_size
        self.steps = -(-self.n // self.batch_size)
        self.lr = 1e-3
        self.device = device
        self.n_params = sum(p.numel() for p in self.reference.parameters())

    def start(self, seed: int) -> None:
        self.net = copy.deepcopy(self.reference).to(self.device)
        self.net.load_state_dict(self.initial_state)
        self.net.train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.gen = torch.Generator().manual_seed(seed)

    def _take(self, value: Any, idx: torch.Tensor) -> Any:
        return {k: v[idx] for k, v in value.items()} if isinstance(value, dict) else value[idx]

    def epoch(self) -> tuple[float, float]:
        """One epoch: (seconds, mean training loss)."""
        with torch.enable_grad():
            start = now()
            perm = torch.randperm(self.n, generator=self.gen).to(self.device)
            total = torch.zeros((), device=self.device)
            for i in range(0, self.n, self.batch_size):
                idx = perm[i:i + self.batch_size]
                out = self.shape_output(self.net(**{k: self._take(v, idx) for k, v in self.inputs.items()}), None)
                loss = self.loss_fn(out, self.targets[idx]).mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                total += loss.detach() * len(idx)
            seconds = now() - start
        return seconds, float(total) / self.n


def _bench_callback(plain: PlainLoop) -> Any:
    import lightning as L

    class BenchCallback(L.Callback):
        """Runs one plain epoch before each deepscope epoch; marks deepscope's epochs and training batches."""

        def __init__(self) -> None:
            self.plain_times: list[float] = []
            self.plain_losses: list[float] = []
            self.epochs: list[float] = []
            self.batches: list[float] = []
            self.plain_wall = 0.0
            self._start: float | None = None

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if self._start is not None:
                self.epochs.append(now() - self._start)
            wall = time.perf_counter()
            seconds, loss = plain.epoch()
            self.plain_wall += time.perf_counter() - wall
            self.plain_times.append(seconds)
            self.plain_losses.append(loss)
            self._start = now()

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking and self._start is not None:
                self.batches.append(now() - self._start)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if self._start is not None:
                self.epochs.append(now() - self._start)

    return BenchCallback()


def bench_train(args: argparse.Namespace, device: torch.device) -> dict[str, Any] | None:
    print("\n== 2. training throughput: registration_merged through deepscope vs a plain PyTorch loop ==")
    family = _registration_family()
    if isinstance(family, str):
        print(f"SKIPPED: the registration family cannot be imported yet ({family})")
        return None
    ds_experiment, Experiment = family[5], family[6]
    with tempfile.TemporaryDirectory(prefix="deepscope-bench-registration-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            plain = PlainLoop(train_config(tmp, "plain", args), family, device)
        except Exception as err:  # the family is still landing: report, do not fail part 1's figures
            print(f"SKIPPED: the plain loop could not be set up ({type(err).__name__}: {err})")
            return None
        print(f"{plain.n_params:,} parameters; {plain.n} training pairs, batch {plain.batch_size}, {plain.steps} steps "
              f"per epoch; Adam lr {plain.lr}; {args.repeats} run(s) x {args.epochs} epochs per side, first epoch "
              "of each run discarded, plain epochs interleaved before deepscope epochs\n")
        sides: dict[str, list[float]] = {"plain": [], "ds": [], "batches": []}
        rows = []
        original = ds_experiment.build_trainer
        for r in range(args.repeats):
            plain.start(seed=r)
            bench = _bench_callback(plain)

            def with_bench(cfg: Any, run: Any, resume_epoch: Any, extra_callbacks: Any = (), _b: Any = bench) -> Any:
                return original(cfg, run, resume_epoch, extra_callbacks=[*extra_callbacks, _b])

            ds_experiment.build_trainer = with_bench
            try:
                start = time.perf_counter()
                result = Experiment(train_config(tmp, f"registration-{r}", args)).train()
                wall = time.perf_counter() - start - bench.plain_wall
            except Exception as err:
                print(f"SKIPPED: deepscope's run failed ({type(err).__name__}: {err})")
                return None
            finally:
                ds_experiment.build_trainer = original
            with open(Path(result.run_dir) / "metrics.csv", newline="") as f:
                last = list(csv.DictReader(f))[-1]
            sides["plain"] += bench.plain_times[1:]
            sides["ds"] += bench.epochs[1:]
            sides["batches"] += bench.batches[1:]
            p, d = med(bench.plain_times[1:]), med(bench.epochs[1:])
            rows.append((str(r + 1), "plain", f"{p:.3f}", "-", f"{plain.n / p:.1f}", f"{p / plain.steps * 1e3:.1f}",
                         "-", f"{bench.plain_losses[-1]:.4g}"))
            rows.append((str(r + 1), "deepscope", f"{d:.3f}", f"{med(bench.batches[1:]):.3f}", f"{plain.n / d:.1f}",
                         f"{d / plain.steps * 1e3:.1f}", f"{wall:.1f}", f"{float(last.get('train_loss', 'nan')):.4g}"))
    table(("run", "side", "epoch s", "batches s", "samples/s", "ms/step", "call wall s", "train loss"), rows)
    p, d, b = med(sides["plain"]), med(sides["ds"]), med(sides["batches"])
    out = {"parameters": plain.n_params, "train_samples": plain.n, "batch_size": plain.batch_size,
           "steps_per_epoch": plain.steps, "plain_samples_per_s": plain.n / p, "deepscope_samples_per_s": plain.n / d,
           "ratio_batches": p / b, "ratio": p / d}
    print(f"plain loop: {plain.n / p:8.1f} samples/s  {p / plain.steps * 1e3:7.1f} ms/step")
    print(f"deepscope:  {plain.n / d:8.1f} samples/s  {d / plain.steps * 1e3:7.1f} ms/step (end of epoch included; "
          f"training batches alone {b / plain.steps * 1e3:.1f} ms/step)")
    print(f"ratio over the training batches: {p / b:.3f}")
    print(f"ratio (deepscope / plain samples/s, end of epoch included): {p / d:.3f}")
    return out


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", nargs="?", choices=("all", "ops", "train"), default="all", help="what to run (default all)")
    p.add_argument("--batch-size", type=int, default=8, help="ops: images per call (default 8)")
    p.add_argument("--height", type=int, default=320, help="ops: image height (default 320, atlalign's)")
    p.add_argument("--width", type=int, default=456, help="ops: image width (default 456, atlalign's)")
    p.add_argument("--rounds", type=int, default=15, help="ops: alternating timing rounds per side (default 15)")
    p.add_argument("--round-seconds", type=float, default=0.2, help="ops: about how long a round runs (default 0.2)")
    p.add_argument("--epochs", type=int, default=4, help="train: epochs per run; the first is warm-up (default 4)")
    p.add_argument("--repeats", type=int, default=2, help="train: runs per side (default 2)")
    p.add_argument("--train-batch-size", type=int, default=8, help="train: batch size (default 8)")
    p.add_argument("--samples", type=int, default=64,
                   help="train: pairs the demo writes (default 64; the holdout takes its share)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch.set_num_threads, the same for both sides (default: all CPUs)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="the wall clock (default) or this process's CPU time (use with --threads 1)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="ops: where to run (default cuda when available, else cpu)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    global CLOCK, CUDA
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    device = torch.device(args.device)
    CUDA = device.type == "cuda"
    if CUDA and args.clock == "cpu":
        p.error("--clock cpu does not time a GPU: use the wall clock")
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is discarded)")
    torch.set_num_threads(args.threads)
    gpu = f", {torch.cuda.get_device_name(device)}" if CUDA else ""
    print(f"deepscope {getattr(deepscope, '__version__', '?')}, torch {torch.__version__}, python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads{gpu}; "
          f"{args.clock} clock; load average before {load()}")
    results: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "clock": args.clock,
                               "device": str(device) + gpu}
    if args.part in ("all", "ops"):
        results["ops"] = bench_ops(args, device)
    if args.part in ("all", "train"):
        results["train"] = bench_train(args, device)
    print(f"load average after {load()}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
