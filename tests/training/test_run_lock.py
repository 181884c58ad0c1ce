"""One writer per run folder: the lock file, its stale-lock takeover, and two real ``deepscope train`` at once."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import yaml

from deepscope.cli import main
from deepscope.config import load_config
from deepscope.errors import ConfigError, RunInUse
from deepscope.training import lock as lock_module
from deepscope.training.distributed import RUN_ENV, starts_as_rank_zero
from deepscope.training.lock import Holder, RunLock, lock_path, read_holder
from deepscope.training.run import claim_run
from tests.conftest import small_config

HOST = socket.gethostname()
LAUNCH_ENV = (RUN_ENV, "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "RANK",
              "SLURM_PROCID", "JSM_NAMESPACE_RANK")


@pytest.fixture
def warnings():
    """Warnings of the ``deepscope`` logger (the CLI turns its propagation off, so caplog may miss them)."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("deepscope")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.fixture
def clean_env(monkeypatch):
    for key in LAUNCH_ENV:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _write_lock(folder: Path, **changes) -> Path:
    """A lock file for ``folder`` as another process would have left it."""
    holder = replace(Holder.this_process(), **changes)
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(holder)))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- the lock ------------------------------------------------------------------------------------


def test_acquire_writes_the_holder_and_release_removes_it(tmp_path):
    folder = tmp_path / "runs" / "a"
    with RunLock(folder, heartbeat=0) as lock:
        assert lock.path == tmp_path / "runs" / ".a.lock" and not folder.exists()
        holder = read_holder(lock.path)
        assert (holder.pid, holder.host, holder.token) == (os.getpid(), HOST, lock.holder.token)
        assert "pytest" in holder.command or "python" in holder.command
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == []  # no lock, no temporary file left
    lock.release()  # twice is fine


def test_release_on_an_exception(tmp_path):
    folder = tmp_path / "b"
    with pytest.raises(KeyError), RunLock(folder, heartbeat=0):
        raise KeyError("boom")
    assert not lock_path(folder).exists()
    with RunLock(folder, heartbeat=0):  # and it can be taken again
        pass


def test_a_live_holder_on_this_host_refuses_with_its_details(tmp_path):
    folder = tmp_path / "c"
    with RunLock(folder, heartbeat=0) as first:
        before = first.path.read_bytes()
        with pytest.raises(RunInUse) as info:
            RunLock(folder).acquire()
        assert first.path.read_bytes() == before
    message = str(info.value)
    assert "\n" not in message
    for part in (f"'{folder}' is being written", f"pid {os.getpid()} on host {HOST}", "since 20",
                 f"kill {os.getpid()})", str(first.path), "refreshed 0 s ago"):
        assert part in message, part


def test_a_lock_from_another_host_is_never_taken_over(tmp_path, warnings):
    folder = tmp_path / "d"
    path = _write_lock(folder, host="node-elsewhere", pid=_dead_pid(), heartbeat=30.0)
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))
    before = path.read_bytes()
    with pytest.raises(RunInUse) as info:
        RunLock(folder).acquire()
    message = str(info.value)
    for part in ("on host node-elsewhere", "kill", "on node-elsewhere", "never taken over", f"remove {path}",
                 "refreshed 60 min ago", "probably died"):
        assert part in message, part
    assert path.read_bytes() == before and path.stat().st_mtime == pytest.approx(hour_ago)
    assert warnings == []


def test_a_lock_from_another_pid_namespace_is_never_taken_over(tmp_path, warnings):
    # a container with the host's name but its own process ids: its pid means nothing here
    path = _write_lock(tmp_path / "d2", pid=_dead_pid(), pid_namespace="pid:[1]")
    with pytest.raises(RunInUse, match="never taken over"):
        RunLock(tmp_path / "d2").acquire()
    assert path.exists() and warnings == []


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_warning(tmp_path, warnings):
    folder = tmp_path / "e"
    pid = _dead_pid()
    _write_lock(folder, pid=pid)
    with RunLock(folder, heartbeat=0) as lock:
        assert read_holder(lock.path).pid == os.getpid()
    assert len(warnings) == 1 and f"taking over the lock left by pid {pid} on host {HOST}" in warnings[0]
    assert "no longer runs" in warnings[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_reused_pid_is_a_stale_lock(tmp_path, warnings):
    folder = tmp_path / "f"
    me = Holder.this_process()
    _write_lock(folder, process_start=me.process_start - 1)  # this pid, but another start: another process
    with RunLock(folder, heartbeat=0):
        pass
    assert len(warnings) == 1 and "now belongs to another process" in warnings[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_zombie_holder_is_a_stale_lock(tmp_path, warnings):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        _write_lock(tmp_path / "g", pid=proc.pid, process_start=None)
        with RunLock(tmp_path / "g", heartbeat=0):
            pass
        assert "has exited" in warnings[0]
    finally:
        proc.wait()


def test_a_stale_lock_replaced_meanwhile_is_not_removed(tmp_path):
    # two processes judged the same lock stale; the first removed it and took the lock: the second must not
    # remove the first's
    stale = replace(Holder.this_process(), pid=_dead_pid())
    with RunLock(tmp_path / "n", heartbeat=0) as lock:
        assert not lock_module._remove_stale(lock.path, stale)
        assert read_holder(lock.path).token == lock.holder.token


def test_stale_locks_are_removed_one_process_at_a_time(tmp_path, warnings):
    folder = tmp_path / "o"
    path = _write_lock(folder, pid=_dead_pid())
    guard = path.with_name(path.name + ".takeover")
    guard.touch()  # another process is removing it
    with pytest.raises(RunInUse, match="kept changing hands"):
        RunLock(folder).acquire(patience=0.3)
    assert path.exists() and warnings == []
    os.utime(guard, (time.time() - 600, time.time() - 600))  # ... or died doing so
    with RunLock(folder, heartbeat=0):
        pass
    assert len(warnings) == 1 and not guard.exists()


def test_an_unreadable_lock_is_left_alone(tmp_path):
    path = lock_path(tmp_path / "h")
    path.write_text("{not json")
    with pytest.raises(RunInUse, match="is unreadable .*remove"):
        RunLock(tmp_path / "h").acquire()
    assert path.read_text() == "{not json"


def test_without_hard_links_it_creates_the_lock_exclusively(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(lock_module.os, "link", no_links)
    with RunLock(tmp_path / "i", heartbeat=0) as lock:
        assert read_holder(lock.path).token == lock.holder.token
        with pytest.raises(RunInUse):
            RunLock(tmp_path / "i").acquire()
    assert list(tmp_path.iterdir()) == []


def test_the_heartbeat_refreshes_the_lock_and_stops_when_it_is_taken(tmp_path, warnings):
    with RunLock(tmp_path / "j", heartbeat=0.05) as lock:
        os.utime(lock.path, (0, 0))
        deadline = time.monotonic() + 10
        while lock.path.stat().st_mtime < time.time() - 60:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.02)
        other = json.dumps({**json.loads(lock.path.read_text()), "token": "someone-else"})
        lock.path.write_text(other)  # removed by hand and taken by another process
        while not warnings:
            assert time.monotonic() < deadline, "the heartbeat did not notice"
            time.sleep(0.02)
    assert "no longer writes it alone" in warnings[0]
    assert lock.path.read_text() == other  # release leaves the other process's lock


def test_many_threads_one_winner(tmp_path):
    folder, n = tmp_path / "k", 16
    start, done = threading.Barrier(n), threading.Barrier(n)
    winners, refused = [], []

    def contend():
        lock = RunLock(folder, heartbeat=0)
        start.wait()
        try:
            lock.acquire()
            winners.append(lock)
        except RunInUse:
            refused.append(1)
        done.wait()  # the winner holds it until everyone has tried
        lock.release()

    threads = [threading.Thread(target=contend) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1 and len(refused) == n - 1
    assert list(tmp_path.iterdir()) == []


CONTENDER = textwrap.dedent("""
    import pathlib, sys, time
    from deepscope.errors import RunInUse
    from deepscope.training.lock import RunLock

    folder, gate, me = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    (gate / f"ready-{me}").touch()
    while not (gate / "go").exists():
        time.sleep(0.001)
    try:
        with RunLock(folder, heartbeat=0):
            print("won", flush=True)
            while not (gate / "done").exists():  # hold it until every other process has tried
                time.sleep(0.01)
    except RunInUse:
        print("refused")
""")


@pytest.mark.parametrize("stale", [False, True])
def test_many_processes_one_winner(tmp_path, stale):
    folder, gate, n = tmp_path / "runs" / "m", tmp_path / "gate", 6
    gate.mkdir()
    if stale:
        _write_lock(folder, pid=_dead_pid())
    script = tmp_path / "contend.py"
    script.write_text(CONTENDER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, str(script), str(folder), str(gate), str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    try:
        deadline = time.monotonic() + 60
        while len(list(gate.glob("ready-*"))) < n:
            assert time.monotonic() < deadline, "the processes did not start"
            time.sleep(0.02)
        (gate / "go").touch()
        while sum(p.poll() is not None for p in procs) < n - 1 and time.monotonic() < deadline + 30:
            time.sleep(0.02)  # the losers end at once; the winner holds the lock until "done"
        ended = sum(p.poll() is not None for p in procs)
    finally:
        (gate / "done").touch()
    outputs = [p.communicate(timeout=30) for p in procs]
    results = sorted(out.strip() for out, _ in outputs)
    assert results == ["refused"] * (n - 1) + ["won"], [err for _, err in outputs]
    assert ended == n - 1
    assert sum("taking over" in err for _, err in outputs) == int(stale)
    assert sorted(p.name for p in folder.parent.iterdir()) == []


# --- which process locks, and where --------------------------------------------------------------


@pytest.mark.parametrize("devices, env, expected", [
    (1, {"SLURM_PROCID": "3"}, True),  # one process asked for: it writes, whatever the launcher says
    (2, {}, True),
    (2, {"LOCAL_RANK": "1"}, False),  # started by Lightning's ddp launcher
    (2, {"SLURM_PROCID": "0"}, True),
    (2, {"SLURM_PROCID": "1"}, False),
    (2, {"RANK": "0", "SLURM_PROCID": "5"}, True),  # torchrun inside a SLURM job: RANK first
    (2, {"NODE_RANK": "1"}, False),  # the first process of a second node started by hand
])
def test_starts_as_rank_zero(clean_env, devices, env, expected):
    for key, value in env.items():
        clean_env.setenv(key, value)
    assert starts_as_rank_zero(load_config(small_config("runs", train={"devices": devices})).train) is expected


def _cfg(runs_dir, **train):
    return load_config(small_config(runs_dir, name="t", train={"accelerator": "cpu", **train}))


def test_claim_locks_before_the_folder_exists_and_releases_on_errors(runs_dir, clean_env):
    lock = runs_dir / ".t.lock"
    with claim_run(_cfg(runs_dir)) as (run, resume):
        assert run.path == runs_dir / "t" and not resume
        assert lock.exists() and not run.path.exists()  # nothing made in the folder's place
        with pytest.raises(RunInUse):
            with claim_run(_cfg(runs_dir)):
                pass
    assert not lock.exists()
    with pytest.raises(ValueError), claim_run(_cfg(runs_dir)):
        raise ValueError
    assert not lock.exists()


def test_claim_where_no_lock_can_be_written_is_a_config_error(tmp_path, clean_env):
    (tmp_path / "runs").write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=r"log.dir '.*runs': cannot write the run's lock file there"):
        with claim_run(_cfg(tmp_path / "runs")):
            pass


def test_claim_new_version_skips_a_version_being_made(runs_dir, clean_env):
    with RunLock(runs_dir / "t", heartbeat=0):  # another --new-version start is making runs/t
        with claim_run(_cfg(runs_dir), new_version=True) as (run, _):
            assert run.path == runs_dir / "t-2" and (runs_dir / ".t-2.lock").exists()
            with claim_run(_cfg(runs_dir), new_version=True) as (third, _):
                assert third.path == runs_dir / "t-3"


def test_other_ranks_do_not_lock(runs_dir, clean_env):
    clean_env.setenv("SLURM_PROCID", "1")
    with RunLock(runs_dir / "t", heartbeat=0):  # rank 0 holds it
        with claim_run(_cfg(runs_dir, devices=2)) as (run, _):
            assert run.path == runs_dir / "t"
        clean_env.setenv(RUN_ENV, json.dumps({"path": str(runs_dir / "t"), "resume": False}))
        clean_env.setenv("LOCAL_RANK", "1")
        with claim_run(_cfg(runs_dir, devices=2)) as (run, _):
            assert run.path == runs_dir / "t"
        clean_env.delenv(RUN_ENV)
        clean_env.delenv("LOCAL_RANK")
        clean_env.setenv("SLURM_PROCID", "0")
        with pytest.raises(RunInUse):  # rank 0 of a second job
            with claim_run(_cfg(runs_dir, devices=2)):
                pass


# --- two real `deepscope train` ------------------------------------------------------------------


def _config(tmp_path: Path, epochs: int) -> Path:
    cfg = {
        "name": "twice", "log": {"dir": "runs", "progress_bar": "none", "tensorboard": False, "figures": False},
        "data": {"source": "sklearn_digits", "n_samples": 300},
        "model": {"cnn": {"n_init_filters": 4, "activation": "relu"}, "top": {"units": [16, 10], "activation": "relu"}},
        "train": {"epochs": epochs, "batch_size": 32, "loss": "cross_entropy", "optimizer": "adam",
                  "accelerator": "cpu", "early_stopping": {"use": False}},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "deepscope", "train", "cfg.yaml", *args]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder``: its modification time and content hash."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_second_train_of_the_same_run_is_refused_and_touches_nothing(tmp_path, monkeypatch, capsys):
    _config(tmp_path, epochs=3)
    runs = tmp_path / "runs"
    first = subprocess.Popen(_command(), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 120
        while not (runs / "twice" / "checkpoints" / "last.ckpt").exists():  # an epoch is done: a run to lose
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.poll() else ""
            time.sleep(0.02)
        assert (runs / ".twice.lock").exists()
        first.send_signal(signal.SIGSTOP)  # alive but writing nothing while the second one tries
        before = _snapshot(runs)
        started = time.monotonic()
        second = subprocess.run(_command(), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
        assert _snapshot(runs) == before  # the run folder, and the lock beside it
        first.send_signal(signal.SIGCONT)
        assert second.returncode == 2, second.stderr
        err = " ".join(second.stderr.split())
        assert f"pid {first.pid} on host {HOST}" in err and "is being written by another deepscope process" in err
        assert "Traceback" not in err and "epoch" not in err
        assert took < 60
        out, err = first.communicate(timeout=240)
        assert first.returncode == 0, err[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            first.send_signal(signal.SIGCONT)
            first.kill()
    assert sorted(p.name for p in runs.iterdir()) == ["twice"]  # the lock is gone
    monkeypatch.chdir(tmp_path)  # the same command a third time (in this process: one start less)
    assert main(["train", "cfg.yaml"]) == 0
    assert "nothing to train" in capsys.readouterr().err


@pytest.mark.slow
def test_two_new_version_starts_at_once_get_two_folders(tmp_path):
    _config(tmp_path, epochs=1)
    procs = [subprocess.Popen(_command("--new-version"), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["twice", "twice-2"]
    for name in ("twice", "twice-2"):
        assert yaml.safe_load((runs / name / "config.yaml").read_text())["name"] == name
        assert (runs / name / "final_metrics.json").is_file()
