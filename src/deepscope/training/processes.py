"""Which processes a training job has, and which one this is: read from the config and the
environment, before (and without) Lightning.

Lightning's ``ddp`` strategy starts processes 1..N-1 of a machine by running the same command line
again (``LOCAL_RANK`` etc. in their environment); under SLURM ``srun`` or ``torchrun`` the launcher
starts every process. Rank 0 alone writes (and locks) the run folder and hands its folder and
resume decision down to the processes Lightning starts (:func:`handing_down`, :func:`handed_down_run`).
The run folder (:mod:`deepscope.training.run`) and the Trainer (:mod:`deepscope.training.trainer`)
both need these answers; keeping them here, apart from the Lightning callbacks of
:mod:`deepscope.training.distributed`, is what keeps those modules from importing each other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["RUN_ENV", "handed_down_run", "handing_down", "process_count", "starts_as_rank_zero"]

RUN_ENV = "DEEPSCOPE_DDP_RUN"


def process_count(train: Any) -> int:
    """Processes a ``train`` config section asks for: devices per node × nodes (``auto`` = 1 device)."""
    devices = train.devices
    per_node = len(devices) if isinstance(devices, list) else 1 if devices == "auto" else int(devices)
    return per_node * int(train.num_nodes)


def starts_as_rank_zero(train: Any) -> bool:
    """Whether this process will be global rank 0 of the job ``train`` asks for: the one that writes (and
    locks) the run folder. Read from the environment, before Lightning starts.

    A config for one process always is, also under ``srun``. With several, the rank a launcher gave
    the process decides (Lightning's order: ``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``,
    ``JSM_NAMESPACE_RANK``; none means 0), and ``NODE_RANK``/``GROUP_RANK`` must be 0 on a node started
    by hand. The processes Lightning's ``ddp`` launcher starts have ``LOCAL_RANK`` 1 or more.
    """
    if process_count(train) <= 1:
        return True
    rank = next((os.environ[k] for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
                 if k in os.environ), "0")
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))
    return int(rank) == 0 and int(node) == 0


@contextmanager
def handing_down(run_path: Path, resume: bool) -> Iterator[None]:
    """Put rank 0's run folder and resume decision where the processes Lightning starts will find them.

    Lightning's ``ddp`` launcher starts them inside ``Trainer.fit`` with a copy of this process's
    environment; the variable is removed again afterwards.
    """
    previous = os.environ.get(RUN_ENV)
    os.environ[RUN_ENV] = json.dumps({"path": str(run_path), "resume": bool(resume)})
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RUN_ENV, None)
        else:
            os.environ[RUN_ENV] = previous


def handed_down_run() -> tuple[Path, bool] | None:
    """Rank 0's run folder and resume decision, in a process Lightning started for it; else ``None``.

    Such a process has ``LOCAL_RANK`` 1 or more; rank 0 itself never reads the variable.
    """
    raw = os.environ.get(RUN_ENV)
    if raw is None or os.environ.get("LOCAL_RANK", "0") == "0":
        return None
    data = json.loads(raw)
    return Path(data["path"]), bool(data["resume"])
