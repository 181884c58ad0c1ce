"""Training throughput on a GPU: fp32 vs bf16-mixed vs bf16-mixed + compile + channels_last.

Two workloads, each at a realistic size, each timed in this one process:

* ``combined``: DeepCalo's full combined model trained by deepscope itself (``deepscope.train``:
  gate net, res CNN with squeeze-and-excite and FiLM, scalar net, track net, top) on synthetic
  ATLAS-sized events: 4 calorimeter layers at 56 x 55 cells plus their 4 timing (gate) images,
  7 scalars and up to 10 tracks of 6 features, batch 256, in memory. The settings differ only in
  ``train.precision``, ``train.compile`` and ``train.channels_last``. Throughput is the training
  samples of an epoch over the time from the epoch's first batch to its validation (CUDA
  synchronised at both ends); the first epoch (compilation, cuDNN autotuning) is discarded and
  the median over the others is shown.
* ``unet3d``: a 3D U-Net (Çiçek et al. 2016: two 3x3x3 conv + BatchNorm + ReLU per level, 32-64-128-256
  channels, max-pool down, transposed conv up, skip concatenation) on 1 x 128^3 cubes, batch 2,
  MSE to a target cube, trained by a plain PyTorch loop with ``torch.autocast``/``torch.compile``/
  ``channels_last_3d``. deepscope's own U-Net and dense-prediction task arrive with the DeepFocus
  issue; until then this measures what those settings buy for such a network on this GPU.

GPU utilisation is the mean of NVML's utilisation counter (percent of time a kernel ran) sampled
every 50 ms inside the timed windows. Figures are printed as a Markdown table and written to
``--out`` as JSON.

    python bench/gpu_throughput.py                      # both workloads, all settings (a few minutes)
    python bench/gpu_throughput.py --quick --device cpu # a smoke run of the script itself
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

import deepscope
import deepscope.training.experiment as ds_experiment

SETTINGS = {
    "fp32": {"precision": "32", "compile": False, "channels_last": False},
    "bf16-mixed": {"precision": "bf16-mixed", "compile": False, "channels_last": False},
    "bf16-mixed + channels_last": {"precision": "bf16-mixed", "compile": False, "channels_last": True},
    "bf16-mixed + compile + channels_last": {"precision": "bf16-mixed", "compile": True, "channels_last": True},
}


# --- GPU utilisation ----------------------------------------------------------------------------------


class UtilisationSampler:
    """Samples NVML's GPU utilisation every ``period`` seconds in a thread; ``mean(windows)`` averages
    the samples that fall inside the given (start, end) perf_counter windows."""

    def __init__(self, period: float = 0.05) -> None:
        self.samples: list[tuple[float, float]] = []
        self.period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
        except Exception:  # no NVML (CPU run): utilisation is reported as n/a
            self._nvml = None

    def __enter__(self) -> "UtilisationSampler":
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
            self.samples.append((time.perf_counter(), float(util)))
            time.sleep(self.period)

    def mean(self, windows: list[tuple[float, float]]) -> float | None:
        inside = [u for t, u in self.samples if any(a <= t <= b for a, b in windows)]
        return statistics.fmean(inside) if inside else None


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# --- the combined model through deepscope ------------------------------------------------------------


def atlas_like_events(n: int, seed: int = 0, size: tuple[int, int] = (56, 55)) -> dict[str, Any]:
    """Synthetic events with the shapes of an ATLAS EM-barrel window (channels last, DeepCalo layout)."""
    rng = np.random.default_rng(seed)
    h, w = size
    energy = rng.uniform(10.0, 250.0, n).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    centre = rng.normal([h / 2, w / 2], 2.0, (n, 2))
    width = rng.uniform(1.5, 4.0, n)
    profile = np.exp(-((yy[None] - centre[:, :1, None]) ** 2 + (xx[None] - centre[:, 1:, None]) ** 2)
                     / (2 * width[:, None, None] ** 2))
    profile /= profile.sum(axis=(1, 2), keepdims=True)
    share = rng.dirichlet([2, 6, 3, 1], n).astype(np.float32)  # energy per layer
    images = (profile[..., None] * (energy[:, None, None, None] * share[:, None, None, :])).astype(np.float32)
    images += rng.normal(0, 0.05, images.shape).astype(np.float32)
    gate = rng.normal(0, 1, images.shape).astype(np.float32)
    tracks = np.zeros((n, 10, 6), np.float32)
    n_tracks = rng.integers(0, 11, n)
    for i, k in enumerate(n_tracks):
        tracks[i, :k] = rng.normal(0, 1, (k, 6))
    return {"images": {"em_barrel": images, "gate_em_barrel": gate},
            "scalars": rng.normal(0, 1, (n, 7)).astype(np.float32), "tracks": tracks, "targets": energy}


def combined_config(setting: dict[str, Any], args: argparse.Namespace, log_dir: Path, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 0,
        "data": {"source": "arrays", "num_workers": args.num_workers,
                 "standardize": {"images": "per_channel", "scalars": True, "tracks": True, "targets": True}},
        "model": {
            "architecture": "combined",
            "gate_net": {"units": [8], "activation": "relu", "final_activation": "pgauss_f",
                         "final_activation_init": [5.0], "merge_method": "concatenate"},
            "cnn": {"cnn_type": "res", "block_depths": [2, 2, 2], "n_init_filters": args.filters,
                    "init_kernel_size": 3, "downsampling": "maxpool", "normalization": "batch",
                    "activation": "relu", "use_squeeze_and_excite": True, "squeeze_and_excite_ratio": 4,
                    "globalavgpool": True},
            "scalar_net": {"units": [32], "activation": "relu", "connect_to": ["top", "FiLM_gen"]},
            "track_net": {"phi_units": [32], "rho_units": [32], "activation": "relu",
                          "connect_to": ["top", "FiLM_gen"]},
            "FiLM_gen": {"use": True, "units": [32], "activation": "relu"},
            "top": {"units": [64, 1], "activation": "relu"},
        },
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "loss": "mse", "optimizer": "adam",
                  "lr": 1e-3, "accelerator": "gpu" if args.device == "cuda" else "cpu", "devices": 1,
                  **setting},
        "log": {"dir": str(log_dir), "tensorboard": False, "figures": False, "predictions": False,
                "progress_bar": "none"},
    }


class EpochTimer(L.Callback):
    """Synchronised wall time from each training epoch's start to its validation."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.windows: list[tuple[float, float]] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        _sync(self.device)
        self._start = time.perf_counter()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        _sync(self.device)
        self.windows.append((self._start, time.perf_counter()))


def bench_combined(args: argparse.Namespace, sampler: UtilisationSampler) -> list[dict[str, Any]]:
    n_train, n_val = args.combined_samples, args.batch_size
    events = atlas_like_events(n_train + n_val)
    data = {"train": {k: ({i: a[:n_train] for i, a in v.items()} if isinstance(v, dict) else v[:n_train])
                      for k, v in events.items()},
            "val": {k: ({i: a[n_train:] for i, a in v.items()} if isinstance(v, dict) else v[n_train:])
                    for k, v in events.items()}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, setting in SETTINGS.items():
            timer = EpochTimer(args.device)
            original = ds_experiment.build_trainer

            def with_timer(cfg: Any, run: Any, resume_epoch: Any, extra_callbacks: Any = (),
                           _timer: EpochTimer = timer) -> Any:
                return original(cfg, run, resume_epoch, extra_callbacks=[*extra_callbacks, _timer])

            ds_experiment.build_trainer = with_timer
            try:
                cfg = combined_config(setting, args, Path(tmp), f"combined_{len(rows)}")
                result = deepscope.train(cfg, data=data)
            finally:
                ds_experiment.build_trainer = original
            kept = timer.windows[1:] or timer.windows
            seconds = statistics.median(b - a for a, b in kept)
            rows.append({"workload": f"combined (num_workers {args.num_workers})", "setting": label, "samples_per_s": n_train / seconds,
                         "gpu_util": sampler.mean(kept), "epochs_timed": len(kept),
                         "val_loss": result.metrics.get("val", {}).get("loss")})
            print(f"combined, {args.num_workers} workers  {label:38s} {n_train / seconds:10.0f} samples/s", flush=True)
    return rows


# --- a 3D U-Net in a plain loop ---------------------------------------------------------------------


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True),
    )


class UNet3D(nn.Module):
    """The 3D U-Net of Çiçek et al. (2016) with ``widths`` channels per level."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(_double_conv(c, w))
            c = w
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose3d(c, w, 2, stride=2))
            self.merge.append(_double_conv(2 * w, w))
            c = w
        self.out = nn.Conv3d(c, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.out(x)


def bench_unet(args: argparse.Namespace, sampler: UtilisationSampler) -> list[dict[str, Any]]:
    device = args.device
    size = args.cube
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.unet_batch, 1, size, size, size, generator=gen).to(device)
    y = torch.randn(args.unet_batch, 1, size, size, size, generator=gen).to(device)
    torch.manual_seed(0)
    initial = UNet3D().state_dict()
    rows = []
    for label, setting in SETTINGS.items():
        net = UNet3D().to(device)
        net.load_state_dict(initial)
        xb, yb = x, y
        if setting["channels_last"]:
            net = net.to(memory_format=torch.channels_last_3d)
            xb = x.contiguous(memory_format=torch.channels_last_3d)
            yb = y.contiguous(memory_format=torch.channels_last_3d)
        if setting["compile"]:
            net.compile()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        dtype = torch.bfloat16 if setting["precision"] == "bf16-mixed" else None

        def step() -> None:
            with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                loss = nn.functional.mse_loss(net(xb).float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(args.unet_warmup):
            step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.unet_steps):
            step()
        _sync(device)
        end = time.perf_counter()
        rate = args.unet_steps * args.unet_batch / (end - start)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        rows.append({"workload": "unet3d", "setting": label, "samples_per_s": rate,
                     "gpu_util": sampler.mean([(start, end)]), "peak_gib": peak})
        print(f"unet3d    {label:38s} {rate:10.2f} samples/s", flush=True)
        net = opt = None  # frees the GPU memory before the next setting (step() shares these cells)
    return rows


# --- main -------------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| workload | setting | samples/s | × fp32 | GPU util. |", "| --- | --- | ---: | ---: | ---: |"]
    base = {r["workload"]: r["samples_per_s"] for r in rows if r["setting"] == "fp32"}
    for r in rows:
        util = "n/a" if r["gpu_util"] is None else f"{r['gpu_util']:.0f} %"
        ratio = r["samples_per_s"] / base[r["workload"]] if r["workload"] in base else float("nan")
        lines.append(f"| {r['workload']} | {r['setting']} | {r['samples_per_s']:.1f} | {ratio:.2f} | {util} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--workloads", default="combined,unet3d")
    parser.add_argument("--combined-samples", type=int, default=32768)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--num-workers", default="0", help="data.num_workers for the combined model; a comma list "
                                                          "measures each")
    parser.add_argument("--cube", type=int, default=128)
    parser.add_argument("--unet-batch", type=int, default=2)
    parser.add_argument("--unet-warmup", type=int, default=5)
    parser.add_argument("--unet-steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the GPU")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.combined_samples, args.batch_size, args.filters, args.epochs = 512, 64, 8, 3
        args.cube, args.unet_batch, args.unet_warmup, args.unet_steps = 16, 1, 1, 2
    torch.backends.cudnn.benchmark = args.device == "cuda"
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    print(f"device: {name}; torch {torch.__version__}; lightning {L.__version__}", flush=True)
    rows: list[dict[str, Any]] = []
    with UtilisationSampler() as sampler:
        if "combined" in args.workloads:
            for workers in [int(w) for w in str(args.num_workers).split(",")]:
                rows += bench_combined(argparse.Namespace(**{**vars(args), "num_workers": workers}), sampler)
        if "unet3d" in args.workloads:
            rows += bench_unet(args, sampler)
    print()
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
