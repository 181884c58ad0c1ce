"""``deepscope tune``'s cost per trial: the same trials through the study machinery and as plain runs.

Both sides train the same configs (the base config with each trial's sampled values) on scikit-learn's
digits, one after the other in this process:

* ``plain``: ``deepscope.train(config)`` for each trial's config, nothing else.
* ``tune``: ``deepscope.tune(config)``: the study's storage (SQLite, or a journal file with
  ``--storage journal``), the lock around asking, the Lightning pruning callback, the trial table and
  the study's figures and report at the end.

The sides alternate (``--rounds``), each round a fresh study and fresh run folders; the ratio is the
median of tune's wall time over the median of plain's, so the extra time per trial is the study's
own work. Prints one JSON line.

    python bench/tune.py --trials 8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchtools import load, med  # noqa: E402


def _config(runs: Path, trials: int, storage: str | None) -> dict:
    tune = {"space": {"train.optimizer.config.lr": {"float": [1e-3, 1e-2], "log": True},
                      "model.cnn.n_init_filters": {"choice": [4, 8]}},
            "n_trials": trials, "sampler": "random", "pruner": "median", "pruner_startup_trials": trials}
    if storage == "journal":
        tune["storage"] = f"journal:///{runs / 'journal.log'}"
    return {
        "name": "bench", "seed": 0,
        "data": {"source": "sklearn_digits", "n_samples": 600, "split": {"val": 0.2, "test": 0.2}},
        "model": {"cnn": {"block_depths": [1], "n_init_filters": 8}, "top": {"units": [32, 10]}},
        "train": {"epochs": 3, "batch_size": 64, "loss": "cross_entropy", "metrics": ["accuracy"],
                  "optimizer": {"class_name": "adam", "config": {"lr": 0.002}}},
        "log": {"dir": str(runs), "progress_bar": "none", "tensorboard": False, "figures": False,
                "predictions": False},
        "tune": tune,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storage", choices=("sqlite", "journal"), default="sqlite")
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    import logging

    import optuna
    import torch

    import deepscope
    from deepscope.tuning.space import apply_values, decode_params
    from deepscope.tuning.storage import open_storage, storage_url
    from deepscope.tuning.study import base_config

    torch.set_num_threads(1)
    logging.getLogger("deepscope").setLevel(logging.WARNING)
    times: dict[str, list[float]] = {"plain": [], "tune": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            runs = Path(tmp) / f"tune{r}"
            cfg = _config(runs, args.trials, args.storage)
            t0 = time.perf_counter()
            result = deepscope.tune(cfg)
            times["tune"].append(time.perf_counter() - t0)
            assert result.counts["COMPLETE"] + result.counts["PRUNED"] == args.trials, result.counts
            # the same trials' configs, trained as plain runs
            loaded = deepscope.load_config(cfg)
            storage = open_storage(storage_url(loaded.tune, result.folder))
            study = optuna.load_study(study_name="bench", storage=storage)
            params = [decode_params(loaded.tune.space, t.params) for t in study.trials]
            plain_runs = Path(tmp) / f"plain{r}"
            base = base_config(deepscope.load_config(_config(plain_runs, args.trials, None)))
            t0 = time.perf_counter()
            for i, values in enumerate(params):
                raw = apply_values(base, values)
                raw["name"] = f"trial-{i:04d}"
                deepscope.train(raw)
            times["plain"].append(time.perf_counter() - t0)
    plain, tune = med(times["plain"]), med(times["tune"])
    print(json.dumps({"bench": "tune", "storage": args.storage, "trials": args.trials, "rounds": args.rounds,
                      "plain_s": round(plain, 2), "tune_s": round(tune, 2), "ratio": round(tune / plain, 3),
                      "extra_per_trial_s": round((tune - plain) / args.trials, 3), "load": load()}))


if __name__ == "__main__":
    main()
