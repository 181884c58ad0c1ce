"""One worker of a study: ask for a trial, train it as an ordinary run folder, tell the result.

Several workers (``deepscope tune`` started more than once on one storage) share a study:

- **No trial too many.** Counting the study's trials and asking for a new one happen under the study
  folder's lock (:class:`~deepscope.training.lock.RunLock`, safe on NFS), so ``n_trials`` is the
  study's total: once finished trials plus running ones reach it, a worker asks for no more.
- **No trial lost.** A trial records its worker (host, pid, process start) and a heartbeat in the
  storage, refreshed every :data:`HEARTBEAT_S` seconds while it runs. A running trial whose worker
  is dead — on this host seen at once, on another host after ``tune.stale_after`` seconds without a
  heartbeat — is marked failed and queued again with the same values and the same run folder (the
  dead worker's lock on it is removed), so the next worker resumes its run from ``last.ckpt``. A
  trial interrupted by Ctrl-C is queued again the same way, always; a trial whose worker keeps
  dying is retried twice, then left failed.
- **Failures are results.** A sampled config that does not validate, a diverged run, a data error,
  any other exception of the trial: the trial is failed with its message (``trials.csv``'s
  ``error``) and the study goes on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from deepscope.config.io import _deep_copy, load_config
from deepscope.config.tune import TuneConfig, TuneStage
from deepscope.errors import ConfigError, DeepscopeError, RunInUse
from deepscope.training.lock import HEARTBEAT_S, Holder, RunLock, _not_running, _remove_stale, lock_path, read_holder

__all__ = ["Stage", "StageFolder", "run_stage", "wait_until_settled"]

log = logging.getLogger("deepscope")

MAX_RETRIES = 2  # re-queues of a trial whose worker died (interrupted trials are always queued again)
ASK_LOCK_ABANDONED_S = 60.0  # the study's lock is held for milliseconds: one this old lost its process


@dataclass(frozen=True)
class StageFolder:
    """The files of one study (or one stage of a staged study)."""

    path: Path

    @property
    def trials(self) -> Path:
        return self.path / "trials"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def csv(self) -> Path:
        return self.path / "trials.csv"

    @property
    def summary(self) -> Path:
        return self.path / "study.json"

    @property
    def best_config(self) -> Path:
        return self.path / "best_config.yaml"


@dataclass
class Stage:
    """What a worker needs to run one stage: its study, space, budget and base config."""

    study: Any  # optuna.Study
    spec: TuneStage
    tune: TuneConfig
    base: dict[str, Any]  # the raw config every trial starts from (earlier stages' best keys set)
    folder: StageFolder
    root: Path  # the study folder (the stage's lock lives there)
    metric: str
    direction: str
    where: str  # 'tune.space' or 'tune.stages.<name>.space', for messages
    storage_url: str = ""  # as shown (password masked)
    deadline: float | None = None  # time.monotonic() after which this worker starts no new trial


def _states() -> Any:
    from optuna.trial import TrialState

    return TrialState


def ask_lock(root: Path, wait: float = 300.0) -> RunLock:
    """The study folder's lock, taken (waiting for other workers) around counting, asking and writing.

    It is held for milliseconds, so a lock older than :data:`ASK_LOCK_ABANDONED_S` lost its process
    (on any host) and is taken over.

    Raises:
        RunInUse: still held by another worker after ``wait`` seconds.
    """
    lock = RunLock(root / "workers", heartbeat=0)
    deadline, pause = time.monotonic() + wait, 0.01
    while True:
        try:
            lock.acquire(patience=2)
            return lock
        except RunInUse:
            _take_over_abandoned(lock.path)
            if time.monotonic() > deadline:
                raise RunInUse(f"study folder '{root}': its lock {lock.path} has been held by another worker for "
                               f"{wait:.0f} s; if no deepscope tune runs on this study, remove it") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _take_over_abandoned(path: Path) -> None:
    try:
        holder, age = read_holder(path), time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return
    if holder is not None and age > ASK_LOCK_ABANDONED_S and _remove_stale(path, holder):
        log.warning(f"taking over the study's lock {path}, held for {age:.0f} s by {holder.describe()}")


def tally(trials: list[Any]) -> dict[str, int]:
    """Trials by state, a failed trial that was queued again counted once (as its retry)."""
    S = _states()
    retried = {t.user_attrs.get("retry_of") for t in trials}
    counts = {s.name: 0 for s in (S.COMPLETE, S.PRUNED, S.FAIL, S.RUNNING, S.WAITING)}
    for t in trials:
        if t.state == S.FAIL and t.number in retried:
            continue
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    counts["finished"] = counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"]
    return counts


def _run_locks(stage: Stage, trial: Any) -> list[Path]:
    """The lock files of a trial's run folder: its own, and its phases' (a phased experiment's runs)."""
    run = stage.folder.trials / trial.user_attrs.get("run", f"trial-{trial.number:04d}")
    return [lock_path(run), *sorted(run.glob(".*.lock"))]


def _dead(trial: Any, stage: Stage) -> str | None:
    """Why a running trial's worker surely no longer runs, or ``None``."""
    worker = trial.user_attrs.get("worker")
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    if not worker:  # asked, never started (its worker died between ask and start)
        age = time.time() - started
        return f"no worker recorded {age:.0f} s after it started" if age > stage.tune.stale_after else None
    holder = Holder(**worker)
    if holder.on_this_machine():
        return _not_running(holder)
    heard = [started, float(trial.user_attrs.get("heartbeat", 0.0))]
    for path in _run_locks(stage, trial):
        try:
            heard.append(path.stat().st_mtime)
        except OSError:
            pass
    age = time.time() - max(heard)
    if age > stage.tune.stale_after:
        return f"its worker {holder.describe()} has not been heard from for {age:.0f} s"
    return None


def _release_dead_locks(stage: Stage, trial: Any) -> None:
    """Remove the run-folder locks the dead worker of ``trial`` left (another host's are never taken over
    by :class:`RunLock`), so its retry can resume the run."""
    worker = trial.user_attrs.get("worker") or {}
    for path in _run_locks(stage, trial):
        try:
            holder = read_holder(path)
        except ValueError:
            continue
        if holder is not None and (holder.host, holder.pid) == (worker.get("host"), worker.get("pid")):
            if _remove_stale(path, holder):
                log.warning(f"removed {path}, left by the dead worker {holder.describe()}")


def _requeue(stage: Stage, trial: Any, why: str, died: bool = True) -> None:
    """Queue a failed trial again: same values, same run folder (which resumes). A trial whose worker
    died is retried :data:`MAX_RETRIES` times; an interrupted one always."""
    retries = int(trial.user_attrs.get("retries", 0))
    if died and retries >= MAX_RETRIES:
        log.warning(f"trial {trial.number} failed ({why}) after {retries} retries; not queued again")
        return
    stage.study.enqueue_trial(trial.params, user_attrs={
        "retry_of": trial.number, "retries": retries + int(died),
        "run": trial.user_attrs.get("run", f"trial-{trial.number:04d}")}, skip_if_exists=False)
    log.warning(f"trial {trial.number}: {why}; queued again (its run folder resumes)")


def reap_stale(stage: Stage, trials: list[Any]) -> bool:
    """Fail and re-queue running trials whose worker is dead; whether any was."""
    from optuna.exceptions import UpdateFinishedTrialError

    S = _states()
    storage = stage.study._storage
    found = False
    for trial in trials:
        if trial.state != S.RUNNING:
            continue
        why = _dead(trial, stage)
        if why is None:
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "error", f"worker died: {why}")
            storage.set_trial_state_values(trial._trial_id, state=S.FAIL)
        except UpdateFinishedTrialError:
            continue  # finished or reaped meanwhile
        _release_dead_locks(stage, trial)
        _requeue(stage, trial, f"worker died: {why}")
        found = True
    return found


def _next_trial(stage: Stage) -> Any:
    """Under the study's lock: the next trial to run, or ``None`` once the stage's budget is spent."""
    lock = ask_lock(stage.root)
    try:
        trials = stage.study.get_trials(deepcopy=False)
        if reap_stale(stage, trials):
            trials = stage.study.get_trials(deepcopy=False)
        counts = tally(trials)
        if not counts["WAITING"] and counts["finished"] + counts["RUNNING"] >= stage.spec.n_trials:
            return None
        trial = stage.study.ask()
        trial.set_user_attr("worker", asdict(Holder.this_process(heartbeat=HEARTBEAT_S)))
        trial.set_user_attr("heartbeat", time.time())
        return trial
    finally:
        lock.release()


def wait_until_settled(stage: Stage, poll: float = 2.0) -> dict[str, int]:
    """Wait for the other workers' running trials of the stage to finish (a later stage needs its best)."""
    announced = False
    while True:
        lock = ask_lock(stage.root)
        try:
            trials = stage.study.get_trials(deepcopy=False)
            reap_stale(stage, trials)
            counts = tally(stage.study.get_trials(deepcopy=False))
        finally:
            lock.release()
        if not counts["RUNNING"] and not counts["WAITING"]:
            return counts
        if counts["WAITING"]:  # re-queued trials: this worker takes them
            return counts
        if not announced:
            log.info(f"waiting for {counts['RUNNING']} running trial(s) of other workers to finish")
            announced = True
        time.sleep(poll)


def run_stage(stage: Stage) -> None:
    """Run trials of the stage until its budget is spent (or this worker's time is up)."""
    from deepscope.tuning.outputs import write_figures_and_report

    while True:
        if stage.deadline is not None and time.monotonic() > stage.deadline:
            log.info("tune.timeout: this worker's time is up; it starts no new trial")
            break
        trial = _next_trial(stage)
        if trial is None:
            break
        try:
            with _heartbeat(stage, trial):
                _run_trial(stage, trial)
        finally:
            write_tables(stage)
    write_tables(stage)
    write_figures_and_report(stage)


def write_tables(stage: Stage) -> None:
    """``trials.csv``, ``study.json`` and ``best_config.yaml``, under the study's lock: each worker writes
    what the storage holds when it has the lock, so the last written is the newest."""
    from deepscope.tuning.outputs import write_outputs

    lock = ask_lock(stage.root)
    try:
        write_outputs(stage)
    finally:
        lock.release()


@contextmanager
def _heartbeat(stage: Stage, trial: Any) -> Iterator[None]:
    """Refresh the trial's ``heartbeat`` in the storage every :data:`HEARTBEAT_S` seconds while it runs: how
    workers on other hosts tell it from a dead one."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                stage.study._storage.set_trial_user_attr(trial._trial_id, "heartbeat", time.time())
            except Exception:  # finished (or failed by another worker) meanwhile; a storage hiccup
                return

    thread = threading.Thread(target=beat, name=f"deepscope-trial-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


# --- one trial ---------------------------------------------------------------------------------------


class _TrialFailed(Exception):
    pass


def _trial_config(stage: Stage, trial: Any) -> tuple[Any, str]:
    from deepscope.tuning.space import apply_values, sample

    values = sample(trial, stage.spec.space, stage.base)
    run_name = trial.user_attrs.get("run") or f"trial-{trial.number:04d}"
    trial.set_user_attr("run", run_name)
    raw = apply_values(stage.base, values)
    raw.update(name=run_name, tune=None)
    raw["log"] = {**raw.get("log", {}), "dir": str(stage.folder.trials)}
    return load_config(raw), run_name  # validated like any config; a ConfigError fails this trial


def _value(result: Any, metric: str, direction: str, run_dir: Path) -> float:
    """The trial's objective: the metric on the validation split with the weights the run kept (its final
    metrics), else its best logged value."""
    split, _, name = metric.partition("_")
    value = (result.metrics or {}).get(split, {}).get(name)
    if value is None:
        import pandas as pd

        try:
            column = pd.read_csv(run_dir / "metrics.csv")[metric].dropna()
        except (OSError, KeyError, ValueError):
            column = None
        if column is None or column.empty:
            raise _TrialFailed(f"the run logged no {metric}")
        value = float(column.max() if direction == "maximize" else column.min())
    if not math.isfinite(float(value)):
        raise _TrialFailed(f"{metric} is {value}")
    return float(value)


def _run_trial(stage: Stage, trial: Any) -> None:
    import optuna

    from deepscope.training.experiment import Experiment, Interrupted

    S = _states()
    try:
        cfg, run_name = _trial_config(stage, trial)
        callbacks = []
        if stage.tune.pruner != "none":
            from optuna_integration import PyTorchLightningPruningCallback

            callbacks.append(PyTorchLightningPruningCallback(trial, monitor=stage.metric))
        log.info(f"trial {trial.number}: {_describe(trial.params)}")
        result = Experiment(cfg, callbacks=callbacks).train()
        value = _value(result, stage.metric, stage.direction, stage.folder.trials / run_name)
    except optuna.TrialPruned as exc:
        if _tell(stage, trial, S.PRUNED):
            log.info(f"trial {trial.number} pruned ({exc}); {_progress(stage)}")
        return
    except (Interrupted, KeyboardInterrupt) as exc:
        if _tell(stage, trial, S.FAIL, error="interrupted"):
            _requeue(stage, _frozen(stage, trial), "interrupted", died=False)
        raise exc if isinstance(exc, Interrupted) else Interrupted("interrupted; the study resumes when "
                                                                   "deepscope tune runs again") from None
    except Exception as exc:  # every failure of a trial is a result: the study goes on
        message = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, (DeepscopeError, _TrialFailed)):
            message = f"{type(exc).__name__}: {message}"
            log.debug("trial %d failed", trial.number, exc_info=True)
        if _tell(stage, trial, S.FAIL, error=message):
            log.warning(f"trial {trial.number} failed: {message}; {_progress(stage)}")
        return
    if _tell(stage, trial, S.COMPLETE, value=value):
        log.info(f"trial {trial.number}: {stage.metric} {value:.5g}; {_progress(stage)}")


def _tell(stage: Stage, trial: Any, state: Any, value: float | None = None, error: str | None = None) -> bool:
    """Record how the trial ended; ``False`` when another worker had already failed it (it took this
    worker for dead: a heartbeat that came too late), whose retry then runs the trial again."""
    from optuna.exceptions import UpdateFinishedTrialError

    try:
        if error is not None:
            trial.set_user_attr("error", error)
        stage.study.tell(trial, value if state.name == "COMPLETE" else None, state=state)
        return True
    except (UpdateFinishedTrialError, ValueError, RuntimeError) as exc:
        log.warning(f"trial {trial.number} ended ({state.name.lower()}) after another worker had marked it failed "
                    f"({exc}); its run folder keeps what it trained. Raise tune.stale_after if workers are "
                    "slow to be heard from")
        return False


def _frozen(stage: Stage, trial: Any) -> Any:
    """The stored (frozen) copy of a trial, as the storage has it now."""
    for t in stage.study.get_trials(deepcopy=False):
        if t.number == trial.number:
            return t
    raise KeyError(trial.number)


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _progress(stage: Stage) -> str:
    counts = tally(stage.study.get_trials(deepcopy=False))
    text = f"{counts['finished']}/{stage.spec.n_trials} finished"
    try:
        best = stage.study.best_trial
    except ValueError:
        return text
    return text + f", best {stage.metric} {best.value:.5g} (trial {best.number})"


def base_config(cfg: Any) -> dict[str, Any]:
    """The raw config the trials start from: the resolved config without its tune section."""
    from deepscope.config.io import to_dict

    raw = _deep_copy(to_dict(cfg))
    raw.pop("tune", None)
    return raw


def check_workers(cfg: Any) -> None:
    """Trials run in this process: several processes per trial (DDP) need a launcher per trial."""
    from deepscope.training.processes import process_count

    if process_count(cfg.train) > 1:
        raise ConfigError("tune: each trial trains in the worker's own process; train.devices / num_nodes ask for "
                          "several processes. Start several deepscope tune workers instead (docs/tune.md)")
