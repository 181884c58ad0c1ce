"""Data at scale: deepscope's HDF5 loaders against raw h5py, whole-batch reads against per-sample
collate, the memory of training from a file far larger than it, and device-resident batches.

Parts (``python bench/hdf5_loader.py PART``; ``all`` runs every one, ``rss`` only when asked):

* ``read``: the lazy ``hdf5`` and ``cube_hdf5`` stores, through deepscope's ``BatchLoader``, against
  the same batches read with raw h5py in a loop: sorted indices, one fancy read per dataset (or,
  for ``hdf5``, also one read per row, which is faster than h5py's point selection), then
  ``torch.from_numpy``. Interleaved epochs; ratio = deepscope samples/s ÷ raw samples/s.
* ``collate``: 56×11 two-channel images in memory: a per-sample ``Dataset`` + ``DataLoader`` with the
  default collate (the usual PyTorch way) against deepscope's whole-batch reads. Ratio = speed-up.
* ``rss``: writes a ≥ 4 GB HDF5 file (``--big-gb``), trains on it lazily in a child process
  (``deepscope train``, ``train.max_steps``, loader workers), reports the peak memory of the training
  job (the main process's VmHWM, and the RSS and PSS summed over it and its workers, polled from
  ``/proc``), and deletes the file.
* ``device``: samples/s of the device-resident loader against the host loader (pinned memory,
  non-blocking copies) on a GPU, feeding a small model; skipped without CUDA.

Each part prints one JSON line; ``--out`` writes them all to a file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchtools import load, med  # noqa: E402


def _write_images(path: Path, n: int, shape: tuple[int, ...], chunk: int, compression: str | None = None,
                  block: int = 65536) -> None:
    """``images`` (n, *shape) float32 and ``y`` (n,) float32, chunked ``chunk`` rows, written block by block."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        x = f.create_dataset("images", (n, *shape), "f4", chunks=(chunk, *shape), compression=compression)
        y = f.create_dataset("y", (n,), "f4", chunks=(min(n, 16 * chunk),))
        for start in range(0, n, block):
            stop = min(n, start + block)
            img = rng.normal(size=(stop - start, *shape)).astype("f4")
            x[start:stop] = img
            y[start:stop] = img.reshape(stop - start, -1)[:, :8].sum(1)


# --- read: lazy stores vs raw h5py ---------------------------------------------------------------------


def _raw_epoch(path: Path, batches: list[np.ndarray], names: tuple[str, ...], rowwise: bool) -> float:
    """Raw h5py: per batch and dataset one fancy read of the sorted rows, or (``rowwise``) one read per row."""
    import h5py
    import torch

    start = time.perf_counter()
    with h5py.File(path, "r") as f:
        datasets = [f[name] for name in names]
        for idx in batches:
            rows = np.sort(idx)
            for ds in datasets:
                if rowwise:
                    torch.from_numpy(np.stack([ds[r] for r in rows]))
                else:
                    torch.from_numpy(ds[rows])
    return time.perf_counter() - start


def _loader_epoch(loader: Any, epoch: int) -> float:
    loader.sampler.set_epoch(epoch)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def _hdf5_loader(path: Path, batch: int, block: int | None) -> Any:
    from deepscope.config.hdf5 import HDF5Data
    from deepscope.data.dataset import BatchDataset, BatchIndexSampler, BatchLoader
    from deepscope.data.hdf5 import HDF5Store, plan_hdf5

    cfg = HDF5Data(source="hdf5", path=path, images={"img": "images"}, targets="y", channels="first", lazy=True)
    plans, cache = plan_hdf5(cfg)
    store = HDF5Store(plans["pool"], cache)
    sampler = BatchIndexSampler(len(store), batch, shuffle=True, seed=0, block=block)
    return BatchLoader(BatchDataset(store, np.arange(len(store))), sampler)


def read(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Lazy hdf5 (random and chunk-local batches) and cube_hdf5 slices vs raw h5py on the same batches."""
    out: dict[str, Any] = {"part": "read", "load_before": load()}
    path = tmp / "images.h5"
    _write_images(path, args.samples, (2, 56, 11), args.chunk)
    for mode, block in (("samples", None), ("chunks", args.chunk)):
        loader = _hdf5_loader(path, args.batch_size, block)
        ours, fancy, rowwise = [], [], []
        for epoch in range(args.epochs + 1):
            loader.sampler.set_epoch(epoch)
            batches = list(loader.sampler)
            t_fancy = _raw_epoch(path, batches, ("images", "y"), rowwise=False)
            t_rows = _raw_epoch(path, batches, ("images", "y"), rowwise=True)
            t_ours = _loader_epoch(loader, epoch)
            if epoch:  # the first epoch warms the page cache
                fancy.append(t_fancy)
                rowwise.append(t_rows)
                ours.append(t_ours)
        best = min(med(fancy), med(rowwise))
        out[f"hdf5_{mode}"] = {"raw_fancy_samples_per_s": args.samples / med(fancy),
                               "raw_rowwise_samples_per_s": args.samples / med(rowwise),
                               "deepscope_samples_per_s": args.samples / med(ours),
                               "ratio_vs_fancy": med(fancy) / med(ours), "ratio_vs_best_raw": best / med(ours)}
    path.unlink()
    out["cube_hdf5_slices"] = _cube_read(args, tmp)
    out["load_after"] = load()
    return out


def _cube_read(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """cube_hdf5, 2D slices along axis 0 of 64³ cubes, lazily, vs raw h5py reading each slice."""
    import h5py
    import torch

    from deepscope.config.cube_hdf5 import CubeHDF5Data
    from deepscope.data.cube_hdf5 import CubeStore, plan_cube_hdf5
    from deepscope.data.dataset import BatchDataset, BatchIndexSampler, BatchLoader

    path, side, seeds = tmp / "cubes.h5", 64, args.cube_seeds
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        for seed in range(seeds):
            for cls in ("gr", "newton"):
                f.create_dataset(f"{cls}_seed{seed:04d}", data=rng.normal(size=(side,) * 3).astype("f4"))
    cfg = CubeHDF5Data(source="cube_hdf5", path=path, seeds={"train": [0, seeds]}, slices={"axes": [0]}, lazy=True)
    plan = plan_cube_hdf5(cfg)
    store = CubeStore(cfg, plan, plan.splits["train"])
    n = len(store)
    loader = BatchLoader(BatchDataset(store, np.arange(n)),
                         BatchIndexSampler(n, args.batch_size, shuffle=True, seed=0))
    keys = [c.key for c in plan.splits["train"]]
    ours, raw = [], []
    for epoch in range(args.epochs + 1):
        loader.sampler.set_epoch(epoch)
        batches = list(loader.sampler)
        start = time.perf_counter()
        with h5py.File(path, "r") as f:
            for idx in batches:
                rows = np.sort(idx)
                images = np.stack([f[keys[r // side]][r % side] for r in rows])
                torch.from_numpy(images)
                torch.from_numpy(np.asarray([r // side % 2 for r in rows]))
        t_raw = time.perf_counter() - start
        t_ours = _loader_epoch(loader, epoch)
        if epoch:
            raw.append(t_raw)
            ours.append(t_ours)
    path.unlink()
    return {"raw_samples_per_s": n / med(raw), "deepscope_samples_per_s": n / med(ours), "ratio": med(raw) / med(ours)}


# --- collate: per-sample Dataset vs whole batches ----------------------------------------------------------


def collate(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, Dataset

    from deepscope.data.arrays import ArraySet
    from deepscope.data.dataset import BatchDataset, BatchIndexSampler, BatchLoader

    rng = np.random.default_rng(0)
    n = args.samples
    images = rng.normal(size=(n, 2, 56, 11)).astype("f4")
    scalars = rng.normal(size=(n, 4)).astype("f4")
    targets = rng.normal(size=n).astype("f4")

    class PerSample(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"images": {"calo": torch.from_numpy(images[i])}, "scalars": torch.from_numpy(scalars[i]),
                    "targets": torch.tensor(targets[i])}

    torch.manual_seed(0)
    classic = DataLoader(PerSample(), batch_size=args.batch_size, shuffle=True)
    store = ArraySet(images={"calo": images}, scalars=scalars, targets=targets)
    ours = BatchLoader(BatchDataset(store, np.arange(n)), BatchIndexSampler(n, args.batch_size, shuffle=True))
    t_classic, t_ours = [], []
    for epoch in range(args.epochs + 1):
        start = time.perf_counter()
        for _ in classic:
            pass
        t1 = time.perf_counter() - start
        t2 = _loader_epoch(ours, epoch)
        if epoch:
            t_classic.append(t1)
            t_ours.append(t2)
    return {"part": "collate", "image": [2, 56, 11], "batch_size": args.batch_size,
            "per_sample_samples_per_s": n / med(t_classic), "whole_batch_samples_per_s": n / med(t_ours),
            "speedup": med(t_classic) / med(t_ours), "load": load()}


# --- rss: training from a file far larger than memory needs ------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the loader workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return out


def _kib(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _peak_memory_of(cmd: list[str], cwd: Path) -> tuple[dict[str, int], float, str]:
    """Run ``cmd``; the peaks, polled every 0.2 s, of the main process's resident memory (VmHWM), of
    the RSS summed over it and its worker processes, and of their PSS sum (shared pages counted
    once: what the job really holds); and the wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"main_rss": 0, "tree_rss": 0, "tree_pss": 0}
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak["main_rss"] = max(peak["main_rss"], _kib(f"/proc/{proc.pid}/status", "VmHWM:"))
        peak["tree_rss"] = max(peak["tree_rss"], sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids))
        peak["tree_pss"] = max(peak["tree_pss"], sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
        time.sleep(0.2)
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"training failed ({proc.returncode}):\n{output[-3000:]}")
    return peak, time.perf_counter() - start, output


def rss(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    shape = (2, 56, 11)
    n = int(args.big_gb * 1e9 // (4 * np.prod(shape) + 4))
    path = tmp / "big.h5"
    t0 = time.perf_counter()
    _write_images(path, n, shape, args.chunk)
    written = time.perf_counter() - t0
    size = path.stat().st_size
    cfg = {
        "name": "rss", "log": {"dir": str(tmp / "runs"), "progress_bar": "none", "tensorboard": False,
                               "figures": False, "predictions": False},
        "data": {"source": "hdf5", "path": str(path), "images": {"calo": "images"}, "targets": "y",
                 "channels": "first", "split": {"train": f"0:{n - 20000}", "val": f"{n - 20000}:{n - 10000}",
                                                "test": f"{n - 10000}:{n}"},
                 "lazy": "auto", "shuffle": "chunks", "num_workers": args.workers},
        "model": {"cnn": {"n_init_filters": 8}, "top": {"units": [32, 1]}},
        "train": {"epochs": 1, "batch_size": 256, "loss": "mse", "max_steps": args.steps},
    }
    config = tmp / "rss.yaml"
    config.write_text(json.dumps(cfg))
    try:
        peak, wall, output = _peak_memory_of([sys.executable, "-m", "deepscope", "train", str(config)], tmp)
    finally:
        path.unlink(missing_ok=True)
    return {"part": "rss", "file_gb": size / 1e9, "samples": n, "write_s": written, "train_wall_s": wall,
            "steps": args.steps, "workers": args.workers, **{f"peak_{k}_gb": v / 1e9 for k, v in peak.items()},
            "log_tail": output.strip().splitlines()[-3:]}


# --- device: device-resident vs host batches ----------------------------------------------------------------


def device(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"part": "device", "skipped": "no CUDA device"}
    from deepscope.data.arrays import ArraySet
    from deepscope.data.dataset import BatchDataset, BatchIndexSampler, BatchLoader

    n, batch = args.samples, args.device_batch
    rng = np.random.default_rng(0)
    store = ArraySet(images={"calo": rng.normal(size=(n, 2, 56, 11)).astype("f4")},
                     scalars=rng.normal(size=(n, 4)).astype("f4"), targets=rng.normal(size=n).astype("f4"))
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(16, 1)).cuda()
    opt = torch.optim.Adam(net.parameters())
    out: dict[str, Any] = {"part": "device", "gpu": torch.cuda.get_device_name(), "batch_size": batch}
    for name, dev in (("host", None), ("device", "cuda")):
        loader = BatchLoader(BatchDataset(store, np.arange(n)), BatchIndexSampler(n, batch, shuffle=True),
                             pin_memory=dev is None, device=dev)
        times = []
        for epoch in range(args.epochs + 1):
            loader.sampler.set_epoch(epoch)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for b in loader:
                x = b["images"]["calo"].cuda(non_blocking=True)
                y = b["targets"].cuda(non_blocking=True)
                loss = torch.nn.functional.mse_loss(net(x).squeeze(1), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            torch.cuda.synchronize()
            if epoch:
                times.append(time.perf_counter() - start)
        out[f"{name}_samples_per_s"] = n / med(times)
    out["ratio"] = out["device_samples_per_s"] / out["host_samples_per_s"]
    return out


PARTS = {"read": read, "collate": collate, "rss": rss, "device": device}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=(*PARTS, "all"), nargs="?", default="all")
    p.add_argument("--samples", type=int, default=200_000, help="samples of the read, collate and device parts")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device-batch", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=256, help="rows per HDF5 chunk")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--cube-seeds", type=int, default=48, help="seeds of the cube_hdf5 read part (2 cubes of 64³ each)")
    p.add_argument("--big-gb", type=float, default=4.2, help="size of the rss part's file")
    p.add_argument("--steps", type=int, default=300, help="training steps of the rss part")
    p.add_argument("--workers", type=int, default=2, help="loader workers of the rss part")
    p.add_argument("--tmp", type=Path, default=None, help="where to write the files (default: a temporary folder)")
    p.add_argument("--out", type=Path, help="also write the JSON lines here")
    args = p.parse_args(argv)
    parts = [q for q in PARTS if q != "rss"] if args.part == "all" else [args.part]
    lines = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for part in parts:
            result = PARTS[part](args, Path(tmp))
            print(json.dumps(result), flush=True)
            lines.append(json.dumps(result))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
