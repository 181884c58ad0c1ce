"""DeepFocus deconvolution: training throughput, sliding-window memory and quality against baselines.

Three parts, each with its own table and ratio; all of them use the 3D U-Net deconvolver of
``configs/deepfocus_deconvolve.yaml`` (block_sizes [16, 32, 64], depths [2, 2, 2], 16 x 32 x 32 cubes).

* ``throughput``: training steps/s through ``deepscope.train`` against a plain PyTorch loop on the
  same network class (``build_model`` from the same config and InputSpec, the same initial
  weights), the same cubes (the ``radio_cubes`` folder is written once in a temporary directory;
  the plain loop reads the same arrays with ``prepare_data``), the same batch size, spectral flips
  (``data.augment.flips: [z]``, drawn per sample with p = 0.5), Adam with the same lr, and the
  same loss (L1 + MSE, the mean over the batch of each sample's mean; the plain loop writes
  ``l1_loss + mse_loss``, which is the same number for equal-sized samples). The plain loop has
  no lr schedule, no validation, no checkpoints and no metrics. As in ``bench/overhead.py``: one
  plain epoch runs from a callback right before each deepscope epoch, the first epoch of every
  run is discarded, figures are medians over the others, and the time *outside* the network's
  forward and backward is measured on both sides, whose difference is the per-step overhead free
  of the compute's noise. A deepscope epoch is everything from one epoch start to the next
  (training batches, the validation pass, the epoch's PSNR/SSIM, the lr log, the checkpoints),
  less the plain epoch run in between; its training batches alone are also shown.
* ``memory``: the peak memory of ``sliding_window_predict`` (roi = the 16 x 32 x 32 crop, overlap
  0.25, Gaussian blending, sw_batch_size 4) over a cube of 8x the crop volume (32 x 64 x 64),
  against the peak of one forward of a batch of 4 crops; both in inference mode, each in a fresh
  subprocess (two at a time), untrained weights. On a CPU the peak is the resident set's high-water mark minus
  the resident set just before the call: after the imports (MONAI included) and the model build
  the high-water mark is reset (``/proc/self/clear_refs``) and ``VmHWM`` is read back.
  ``getrusage(RUSAGE_SELF).ru_maxrss`` cannot be used in a child of this process: ``subprocess``
  starts it with ``vfork``, so the kernel folds this (parent) process's resident set into the
  child's ``ru_maxrss`` at ``exec`` and no reset clears it (checked: a child of a 400 MB parent
  reports 400 MB). ``ru_maxrss`` is the fallback where ``/proc`` is missing, with a warning. On a
  GPU the peak is ``torch.cuda.max_memory_allocated`` minus the memory allocated before. "cold" is
  the first forward of the process (oneDNN's first-call setup included); "warm" runs one crop
  batch before the reset. Each is measured with glibc's default allocator and with a fixed mmap
  threshold (``MALLOC_MMAP_THRESHOLD_=131072``, see ``ALLOCATORS``): with the default, freed blocks
  may stay resident or not depending on what ran before, and the same call's peak wanders by ±40 %;
  with the fixed threshold the resident set follows the memory in use and repeats within 1 %.
* ``quality``: trains the config as it is (its own epochs; only the cube folder and the run
  folder move to a temporary directory, and the progress bar, TensorBoard and figures are off)
  and reports ``final_metrics.json``: the PSNR of the prediction beside the all-zeros sky, the
  best Wiener deconvolution (beam from the FITS headers, balance chosen on the scored cubes) and
  the dirty cube, the gains in dB, SSIM of prediction and Wiener, and the wall time.

On a CUDA GPU the throughput part runs a second time with ``train.precision: bf16-mixed``,
``train.channels_last: true`` and ``train.compile: true`` (the plain loop: bf16 autocast,
channels_last_3d, ``nn.Module.compile``), timed on the wall clock with ``cuda.synchronize``.

    python bench/deconvolution.py                      # all three parts, about 5.5 minutes on 2 busy cores
    python bench/deconvolution.py --quick              # smoke run, under a minute
    python bench/deconvolution.py throughput --repeats 5 --train-cubes 16
    python bench/deconvolution.py memory
    python bench/deconvolution.py quality --out bench/results/deconvolution.json

The defaults are ``--threads 1 --clock cpu``: a 3D U-Net step is compute-bound, and on a shared
2-core VM two torch threads made the same step take 1.1-4.8 s (a stalled OpenMP thread holds up
every op); one thread timed in process CPU time does not count time spent descheduled.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from benchtools import ModelTime, load, med, spread

import deepscope  # Lightning-free; Lightning and the trainer are imported where used, so that the
from deepscope.config import load_config  # memory workers start without them
from deepscope.models.build import build_model
from deepscope.models.nets.convnet import ConvNet

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "deepfocus_deconvolve.yaml"
CLOCK = time.process_time  # --clock wall: time.perf_counter
CUDA = False  # set when timing on a GPU: every clock reading waits for the GPU first

# --- timing helpers --------------------------------------------------------------------------------


def now() -> float:
    if CUDA:
        torch.cuda.synchronize()
    return CLOCK()


MODEL_TIME = ModelTime(lambda: CLOCK())  # reads the clock --clock chose


def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    for cells in (head, tuple("-" * w for w in widths), *rows):
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))


# --- the config ------------------------------------------------------------------------------------


def bench_config(tmp: Path, name: str, *, epochs: int | None = None, train_cubes: int | None = None,
                 gpu: bool = False) -> dict[str, Any]:
    """configs/deepfocus_deconvolve.yaml with its cube folder and run folder under ``tmp``; quiet logging.

    ``train_cubes`` changes the number of simulated training cubes; the folder's name says how many,
    since one folder holds cubes of one simulation only.
    """
    cfg = yaml.safe_load(CONFIG.read_text())
    n_cubes = dict(cfg["data"]["n_cubes"])
    if train_cubes is not None:
        n_cubes["train"] = train_cubes
    cfg["data"]["n_cubes"] = n_cubes
    cfg["data"]["path"] = str(tmp / f"radio_cubes_{'_'.join(f'{k}{v}' for k, v in n_cubes.items())}")
    cfg["name"] = name
    if epochs is not None:
        cfg["train"]["epochs"] = epochs
    cfg["train"].update({"accelerator": "gpu", "precision": "bf16-mixed", "channels_last": True, "compile": True}
                        if gpu else {"accelerator": "cpu"})
    cfg["train"]["devices"] = 1
    cfg["log"] = {"dir": str(tmp / "runs"), "tensorboard": False, "figures": False, "predictions": False,
                  "progress_bar": "none"}
    return cfg


# --- part 1: training throughput -------------------------------------------------------------------


class PlainLoop:
    """The same network and cubes, trained by the simplest fast loop a PyTorch user would write."""

    def __init__(self, cfg_dict: dict[str, Any], gpu: bool = False) -> None:
        import lightning as L

        from deepscope.data.dataset import to_tensors
        from deepscope.data.prepare import prepare_data

        cfg = load_config(cfg_dict)
        prepared = prepare_data(cfg)  # the radio_cubes folder deepscope reads (written here if missing)
        self.lr, self.batch_size = cfg.train.lr, cfg.train.batch_size
        self.flip_p = cfg.data.augment.p if cfg.data.augment.flips else 0.0
        # deepscope seeds exactly like this right before it builds its net: these are its initial weights
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        self.reference = build_model(cfg.model, prepared.spec, cfg.train.loss_name)
        self.initial_state = copy.deepcopy(self.reference.state_dict())
        store, per_batch = prepared.training_store("train")
        batch = store.read(prepared.indices["train"])
        batch = per_batch.transform(batch) if per_batch is not None else batch
        tensors = to_tensors(batch)
        self.device = torch.device("cuda" if gpu else "cpu")
        self.gpu = gpu
        fmt = torch.channels_last_3d if gpu else torch.contiguous_format
        self.name = next(iter(tensors["images"]))
        self.x = tensors["images"][self.name].to(self.device).contiguous(memory_format=fmt)  # (N, 1, z, y, x)
        self.y = tensors["targets"].to(self.device)  # (N, 1, z, y, x), as deepscope trains on them
        factor = tensors.get("multiply_output_with")  # (N,) per-cube scales (data.scaling: per_cube)
        self.m = None if factor is None else factor.to(self.device).reshape(-1, 1, 1, 1, 1)
        self.scaling = cfg.data.scaling
        self.n = len(self.y)
        self.steps = -(-self.n // self.batch_size)
        self.n_params = sum(p.numel() for p in self.reference.parameters())

    def start(self, seed: int) -> None:
        """A fresh copy of the initial weights and a fresh Adam."""
        self.net = copy.deepcopy(self.reference).to(self.device)
        self.net.load_state_dict(self.initial_state)
        if self.gpu:
            self.net = self.net.to(memory_format=torch.channels_last_3d)
            self.net.compile()
        self.net.train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.gen = torch.Generator().manual_seed(seed)

    def epoch(self) -> tuple[float, float, float]:
        """One epoch; returns (seconds, mean training loss, seconds inside the net's forward and backward)."""
        net, opt, x, y, m, bs, name = self.net, self.opt, self.x, self.y, self.m, self.batch_size, self.name
        MODEL_TIME.side, model_start = "plain", MODEL_TIME.total["plain"]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.gpu)
        with torch.enable_grad():
            start = now()
            perm = torch.randperm(self.n, generator=self.gen)
            flips = (torch.rand(self.n, generator=self.gen) < self.flip_p).to(self.device)
            total = torch.zeros((), device=self.device)
            for i in range(0, self.n, bs):
                idx = perm[i:i + bs].to(self.device)
                flip = flips[idx].reshape(-1, 1, 1, 1, 1)
                xb = torch.where(flip, x[idx].flip(2), x[idx])  # spectral flip of input and target alike
                yb = torch.where(flip, y[idx].flip(2), y[idx])
                with autocast:
                    out = net(images={name: xb})  # (B, 1, z, y, x)
                    if m is not None:
                        out = out * m[idx]  # per-cube scaling: the output in data units
                    loss = F.l1_loss(out.float(), yb) + F.mse_loss(out.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(idx)
            seconds = now() - start
        MODEL_TIME.side = "deepscope"
        return seconds, float(total) / self.n, MODEL_TIME.total["plain"] - model_start


def bench_callback(plain: PlainLoop) -> Any:
    """A Lightning callback (epoch-level hooks only) that runs one plain epoch before each deepscope
    epoch starts and marks where deepscope's epochs and training batches begin and end."""
    import lightning as L

    class BenchCallback(L.Callback):
        def __init__(self, plain: PlainLoop) -> None:
            self.plain = plain
            self.plain_times: list[float] = []
            self.plain_losses: list[float] = []
            self.plain_outside: list[float] = []
            self.epochs: list[float] = []  # one epoch start to the next, less the plain epoch between
            self.batches: list[float] = []  # the training batches alone
            self.outside: list[float] = []  # self.epochs outside the net's forward and backward
            self.outside_batches: list[float] = []
            self.plain_wall = 0.0
            self._start = self._model_start = None

        def _close_epoch(self) -> None:
            if self._start is not None:
                self.epochs.append(now() - self._start)
                self.outside.append(self.epochs[-1] - (MODEL_TIME.total["deepscope"] - self._model_start))

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._close_epoch()
            wall = time.perf_counter()
            seconds, loss, model = self.plain.epoch()
            self.plain_wall += time.perf_counter() - wall
            self.plain_times.append(seconds)
            self.plain_losses.append(loss)
            self.plain_outside.append(seconds - model)
            self._start, self._model_start = now(), MODEL_TIME.total["deepscope"]

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking and self._start is not None:
                self.batches.append(now() - self._start)
                self.outside_batches.append(self.batches[-1] - (MODEL_TIME.total["deepscope"] - self._model_start))

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:  # after the last epoch's checkpoints
            self._close_epoch()

    return BenchCallback(plain)


def run_deepscope(cfg_dict: dict[str, Any], plain: PlainLoop) -> dict[str, Any]:
    """One ``deepscope.train`` call with plain epochs interleaved."""
    import deepscope.training.experiment as ds_experiment

    bench = bench_callback(plain)
    original = ds_experiment.build_trainer

    def with_bench(cfg: Any, run: Any, resume_epoch: Any, extra_callbacks: Any = ()) -> Any:
        return original(cfg, run, resume_epoch, extra_callbacks=[*extra_callbacks, bench])

    ds_experiment.build_trainer = with_bench
    try:
        start = time.perf_counter()
        result = deepscope.train(cfg_dict)
        wall = time.perf_counter() - start - bench.plain_wall
    finally:
        ds_experiment.build_trainer = original
    with open(Path(result.run_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"epochs": bench.epochs, "batches": bench.batches, "outside": bench.outside,
            "outside_batches": bench.outside_batches, "plain": bench.plain_times,
            "plain_losses": bench.plain_losses, "plain_outside": bench.plain_outside,
            "loss": float(rows[-1]["train_loss"]), "wall": wall}


def throughput(args: argparse.Namespace, tmp: Path, gpu: bool = False) -> dict[str, Any]:
    """Part 1: deepscope vs the plain loop, interleaved epoch by epoch."""
    global CLOCK, CUDA
    saved_clock = CLOCK
    if gpu:
        CLOCK, CUDA = time.perf_counter, True
    else:
        MODEL_TIME.install([(ConvNet, "forward"), (torch.Tensor, "backward")])
    try:
        return _throughput(args, tmp, gpu)
    finally:
        MODEL_TIME.uninstall()
        CLOCK, CUDA = saved_clock, False


def _throughput(args: argparse.Namespace, tmp: Path, gpu: bool) -> dict[str, Any]:
    setting = "GPU, bf16-mixed + channels_last + compile" if gpu else \
        f"CPU, fp32, {torch.get_num_threads()} torch thread(s), " \
        f"{'CPU time' if CLOCK is time.process_time else 'wall clock'}"
    print(f"\n== 1. training throughput: deepscope vs a plain PyTorch loop ({setting}) ==")
    plain = PlainLoop(bench_config(tmp, "plain", train_cubes=args.train_cubes, gpu=gpu), gpu=gpu)
    steps, bs = plain.steps, plain.batch_size
    print(f"3D U-Net deconvolver, {plain.n_params:,} parameters; {plain.n} training cubes of "
          f"{tuple(plain.x.shape[2:])} (data.scaling {plain.scaling}), batch {bs}, {steps} steps per epoch; "
          f"Adam lr {plain.lr}; L1 + MSE; z flips")
    print(f"{args.repeats} run(s) x {args.epochs} epochs per side, first epoch of each run discarded, "
          f"plain epochs interleaved before deepscope epochs\n")
    sides: dict[str, list[float]] = {k: [] for k in ("plain", "ds", "batches", "o_plain", "o_ds", "o_batches")}
    rows = []
    for r in range(args.repeats):
        plain.start(seed=r)
        res = run_deepscope(bench_config(tmp, f"throughput-{r}", epochs=args.epochs, train_cubes=args.train_cubes,
                                         gpu=gpu), plain)
        for key, values in (("plain", res["plain"]), ("ds", res["epochs"]), ("batches", res["batches"]),
                            ("o_plain", res["plain_outside"]), ("o_ds", res["outside"]),
                            ("o_batches", res["outside_batches"])):
            sides[key] += values[1:]
        p, d, b = med(res["plain"][1:]), med(res["epochs"][1:]), med(res["batches"][1:])
        rows.append((str(r + 1), "plain", f"{p:.3f}", "-", f"{steps / p:.3f}", f"{p / steps * 1e3:.1f}", "-",
                     f"{res['plain_losses'][-1]:.3g}"))
        rows.append((str(r + 1), "deepscope", f"{d:.3f}", f"{b:.3f}", f"{steps / d:.3f}", f"{d / steps * 1e3:.1f}",
                     f"{res['wall']:.1f}", f"{res['loss']:.3g}"))
    table(("run", "side", "epoch s", "batches s", "steps/s", "ms/step", "call wall s", "train loss"), rows)
    print("(medians over the timed epochs; batches s: deepscope's training batches alone; call wall s: the whole "
          "deepscope.train call with startup and final evaluation)\n")

    p, d, b = med(sides["plain"]), med(sides["ds"]), med(sides["batches"])
    out = {"setting": setting, "steps_per_epoch": steps, "batch_size": bs, "train_cubes": plain.n,
           "parameters": plain.n_params, "epochs_timed": len(sides["ds"]),
           "plain_ms_per_step": p / steps * 1e3, "deepscope_ms_per_step": d / steps * 1e3,
           "deepscope_batches_ms_per_step": b / steps * 1e3, "end_of_epoch_ms": (d - b) * 1e3,
           "overhead_ms_per_step": (d - p) / steps * 1e3, "overhead_batches_ms_per_step": (b - p) / steps * 1e3,
           "ratio": p / d, "ratio_batches": p / b,
           "spread": max(spread(sides["plain"]), spread(sides["ds"]))}
    print(f"plain loop:  {steps / p:6.3f} steps/s  {p / steps * 1e3:7.1f} ms/step  "
          f"(median of {len(sides['plain'])} epochs)")
    print(f"deepscope:   {steps / d:6.3f} steps/s  {d / steps * 1e3:7.1f} ms/step  "
          f"(median of {len(sides['ds'])} epochs, end of epoch included)")
    print(f"  training batches {b / steps * 1e3:.1f} ms/step; end of epoch (validation, PSNR/SSIM of the epoch, "
          f"checkpoints) {(d - b) * 1e3:.0f} ms per epoch = {(d - b) / steps * 1e3:.1f} ms per step at {steps} steps")
    print(f"  overhead per step vs plain: {(d - p) / steps * 1e3:.1f} ms ({(b - p) / steps * 1e3:.1f} ms in the "
          f"training batches)")
    if not gpu:  # the model-time wrappers are installed for CPU timing only
        op, od, ob = (med(sides[k]) / steps * 1e3 for k in ("o_plain", "o_ds", "o_batches"))
        out.update({"outside_plain_ms": op, "outside_deepscope_ms": od, "outside_batches_ms": ob,
                    "overhead_model_excluded_ms": od - op, "overhead_batches_model_excluded_ms": ob - op})
        print(f"  outside the net's forward and backward: plain {op:.2f} ms/step, deepscope {ob:.2f} ms/step in its "
              f"training batches, {od:.2f} ms/step with its end of epoch")
        print(f"  overhead per step, model compute excluded: {ob - op:.2f} ms in the training batches, "
              f"{od - op:.2f} ms with the end of epoch ({(od - ob) * steps:.0f} ms per epoch)")
    if out["spread"] > 0.10:
        print(f"WARNING: epoch times vary by {out['spread']:.0%} (interquartile range / median): the machine was busy")
    print(f"ratio over the training batches alone (deepscope / plain steps/s): {p / b:.3f}")
    print(f"ratio (deepscope / plain steps/s, end of epoch included): {p / d:.3f}  "
          f"(goal >= 0.95: {'met' if p / d >= 0.95 else 'NOT met'})")
    return out


# --- part 2: sliding-window memory -----------------------------------------------------------------

ROI = (16, 32, 32)
CUBE = (32, 64, 64)  # 8x the crop's volume
SW_BATCH = 4


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    """Reset the resident set's high-water mark to the current resident set (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_worker(mode: str, warm: bool, threads: int) -> None:
    """In a fresh process: the peak memory of one sliding-window prediction or one crop-batch forward.

    Prints one JSON line: ``{"mode", "warm", "peak_mib", "method", "baseline_mib"}``.
    """
    import monai.inferers  # noqa: F401  (sliding_window_predict imports it on first use; not inference memory)

    from deepscope.data.prepare import describe_data
    from deepscope.evaluation.sliding import sliding_window_predict

    torch.set_num_threads(threads)
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    with tempfile.TemporaryDirectory(prefix="deepscope-mem-") as tmp:
        cfg = load_config(bench_config(Path(tmp), "memory"))
        spec = describe_data(cfg)  # the crops' InputSpec, from the config alone (nothing is written)
    assert tuple(spec.spatial) == ROI, spec.spatial
    name = next(iter(spec.images))
    net = build_model(cfg.model, spec, cfg.train.loss_name).to(device).eval()
    crops = torch.randn(SW_BATCH, 1, *ROI, device=device)  # (4, 1, 16, 32, 32)
    cube = torch.randn(1, 1, *CUBE, device=device)  # (1, 1, 32, 64, 64)

    def predictor(windows: torch.Tensor) -> torch.Tensor:  # (N, 1, *ROI) -> (N, 1, *ROI)
        return net(images={name: windows})

    with torch.inference_mode():
        if warm:
            predictor(crops)
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            method = "cuda.max_memory_allocated"
        else:
            reset = _reset_peak()
            base_kb = _status_kb("VmRSS") if reset else None
            if base_kb is None:  # no /proc: ru_maxrss, which may hold the parent's resident set (see the docstring)
                base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                method = "ru_maxrss (no /proc reset; may be inflated)"
            else:
                method = "VmHWM after clear_refs"
        if mode == "sliding":
            out = sliding_window_predict(predictor, cube, ROI, overlap=0.25, mode="gaussian", sw_batch_size=SW_BATCH)
        else:
            out = predictor(crops)
        if gpu:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
            baseline = base
        else:
            high = _status_kb("VmHWM") if method.startswith("VmHWM") else \
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak, baseline = (high - base_kb) * 1024, base_kb * 1024
    assert out.shape[2:] == (CUBE if mode == "sliding" else ROI), out.shape
    print(json.dumps({"mode": mode, "warm": warm, "peak_mib": peak / 2**20, "baseline_mib": baseline / 2**20,
                      "method": method, "device": str(device)}))


# glibc's default mmap threshold moves up when a large block is freed, after which blocks of that size
# come from the heap and stay resident when freed: whether a forward's buffers land there depends on
# what ran before, and the peaks of the same call wandered from 28 to 46 MiB. A fixed threshold keeps
# every block over 128 KiB in its own mapping, returned on free, so the resident set follows the
# memory in use and the peaks repeat within 1 %.
ALLOCATORS = {"fixed": {"MALLOC_MMAP_THRESHOLD_": "131072"}, "default": {}}


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """Part 2: sliding-window peak vs one crop batch's peak, each in a fresh subprocess (two at a time:
    the peaks do not depend on the speed)."""
    print(f"\n== 2. sliding-window memory: a {CUBE} cube, roi {ROI}, overlap 0.25, sw_batch_size {SW_BATCH} "
          f"vs one forward of {SW_BATCH} crops ==")
    gpu = torch.cuda.is_available()
    cells = [(a, w) for a in (("default",) if gpu else ("fixed",) if args.quick else ("fixed", "default"))
             for w in ((False,) if args.quick else (False, True))]
    jobs = [(a, w, mode) for _ in range(args.memory_repeats) for a, w in cells for mode in ("crop", "sliding")]
    results: dict[tuple[str, bool], dict[str, list[float]]] = {}
    methods: set[str] = set()
    running: list[tuple[tuple[str, bool, str], subprocess.Popen]] = []
    while jobs or running:
        while jobs and len(running) < (1 if gpu else 2):
            allocator, warm, mode = job = jobs.pop(0)
            cmd = [sys.executable, str(Path(__file__).resolve()), "memory-worker", "--mode", mode,
                   "--threads", str(args.threads)] + (["--warm"] if warm else [])
            env = {**os.environ, **ALLOCATORS[allocator]}
            running.append((job, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                  env=env)))
        (allocator, warm, mode), proc = running.pop(0)
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"memory worker ({mode}, {allocator} malloc) failed:\n{stderr[-3000:]}")
        line = json.loads(stdout.strip().splitlines()[-1])
        methods.add(line["method"])
        results.setdefault((allocator, warm), {}).setdefault(mode, []).append(line["peak_mib"])
    print(f"peak = high-water mark minus the memory just before the call ({', '.join(sorted(methods))}); "
          f"{args.memory_repeats} fresh process(es) per cell, median; malloc 'fixed' = "
          f"MALLOC_MMAP_THRESHOLD_=131072\n")
    rows, out = [], {"method": ", ".join(sorted(methods))}
    for (allocator, warm), cell in results.items():
        crop, sliding = med(cell["crop"]), med(cell["sliding"])
        ratio = sliding / crop if crop > 0 else float("inf")
        key = f"{allocator}_{'warm' if warm else 'cold'}"
        out[key] = {"crop_batch_mib": crop, "sliding_mib": sliding, "ratio": ratio,
                    "crop_runs": cell["crop"], "sliding_runs": cell["sliding"]}
        rows.append((allocator if not gpu else "cuda", "warm" if warm else "cold", f"{crop:.1f}", f"{sliding:.1f}",
                     f"{ratio:.2f}", " / ".join(f"{v:.1f}" for v in cell["crop"]),
                     " / ".join(f"{v:.1f}" for v in cell["sliding"])))
    table(("malloc", "state", "crop batch MiB", "sliding MiB", "ratio", "crop runs", "sliding runs"), rows)
    head = out["default_cold" if gpu else "fixed_cold"]
    out["ratio"] = head["ratio"]
    print(f"ratio (sliding window / one crop batch, cold{'' if gpu else ', fixed mmap threshold'}): "
          f"{head['ratio']:.2f}  (goal <= 1.5: {'met' if head['ratio'] <= 1.5 else 'NOT met'})")
    return out


# --- part 3: quality vs baselines ------------------------------------------------------------------


def quality(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Part 3: train the config as it is and read final_metrics.json."""
    cfg = bench_config(tmp, "quality", epochs=2 if args.quick else None)
    epochs = cfg["train"]["epochs"]
    print(f"\n== 3. quality vs baselines: configs/deepfocus_deconvolve.yaml, {epochs} epochs"
          f"{' (--quick: a smoke run, not the config)' if args.quick else ''} ==")
    start = time.perf_counter()
    result = deepscope.train(cfg)
    wall = time.perf_counter() - start
    metrics = json.loads((Path(result.run_dir) / "final_metrics.json").read_text())
    with open(Path(result.run_dir) / "metrics.csv", newline="") as f:
        history = list(csv.DictReader(f))
    best = max(history, key=lambda r: float(r["val_psnr"]) if r.get("val_psnr") else -math.inf)
    rows = []
    for split in ("val", "test"):
        m = metrics.get(split)
        if m is None:
            continue
        rows.append((split, f"{m['psnr']:.2f}", f"{m['psnr_zeros']:.2f}", f"{m['psnr_wiener']:.2f}",
                     f"{m['wiener_balance']:.3g}", f"{m['psnr_dirty']:.2f}", f"{m['gain_over_zeros_db']:+.2f}",
                     f"{m['gain_over_wiener_db']:+.2f}", f"{m['ssim']:.3f}", f"{m['ssim_wiener']:.3f}"))
    table(("split", "PSNR pred", "zeros", "Wiener", "balance", "dirty", "gain/zeros dB", "gain/Wiener dB",
           "SSIM pred", "SSIM Wiener"), rows)
    print(f"(PSNR in dB; {result.epochs} epochs in {wall:.0f} s wall, startup and final evaluation included; "
          f"best val_psnr {float(best['val_psnr']):.2f} dB after epoch {int(best['epoch']) + 1}, whose weights "
          f"were scored; {float(history[-1]['val_psnr']):.2f} dB after the last)")
    for split in ("val", "test"):
        m = metrics.get(split)
        if m is None:
            continue
        beaten = [n for n, k in (("the all-zeros sky", "gain_over_zeros_db"), ("the best Wiener deconvolution",
                                                                              "gain_over_wiener_db")) if m[k] <= 0]
        verdict = ("beats both baselines" if not beaten else "does NOT beat " + " nor ".join(beaten))
        print(f"{split}: the model {verdict} (gain over zeros {m['gain_over_zeros_db']:+.2f} dB, over Wiener "
              f"{m['gain_over_wiener_db']:+.2f} dB)")
    return {"epochs": result.epochs, "wall_s": wall, "best_epoch": int(best["epoch"]) + 1,
            "last_val_psnr": float(history[-1]["val_psnr"]), "metrics": metrics}


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", nargs="?", default="all",
                   choices=("all", "throughput", "memory", "quality", "memory-worker"),
                   help="which part to run (default all; memory-worker is internal)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run x 3 epochs, cold memory only, 2 epochs of "
                                                        "quality (under a minute)")
    p.add_argument("--repeats", type=int, default=3, help="throughput: deepscope.train runs (default 3)")
    p.add_argument("--epochs", type=int, default=5, help="throughput: epochs per run, the first discarded (default 5)")
    p.add_argument("--train-cubes", type=int, default=None,
                   help="throughput: simulated training cubes (default: the config's n_cubes.train, 6)")
    p.add_argument("--memory-repeats", type=int, default=3, help="memory: fresh processes per cell (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, every part (default 1)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="cpu",
                   help="CPU throughput timing: this process's CPU time (default) or the wall clock")
    p.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument("--mode", choices=("crop", "sliding"), help=argparse.SUPPRESS)
    p.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.part == "memory-worker":
        memory_worker(args.mode, args.warm, args.threads)
        return 0
    if args.quick:
        args.repeats, args.epochs, args.memory_repeats = 1, 3, 1
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is discarded)")
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    import lightning

    print(f"deepscope {getattr(deepscope, '__version__', '?')}, torch {torch.__version__}, "
          f"lightning {lightning.__version__}, "
          f"python {platform.python_version()}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"{torch.get_num_threads()} torch thread(s); load average before {load()}")
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
                              "threads": args.threads, "clock": args.clock, "quick": args.quick}
    parts = ("throughput", "memory", "quality") if args.part == "all" else (args.part,)
    with tempfile.TemporaryDirectory(prefix="deepscope-deconv-") as tmp_name:
        tmp = Path(tmp_name)
        if "throughput" in parts:
            report["throughput_cpu"] = throughput(args, tmp)
            if torch.cuda.is_available():
                report["throughput_gpu"] = throughput(args, tmp, gpu=True)
            else:
                print("GPU figures were not measured (no GPU): bf16-mixed + channels_last + compile need CUDA")
        if "memory" in parts:
            report["memory"] = memory(args)
        if "quality" in parts:
            report["quality"] = quality(args, tmp)
    report["wall_s"] = time.perf_counter() - started
    print(f"\nload average after {load()}; {report['wall_s']:.0f} s in all")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
