"""Training-loop overhead: deepscope vs. a hand-written PyTorch loop on the same model and data.

Both sides train deepscope's ``combined`` architecture (a CNN over one calorimeter-like image,
then a dense top) on the same synthetic in-memory data, with the same initial weights, optimizer
(Adam), learning rate, loss (mse) and batch size, in this one process. The runs are interleaved
(plain, deepscope, deepscope, plain, ...) so slow drifts of the machine hit both sides alike.

* plain: pre-standardized torch tensors, a random permutation per epoch, then for each batch
  forward, loss, zero_grad, backward, step. No validation, no logging. Each epoch is timed.
* deepscope: ``deepscope.train(cfg, data=...)`` with a tiny validation set, no TensorBoard,
  figures, predictions or progress bar. The per-epoch ``epoch_time`` column of the run's
  ``metrics.csv`` is the time of the epoch as deepscope reports it (training batches plus the
  end-of-epoch work: the tiny validation pass, checkpoints, metrics). A timing callback splits
  it into training batches and the rest. The wall time of the whole call is shown for context.

The first epoch of every run is a warm-up and is discarded; the figures are medians over the other
epochs. The ratio is deepscope samples/s divided by plain samples/s (1.0 = no overhead).

    python bench/overhead.py                  # defaults: about 1.5 minutes on 2 CPU cores
    python bench/overhead.py --repeats 5 --epochs 6 --filters 8
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import deepscope
import deepscope.training.experiment as ds_experiment
from deepscope.config import load_config
from deepscope.data.dataset import to_tensors
from deepscope.data.prepare import prepare_data
from deepscope.models.build import build_model

try:  # optional: only for the split of deepscope's epoch into training batches and the rest
    import lightning as L
except ImportError:  # pragma: no cover
    L = None


# --- data and config -------------------------------------------------------------------------------


def make_showers(n: int, size: int = 32, channels: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Calorimeter-like images (n, size, size, channels), channels last, and their energies (n,).

    Each sample is a Gaussian shower with a random centre, width and energy, shared between the
    layers in a random proportion, plus a little electronic noise. The target is the true energy.
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
    fractions = np.concatenate([share, 1 - share], 1)[:, :channels]
    if channels > 2:
        fractions = np.concatenate([fractions, np.full((n, channels - 2), 0.05)], 1)
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
        self.cfg = cfg
        # deepscope seeds like this right before it builds its net, so these are its initial weights
        torch.manual_seed(cfg.seed)
        if L is not None:
            L.seed_everything(cfg.seed, workers=True, verbose=False)
        self.reference = build_model(cfg.model, prepared.spec, cfg.train.loss.class_name)
        self.initial_state = copy.deepcopy(self.reference.state_dict())
        train = prepared.standardizer.transform(prepared.stores["train"].read(prepared.indices["train"]))
        tensors = to_tensors(train)  # the same standardized values deepscope trains on
        self.x = tensors["images"]["calo"].contiguous()
        self.y = tensors["targets"].contiguous()
        self.n = len(self.y)

    def run(self, epochs: int, seed: int) -> list[float]:
        """Train a fresh copy of the initial weights; returns seconds per epoch."""
        net = copy.deepcopy(self.reference)
        net.load_state_dict(self.initial_state)
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=self.cfg.train.lr)
        loss_fn = torch.nn.MSELoss()
        bs = self.cfg.train.batch_size
        gen = torch.Generator().manual_seed(seed)
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            perm = torch.randperm(self.n, generator=gen)
            for i in range(0, self.n, bs):
                idx = perm[i:i + bs]
                xb, yb = self.x[idx], self.y[idx]
                out = net(images={"calo": xb}).reshape(-1)
                loss = loss_fn(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times.append(time.perf_counter() - start)
        self.last_loss = loss.item()
        return times


# --- deepscope -------------------------------------------------------------------------------------


class EpochSplit(L.Callback if L is not None else object):  # type: ignore[misc]
    """Epoch-level hooks only (nothing per batch): when the training batches of an epoch end."""

    def __init__(self) -> None:
        self.start: float = 0.0
        self.batches: list[float] = []
        self.val: list[float] = []
        self._val_start: float | None = None

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.start = time.perf_counter()
        self._val_start = None

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._val_start = time.perf_counter()
        self.batches.append(self._val_start - self.start)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self._val_start is not None:
            self.val.append(time.perf_counter() - self._val_start)


def run_deepscope(cfg_dict: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """One ``deepscope.train`` call; per-epoch times from metrics.csv and the timing callback."""
    split = EpochSplit() if L is not None else None
    original = ds_experiment.build_trainer

    def with_timer(cfg: Any, run: Any, resume_epoch: Any) -> Any:
        return original(cfg, run, resume_epoch, extra_callbacks=[split])

    if split is not None:
        ds_experiment.build_trainer = with_timer
    try:
        start = time.perf_counter()
        result = deepscope.train(cfg_dict, data=data)
        wall = time.perf_counter() - start
    finally:
        ds_experiment.build_trainer = original
    with open(Path(result.run_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    epoch_times = [float(r["epoch_time"]) for r in rows]
    return {"epoch": epoch_times, "batches": split.batches if split else [], "val": split.val if split else [],
            "wall": wall, "loss": float(rows[-1]["train_loss"]), "run_dir": result.run_dir}


# --- report ----------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=4096, help="training samples (default 4096)")
    p.add_argument("--val-samples", type=int, default=64, help="validation samples, kept tiny (default 64)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is warm-up (default 4)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="runs per side, interleaved (default 3)")
    p.add_argument("--filters", type=int, default=16, help="model.cnn.n_init_filters (default 16)")
    p.add_argument("--block-depths", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 2],
                   help="model.cnn.block_depths, comma separated (default 1,2,2)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch.set_num_threads for both sides (default: all cores)")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is discarded)")

    torch.set_num_threads(args.threads)
    print(f"deepscope {deepscope.__version__ if hasattr(deepscope, '__version__') else '?'}, "
          f"torch {torch.__version__}, lightning {L.__version__ if L else '-'}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads")
    print(f"data: {args.samples} train + {args.val_samples} val samples of (32, 32, 2); batch {args.batch_size}; "
          f"cnn block_depths {args.block_depths}, n_init_filters {args.filters}; Adam lr {args.lr}; "
          f"{args.epochs} epochs per run (first discarded), {args.repeats} repeats per side\n")

    data = make_data(args.samples, args.val_samples)
    steps = -(-args.samples // args.batch_size)
    plain_epochs: list[float] = []
    ds_epochs: list[float] = []
    ds_batches: list[float] = []
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="deepscope-bench-") as tmp:
        plain = PlainLoop(make_config(args, Path(tmp), "probe"), data)
        n_params = sum(p.numel() for p in plain.reference.parameters())
        print(f"model: {n_params:,} parameters; {steps} steps per epoch\n")
        for r in range(args.repeats):
            order = ("plain", "deepscope") if r % 2 == 0 else ("deepscope", "plain")
            for side in order:
                if side == "plain":
                    start = time.perf_counter()
                    times = plain.run(args.epochs, seed=r)
                    wall = time.perf_counter() - start
                    timed = times[1:]
                    plain_epochs += timed
                    rows.append((str(r + 1), "plain", f"{med(timed):.3f}", "-", f"{args.samples / med(timed):.0f}",
                                 f"{med(timed) / steps * 1e3:.1f}", f"{wall:.1f}", f"{plain.last_loss:.4f}"))
                else:
                    res = run_deepscope(make_config(args, Path(tmp), f"overhead-{r}"), data)
                    timed = res["epoch"][1:]
                    ds_epochs += timed
                    ds_batches += res["batches"][1:]
                    rows.append((str(r + 1), "deepscope", f"{med(timed):.3f}",
                                 f"{med(res['batches'][1:]):.3f}" if res["batches"] else "-",
                                 f"{args.samples / med(timed):.0f}", f"{med(timed) / steps * 1e3:.1f}",
                                 f"{res['wall']:.1f}", f"{res['loss']:.4f}"))
                print("  ran " + side + f" (repeat {r + 1})", file=sys.stderr, flush=True)

    head = ("repeat", "side", "epoch s", "batches s", "samples/s", "ms/step", "run wall s", "train loss")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    print(line(head))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row))

    plain_t, ds_t = med(plain_epochs), med(ds_epochs)
    plain_sps, ds_sps = args.samples / plain_t, args.samples / ds_t
    print()
    print(f"plain loop:  {plain_sps:8.0f} samples/s   {plain_t / steps * 1e3:6.1f} ms/step   "
          f"(median of {len(plain_epochs)} epochs)")
    print(f"deepscope:   {ds_sps:8.0f} samples/s   {ds_t / steps * 1e3:6.1f} ms/step   "
          f"(median of {len(ds_epochs)} epochs, metrics.csv epoch_time)")
    if ds_batches:
        b = med(ds_batches)
        print(f"  of which training batches {b / steps * 1e3:.1f} ms/step; end of epoch (validation, "
              f"checkpoints, metrics) {(ds_t - b) * 1e3:.0f} ms per epoch")
        print(f"ratio, training batches only:  {plain_t / b:.3f}")
    print(f"ratio (deepscope / plain samples/s): {ds_sps / plain_sps:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
