"""Energy resolution on the calorimeter demo: accordion baseline vs image-only CNN vs the full model.

All three are scored on the same simulated test electrons with the robust relative resolution
IQR(r) / (1.349 · median(r)) of r = E_pred / E_true (equal to σ/μ for a Gaussian), overall and
in bins of true energy. The figure goes to bench/results/resolution_vs_energy.png.

    python bench/calorimeter_resolution.py               # defaults: a few minutes on 2 CPU cores
    python bench/calorimeter_resolution.py --train 40000 --epochs 30

Models (deepscope configs, trained with ``deepscope.train(cfg, data=...)``):
  * accordion: E_acc, the fixed-window cluster sum times one calibration constant (no training).
  * image-only CNN: the two calorimeter images (coarse layers upsampled to the strips' size),
    predicting E_true directly.
  * combined: images + gate (timing) images + scalars (η, φ, μ, …) + tracks, the scalars and tracks
    conditioning the CNN through FiLM and feeding the top, output × E_acc (a correction factor).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import deepscope
from deepscope.data.simulators import simulate_splits
from deepscope.metrics import resolution

HERE = Path(__file__).resolve().parent


def _subset(split: dict, keys: set[str], images: list[str]) -> dict:
    out = {k: v for k, v in split.items() if k in keys and k != "images"}
    out["images"] = {k: v for k, v in split["images"].items() if k in images}
    return out


def _cnn(filters: int) -> dict:
    return {"cnn_type": "simple", "block_depths": [1, 2, 2], "n_init_filters": filters, "init_kernel_size": 3,
            "downsampling": "maxpool", "normalization": "batch", "activation": "relu"}


def configs(epochs: int, batch: int, log_dir: str) -> dict[str, dict]:
    common_train = {"epochs": epochs, "batch_size": batch, "loss": "mape", "metrics": ["resolution", "mae"],
                    "optimizer": {"class_name": "adam", "config": {"lr": 2e-3}},
                    "early_stopping": {"use": True, "patience": 6, "min_delta": 0.0}}
    log = {"dir": log_dir, "progress_bar": "none", "tensorboard": False}
    upsampling = {"use": True, "wanted_size": [32, 8]}
    image_only = {
        "name": "image-only", "log": log, "train": common_train,
        "data": {"standardize": {"images": "per_channel"}},
        "model": {"upsampling": upsampling, "cnn": _cnn(16),
                  "top": {"units": [64, 1], "activation": "relu", "final_activation": "relu"}},
    }
    combined = {
        "name": "combined", "log": log, "train": common_train,
        "data": {"standardize": {"images": "per_channel", "scalars": True, "tracks": True}},
        "model": {
            "upsampling": upsampling, "cnn": _cnn(16),
            "gate_net": {"units": [8], "activation": "relu", "final_activation": "pgauss_f",
                         "final_activation_init": [5.0], "merge_method": "concatenate"},
            "scalar_net": {"units": [32], "activation": "relu", "connect_to": ["top", "FiLM_gen"]},
            "track_net": {"phi_units": [32], "rho_units": [32], "activation": "relu", "connect_to": ["top", "FiLM_gen"]},
            "FiLM_gen": {"use": True, "units": [32], "activation": "relu"},
            "top": {"units": [64, 1], "activation": "relu", "final_activation": None},
        },
    }
    return {"image-only CNN": image_only, "combined": combined}


def binned(pred: np.ndarray, true: np.ndarray, edges: np.ndarray) -> np.ndarray:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (true >= lo) & (true < hi)
        out.append(resolution(pred[sel], true[sel]) if sel.sum() > 20 else np.nan)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--val", type=int, default=4000)
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    t0 = time.perf_counter()
    splits = simulate_splits(args.train, args.val, args.test, seed=args.seed)
    print(f"simulated {args.train}/{args.val}/{args.test} events in {time.perf_counter() - t0:.1f} s")
    test = splits["test"]
    e_true = np.asarray(test["targets"], dtype=np.float64)
    preds = {"accordion": np.asarray(test["multiply_output_with"], dtype=np.float64)}
    timings = {"accordion": 0.0}

    with tempfile.TemporaryDirectory() as tmp:
        for label, cfg in configs(args.epochs, args.batch_size, tmp).items():
            if label == "image-only CNN":
                data = {k: _subset(v, {"targets"}, ["em_coarse", "em_fine"]) for k, v in splits.items()}
            else:
                data = {k: dict(v) for k, v in splits.items()}
            t0 = time.perf_counter()
            result = deepscope.train(cfg, data=data)
            timings[label] = time.perf_counter() - t0
            pred = np.load(result.run_dir / "predictions" / "test.npz")
            order = np.argsort(pred["index"])
            preds[label] = np.asarray(pred["predictions"], dtype=np.float64)[order]
            print(f"{label}: trained in {timings[label]:.0f} s, test resolution "
                  f"{resolution(preds[label], e_true):.4f}")

    edges = np.geomspace(10, 250, 7)
    rows = {k: {"resolution": resolution(p, e_true), "median_ratio": float(np.median(p / e_true)),
                "binned": binned(p, e_true, edges).tolist(), "seconds": timings[k]} for k, p in preds.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calorimeter_resolution.json").write_text(json.dumps(
        {"edges_GeV": edges.tolist(), "n_train": args.train, "n_test": args.test, "epochs": args.epochs,
         "models": rows}, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centers = np.sqrt(edges[:-1] * edges[1:])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (label, row), marker in zip(rows.items(), "osD"):
        ax.plot(centers, row["binned"], marker=marker, label=f"{label} (all: {row['resolution']:.4f})")
    ax.set_xscale("log")
    ax.set_xlabel("true energy [GeV]")
    ax.set_ylabel("IQR / (1.349 · median) of E_pred / E_true")
    ax.set_title(f"calorimeter demo: {args.test} test electrons")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "resolution_vs_energy.png", dpi=110)

    print(f"\n{'model':<16} {'resolution':>10} {'median E/E_true':>16} {'train s':>8}")
    for label, row in rows.items():
        print(f"{label:<16} {row['resolution']:>10.4f} {row['median_ratio']:>16.4f} {row['seconds']:>8.0f}")
    base = rows["accordion"]["resolution"]
    for label, row in rows.items():
        print(f"  {label}: {row['resolution'] / base:.3f} x accordion")


if __name__ == "__main__":
    main()
