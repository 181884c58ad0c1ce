"""Training-loop overhead: deepscope vs. a hand-written PyTorch loop on the same model and data.

Both sides train deepscope's ``combined`` architecture (a CNN over one calorimeter-like image,
then a dense top) on the same synthetic in-memory data, with the same initial weights, optimizer
(Adam), learning rate, loss (mse) and batch size, in this one process.

* plain: pre-standardized torch tensors, a random permutation per epoch, then for each batch
  forward, loss, zero_grad, backward, step. No validation, no logging, no checkpoints.
* deepscope: ``deepscope.train(cfg, data=...)`` with a tiny validation set and no TensorBoard,
  figures, predictions or progress bar. Its time per epoch is the ``epoch_time`` column of the
  run's ``metrics.csv``: the training batches plus the end-of-epoch work that every deepscope
  epoch does (the tiny validation pass, best/last checkpoints, the epoch's metrics). Startup and
  the final evaluation are outside it; the wall time of the whole call is shown for context.

The two sides alternate epoch by epoch (``--interleave epoch``, the default): one plain epoch runs
from a callback just before each deepscope epoch starts, outside deepscope's epoch timer, so a
burst of load from other processes hits both sides alike. ``--interleave run`` runs whole plain
runs and whole deepscope runs in turn instead (plain, deepscope, deepscope, plain, ...).

The first epoch of every run is a warm-up and is discarded on both sides; the figures are medians
over the other epochs. The ratio is deepscope samples/s divided by plain samples/s (1.0 = no
overhead). Timings are only meaningful on an otherwise idle machine: the script prints the load
average before and after.

    python bench/overhead.py                   # defaults: about 1.5 minutes on 2 CPU cores
    python bench/overhead.py --filters 8 --block-depths 1,1,1 --batch-size 32   # a ~5 ms step
    python bench/overhead.py --threads 1 --clock cpu   # robust on a shared or noisy machine

``--clock cpu`` times both sides with this process's CPU time (``time.process_time``) instead of the
wall clock: time the process spends descheduled (other processes, a busy hypervisor) is not
counted, which on a shared 2-core VM makes the ratio repeatable to about ±0.01 where wall-clock
ratios wander by ±0.04. Use it with ``--threads 1``: with more threads the CPU time also counts
the OpenMP workers spinning while Python runs. The deepscope epoch is then timed from the start
of its training batches to the end of its validation, as metrics.csv's ``epoch_time`` (the
checkpoint writes of the epoch come after both).
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from benchtools import ModelTime, load, med, spread

import deepscope
import deepscope.training.experiment as ds_experiment
from deepscope.config import load_config
from deepscope.data.dataset import to_tensors
from deepscope.data.prepare import prepare_data
from deepscope.models.build import build_model
from deepscope.models.nets.combined import CombinedNet

CLOCK = time.perf_counter  # --clock cpu: time.process_time


MODEL_TIME = ModelTime(lambda: CLOCK())  # reads the clock --clock chose

# --- data and config -------------------------------------------------------------------------------


def make_showers(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Calorimeter-like images (n, size, size, 2), channels last, and their energies (n,).

    Each sample is a Gaussian shower with a random centre, width and energy, shared between the
    two layers in a random proportion, plus a little electronic noise. The target is the energy.
    """
    rng = np.random.default_rng(seed)
    energy = rng.uniform(10.0, 100.0, n).astype(np.float32)
    centre = rng.normal(size / 2 - 0.5, 1.5, (n, 2))
    width = rng.uniform(1.0, 3.0, (n, 1, 1))
    grid = np.arange(size, dtype=np.float64)
    dy = (grid[None, :] - centre[:, :1]) ** 2  # (n, size)
    dx = (grid[None, :] - centre[:, 1:]) ** 2
    profile = np.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * width**2))
    profile /= profile.sum(axis=(1, 2), keepdims=True)
    share = rng.uniform(0.2, 0.8, (n, 1))
    fractions = np.concatenate([share, 1 - share], 1)
    x = profile[..., None] * (energy[:, None, None, None] * fractions[:, None, None, :])
    x += rng.normal(0.0, 0.05, x.shape)
    return x.astype(np.float32), energy


def make_data(n_train: int, n_val: int, seed: int = 0) -> dict[str, Any]:
    x, y = make_showers(n_train + n_val, seed=seed)
    return {"train": {"images": {"calo": x[:n_train]}, "targets": y[:n_train]},
            "val": {"images": {"calo": x[n_train:]}, "targets": y[n_train:]}}


def make_config(args: argparse.Namespace, log_dir: Path, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 0,
        "data": {"source": "arrays", "num_workers": 0,
                 "standardize": {"images": "per_channel", "targets": True}},
        "model": {
            "architecture": "combined",
            "cnn": {"block_depths": args.block_depths, "n_init_filters": args.filters, "downsampling": "avgpool",
                    "globalavgpool": True, "normalization": "batch", "activation": "relu"},
            "top": {"units": [64, 1], "activation": "relu"},
        },
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "loss": "mse", "optimizer": "adam",
                  "lr": args.lr, "accelerator": "cpu", "devices": 1},
        "log": {"dir": str(log_dir), "tensorboard": False, "figures": False, "predictions": False,
                "progress_bar": "none"},
    }


# --- the plain PyTorch loop ------------------------------------------------------------------------


class PlainLoop:
    """The identical network and data, trained by the simplest fast loop a PyTorch user would write."""

    def __init__(self, cfg_dict: dict[str, Any], data: dict[str, Any]) -> None:
        cfg = load_config(cfg_dict)
        prepared = prepare_data(cfg, data)
        self.lr, self.batch_size = cfg.train.lr, cfg.train.batch_size
        # deepscope seeds exactly like this right before it builds its net: these are its initial weights
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        self.reference = build_model(cfg.model, prepared.spec, cfg.train.loss.class_name)
        self.initial_state = copy.deepcopy(self.reference.state_dict())
        # the same standardized values deepscope trains on, as ready-made tensors
        train = to_tensors(prepared.standardizer.transform(prepared.stores["train"].read(prepared.indices["train"])))
        self.x = train["images"]["calo"].contiguous()
        self.y = train["targets"].contiguous()
        self.n = len(self.y)
        self.n_params = sum(p.numel() for p in self.reference.parameters())

    def start(self, seed: int) -> None:
        """A fresh copy of the initial weights and a fresh Adam."""
        self.net = copy.deepcopy(self.reference)
        self.net.load_state_dict(self.initial_state)
        self.net.train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.loss_fn = torch.nn.MSELoss()
        self.gen = torch.Generator().manual_seed(seed)

    def epoch(self) -> tuple[float, float, float]:
        """One epoch; returns (seconds, mean training loss, seconds inside the model's forward and backward)."""
        net, opt, loss_fn, x, y, bs = self.net, self.opt, self.loss_fn, self.x, self.y, self.batch_size
        MODEL_TIME.side, model_start = "plain", MODEL_TIME.total["plain"]
        with torch.enable_grad():
            start = CLOCK()
            perm = torch.randperm(self.n, generator=self.gen)
            total = torch.zeros(())
            for i in range(0, self.n, bs):
                idx = perm[i:i + bs]
                xb, yb = x[idx], y[idx]
                out = net(images={"calo": xb}).reshape(-1)
                loss = loss_fn(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(idx)
            seconds = CLOCK() - start
        MODEL_TIME.side = "deepscope"
        return seconds, float(total) / self.n, MODEL_TIME.total["plain"] - model_start


# --- deepscope -------------------------------------------------------------------------------------


class BenchCallback(L.Callback):
    """Epoch-level hooks only (nothing per batch).

    Runs one plain epoch when a deepscope epoch is about to start (Lightning calls callbacks before
    the system's own ``on_train_epoch_start``, where deepscope's epoch timer starts), and records
    when deepscope's training batches end (validation starts).
    """

    def __init__(self, plain: PlainLoop | None) -> None:
        self.plain = plain
        self.plain_times: list[float] = []
        self.plain_losses: list[float] = []
        self.batches: list[float] = []
        self.epochs: list[float] = []  # training batches and validation, on CLOCK
        self.plain_outside: list[float] = []  # seconds outside the model's forward and backward, per epoch
        self.outside: list[float] = []
        self.outside_batches: list[float] = []  # the same for the training batches alone
        self._start = self._model_start = 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.plain is not None:
            seconds, loss, model = self.plain.epoch()
            self.plain_times.append(seconds)
            self.plain_losses.append(loss)
            self.plain_outside.append(seconds - model)
        self._start, self._model_start = CLOCK(), MODEL_TIME.total["deepscope"]

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self.batches.append(CLOCK() - self._start)
        self.outside_batches.append(self.batches[-1] - (MODEL_TIME.total["deepscope"] - self._model_start))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # runs before the system's own hook and the checkpoint callbacks (Lightning's order)
        self.epochs.append(CLOCK() - self._start)
        self.outside.append(self.epochs[-1] - (MODEL_TIME.total["deepscope"] - self._model_start))


def run_deepscope(cfg_dict: dict[str, Any], data: dict[str, Any], plain: PlainLoop | None) -> dict[str, Any]:
    """One ``deepscope.train`` call (with ``plain`` epochs interleaved when given)."""
    bench = BenchCallback(plain)
    original = ds_experiment.build_trainer

    def with_bench(cfg: Any, run: Any, resume_epoch: Any, extra_callbacks: Any = ()) -> Any:
        return original(cfg, run, resume_epoch, extra_callbacks=[*extra_callbacks, bench])

    ds_experiment.build_trainer = with_bench
    try:
        start = time.perf_counter()
        result = deepscope.train(cfg_dict, data=data)
        wall = time.perf_counter() - start - sum(bench.plain_times)
    finally:
        ds_experiment.build_trainer = original
    with open(Path(result.run_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [float(r["epoch_time"]) for r in rows] if CLOCK is time.perf_counter else bench.epochs
    return {"epoch": epochs, "loss": float(rows[-1]["train_loss"]),
            "batches": bench.batches, "wall": wall, "plain": bench.plain_times, "plain_losses": bench.plain_losses,
            "outside": bench.outside, "outside_batches": bench.outside_batches, "plain_outside": bench.plain_outside}


# --- report ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=4096, help="training samples (default 4096)")
    p.add_argument("--val-samples", type=int, default=64, help="validation samples, kept tiny (default 64)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run; the first is warm-up (default 5)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="runs per side (default 3)")
    p.add_argument("--filters", type=int, default=16, help="model.cnn.n_init_filters (default 16)")
    p.add_argument("--block-depths", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 2],
                   help="model.cnn.block_depths, comma separated (default 1,2,2)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch.set_num_threads, the same for both sides (default: all CPUs)")
    p.add_argument("--interleave", choices=("epoch", "run"), default="epoch",
                   help="alternate plain and deepscope every epoch (default) or every run")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time with the wall clock (default) or this process's CPU time (use with --threads 1)")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is discarded)")

    torch.set_num_threads(args.threads)
    MODEL_TIME.install([(CombinedNet, "forward"), (torch.Tensor, "backward")])
    print(f"deepscope {getattr(deepscope, '__version__', '?')}, torch {torch.__version__}, lightning {L.__version__}, "
          f"python {platform.python_version()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; "
          f"load average before {load()}")
    data = make_data(args.samples, args.val_samples)
    steps = -(-args.samples // args.batch_size)
    plain_all: list[float] = []
    ds_all: list[float] = []
    ds_batches: list[float] = []
    pair_ratios: list[float] = []
    outside: dict[str, list[float]] = {"plain": [], "deepscope": [], "batches": []}  # paired epochs only
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="deepscope-bench-") as tmp:
        plain = PlainLoop(make_config(args, Path(tmp), "plain"), data)
        print(f"data: {args.samples} train + {args.val_samples} val samples of (32, 32, 2), batch {args.batch_size}, "
              f"{steps} steps per epoch; cnn block_depths {args.block_depths}, n_init_filters {args.filters} "
              f"({plain.n_params:,} parameters); Adam lr {args.lr}")
        print(f"{args.repeats} repeats x {args.epochs} epochs per side, first epoch of each run discarded, "
              f"interleaved per {args.interleave}\n")

        def plain_row(r: int, times: list[float], losses: list[float], wall: str) -> None:
            t = med(times[1:])
            plain_all.extend(times[1:])
            rows.append((str(r + 1), "plain", f"{t:.3f}", "-", f"{args.samples / t:.0f}", f"{t / steps * 1e3:.2f}",
                         wall, f"{losses[-1]:.4f}"))

        for r in range(args.repeats):
            order = ("plain", "deepscope") if args.interleave == "run" and r % 2 == 0 else ("deepscope", "plain")
            for side in order:
                if side == "plain" and args.interleave == "run":
                    plain.start(seed=r)
                    start = time.perf_counter()
                    out = [plain.epoch() for _ in range(args.epochs)]
                    plain_row(r, [o[0] for o in out], [o[1] for o in out], f"{time.perf_counter() - start:.1f}")
                elif side == "deepscope":
                    paired = args.interleave == "epoch"
                    if paired:
                        plain.start(seed=r)
                    res = run_deepscope(make_config(args, Path(tmp), f"overhead-{r}"), data, plain if paired else None)
                    timed = res["epoch"][1:]
                    if paired:
                        plain_row(r, res["plain"], res["plain_losses"], "-")
                        pair_ratios += [pt / dt for pt, dt in zip(res["plain"][1:], timed)]
                        outside["plain"] += res["plain_outside"][1:]
                        outside["deepscope"] += res["outside"][1:]
                        outside["batches"] += res["outside_batches"][1:]
                    ds_all.extend(timed)
                    ds_batches.extend(res["batches"][1:])
                    t = med(timed)
                    rows.append((str(r + 1), "deepscope", f"{t:.3f}", f"{med(res['batches'][1:]):.3f}",
                                 f"{args.samples / t:.0f}", f"{t / steps * 1e3:.2f}", f"{res['wall']:.1f}",
                                 f"{res['loss']:.4f}"))

    head = ("repeat", "side", "epoch s", "batches s", "samples/s", "ms/step", "call wall s", "train loss")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    print(line(head))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row))
    print("(epoch s: median over the timed epochs; batches s: deepscope's training batches alone; call wall s: "
          "the whole deepscope.train call, startup and final evaluation included)\n")

    plain_t, ds_t, batches_t = med(plain_all), med(ds_all), med(ds_batches)
    plain_sps, ds_sps = args.samples / plain_t, args.samples / ds_t
    print(f"plain loop: {plain_sps:7.0f} samples/s  {plain_t / steps * 1e3:6.2f} ms/step  "
          f"(median of {len(plain_all)} epochs)")
    print(f"deepscope:  {ds_sps:7.0f} samples/s  {ds_t / steps * 1e3:6.2f} ms/step  (median of {len(ds_all)} epochs, "
          f"{'metrics.csv epoch_time' if args.clock == 'wall' else 'CPU time'})")
    print(f"  training batches {batches_t / steps * 1e3:.2f} ms/step, end of epoch (validation, checkpoints, metrics) "
          f"{(ds_t - batches_t) * 1e3:.0f} ms per epoch")
    print(f"  overhead per step vs plain: {(ds_t - plain_t) / steps * 1e3:.2f} ms "
          f"({(batches_t - plain_t) / steps * 1e3:.2f} ms in the training batches)")
    if pair_ratios:
        print(f"  median ratio of paired epochs: {med(pair_ratios):.3f}")
    if outside["plain"]:
        o_plain, o_ds, o_batches = (med(outside[k]) / steps * 1e3 for k in ("plain", "deepscope", "batches"))
        extra = o_ds - o_plain
        print(f"  outside the model's forward and backward: plain {o_plain:.2f} ms/step, deepscope {o_ds:.2f} "
              f"ms/step with its end of epoch, {o_batches:.2f} ms/step in its training batches "
              f"({o_batches - o_plain:.2f} ms more than plain)")
        print(f"  overhead per step, model compute excluded: {extra:.2f} ms; at a 25 ms step that is a ratio "
              f"of {25 / (25 + extra):.3f}, at a 5 ms step {5 / (5 + extra):.3f}")
    print(f"  ratio of the fastest epochs: {min(plain_all) / min(ds_all):.3f}")
    print(f"load average after {load()}")
    wander = max(spread(plain_all), spread(ds_all))
    if wander > 0.10:
        print(f"WARNING: epoch times vary by {wander:.0%} (interquartile range / median): the machine was busy; "
              "rerun on an idle machine for figures to compare")
    print(f"ratio (deepscope / plain samples/s): {ds_sps / plain_sps:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
