"""One writer per run folder: a lock file beside it, ``<log.dir>/.<name>.lock``.

Where
    Beside the folder, not in it: a new run has no folder yet, and a folder holding only a lock
    would be an "empty folder that is not a run" to :func:`~deepscope.training.run.open_run` and to
    the other processes of a ``srun`` job (which must see no folder or a whole one). With
    ``--new-version`` each candidate ``<name>-N`` has its own lock, so two such starts at once take
    different folders.

How it is created (and why not ``fcntl``/``flock``)
    Run folders often live on NFS, where ``fcntl``/``flock`` locks depend on a lock daemon, are
    silently node-local on some mounts and vanish with the client that held them. Here the lock is
    the *existence* of the file. The holder's details are written to a private temporary file that
    is then hard-linked to the lock's name: ``link()`` fails when the name exists, atomically on local
    filesystems and on every NFS version, and the lock appears with its whole content (``O_CREAT |
    O_EXCL`` and then ``write`` would let a reader see it empty). When NFS loses the reply of a
    ``link()`` that succeeded, the temporary file's link count (2) still tells: the method of
    ``open(2)``. On a filesystem without hard links it falls back to ``O_CREAT | O_EXCL`` (atomic
    on NFSv3 and later); a reader that finds that file still empty waits a moment.

Stale locks
    A lock whose holder ran on this host and no longer runs is taken over with a warning: its pid is
    gone, a zombie, or now another process (its start time, ``/proc/<pid>/stat`` field 22, differs from
    the one recorded). Removing it is done by one process at a time, under a guard file, after
    checking it is still the same lock, so a lock just taken by another process is never removed. A
    lock from another host is never taken over (its processes cannot be seen); the refusal says when
    it was last refreshed: the holder touches the file every :data:`HEARTBEAT_S` seconds from a
    daemon thread.

Who takes it
    :func:`~deepscope.training.run.claim_run`, for ``deepscope train``: the process that will be
    global rank 0, from before the resume decision to its last write. ``deepscope evaluate`` does
    not: it writes one file of its own (``evaluation/<split>_metrics.json``) atomically, which
    training never writes, so evaluating a run that is still training is safe.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from deepscope.errors import RunInUse

__all__ = ["HEARTBEAT_S", "Holder", "RunLock", "lock_path", "read_holder"]

log = logging.getLogger("deepscope")

HEARTBEAT_S = 30.0
_GUARD_ABANDONED_S = 30.0  # removing a stale lock takes milliseconds; a guard this old lost its process
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


@dataclass(frozen=True)
class Holder:
    """Who holds a lock; stored in the lock file as JSON.

    Attributes:
        pid: the holding process.
        host: its host name.
        since: when it took the lock (seconds since the epoch).
        process_start: its start time in clock ticks after boot (``/proc/<pid>/stat`` field 22),
            which tells a reused pid; ``None`` where there is no ``/proc``.
        command: its command line, shortened.
        heartbeat: seconds between its refreshes of the lock's time stamp (0: none).
        token: unique to this taking of the lock.
        pid_namespace: its PID namespace on Linux (``/proc/self/ns/pid``): a container with the host's
            name but its own process ids cannot see the holder's pid, like another host.
    """

    pid: int
    host: str
    since: float
    process_start: int | None
    command: str
    heartbeat: float
    token: str
    pid_namespace: str | None = None

    @classmethod
    def this_process(cls, heartbeat: float = HEARTBEAT_S) -> Holder:
        """This process, taking a lock now."""
        pid = os.getpid()
        stat = _proc_stat(pid)
        return cls(pid, socket.gethostname(), time.time(), stat[1] if stat else None, _command(), heartbeat,
                   uuid.uuid4().hex, _pid_namespace())

    def on_this_machine(self) -> bool:
        """Whether its process can be seen from here: the same host and PID namespace."""
        return self.host == socket.gethostname() and self.pid_namespace == _pid_namespace()

    def describe(self) -> str:
        """``pid 12 on host n1, since 2025-01-31 14:02:11 (python -m deepscope train cfg.yaml)``."""
        since = datetime.fromtimestamp(self.since).strftime("%Y-%m-%d %H:%M:%S")
        return f"pid {self.pid} on host {self.host}, since {since}" + (f" ({self.command})" if self.command else "")


def lock_path(folder: str | Path) -> Path:
    """The lock file of a run folder: ``.<name>.lock`` beside it (absolute)."""
    folder = Path(os.path.abspath(folder))
    return folder.parent / f".{folder.name}.lock"


def read_holder(path: str | Path) -> Holder | None:
    """The holder a lock file names; ``None`` when there is no such file.

    Raises:
        ValueError: the file is not a lock (empty, being written by the ``O_EXCL`` fallback, or corrupt).
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        holder = Holder(**json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a lock file ({type(exc).__name__}: {exc})") from None
    if not isinstance(holder.pid, int) or holder.pid <= 0:  # os.kill(0 or -1, 0) would reach other processes
        raise ValueError(f"not a lock file (pid {holder.pid!r})")
    return holder


class RunLock:
    """The lock of one run folder, held by the process that writes it.

    Args:
        folder: the run folder (it need not exist yet); the lock is :func:`lock_path` of it.
        heartbeat: seconds between refreshes of the lock's time stamp; 0 for none.

    Example:
        >>> with RunLock("runs/digits"):
        ...     pass  # decide whether to resume, train, write
    """

    def __init__(self, folder: str | Path, heartbeat: float = HEARTBEAT_S) -> None:
        self.folder = Path(folder)
        self.path = lock_path(folder)
        self.heartbeat = heartbeat
        self.holder: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, patience: float = 10.0) -> None:
        """Take the lock, taking over one left by a process of this host that no longer runs.

        Args:
            patience: seconds to keep trying while the lock changes hands (stale locks being removed).

        Raises:
            RunInUse: another process holds it; the message names it and how to proceed.
        """
        if self.holder is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        me = Holder.this_process(self.heartbeat)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if _create(self.path, me):
                self.holder = me
                self._start_heartbeat()
                return
            holder = self._settled_holder()
            if holder is None:
                continue  # released meanwhile
            reason = _not_running(holder)
            if reason is None:
                raise RunInUse(self._refusal(holder))
            if _remove_stale(self.path, holder):
                log.warning(f"run folder '{self.folder}': taking over the lock left by {holder.describe()}: "
                            f"{reason}")
        raise RunInUse(f"run folder '{self.folder}': its lock {self.path} kept changing hands for {patience:.0f} s; "
                       "another process is starting this run too. Try again")

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if this process still holds it; safe to call twice."""
        if self.holder is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._still_ours():
            self.path.unlink(missing_ok=True)
        self.holder = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _settled_holder(self) -> Holder | None:
        """The lock's holder, waiting a moment for a file still being written; ``None`` when it is gone."""
        for _ in range(20):
            try:
                return read_holder(self.path)
            except ValueError as exc:
                problem = exc
            time.sleep(0.05)
        raise RunInUse(f"run folder '{self.folder}': its lock {self.path} is unreadable ({problem}); if no other "
                       f"process trains this run, remove {self.path}")

    def _refusal(self, holder: Holder) -> str:
        here = holder.on_this_machine()
        message = f"run folder '{self.folder}' is being written by another deepscope process: {holder.describe()}"
        age = _age(self.path)
        if age is not None:
            message += f"; its lock was last refreshed {_duration(age)} ago"
            if holder.heartbeat and age > 3 * holder.heartbeat:
                message += f" (it refreshes every {holder.heartbeat:.0f} s, so it has probably died)"
        if here:
            return (message + f". Wait for it to finish or stop it (kill {holder.pid}); its lock {self.path} is "
                    "taken over once that process has stopped")
        return (message + f". Wait for it to finish or stop it (kill {holder.pid} on {holder.host}); a lock from "
                f"another host is never taken over: if you are sure that process is dead, remove {self.path}")

    def _still_ours(self) -> bool:
        try:
            current = read_holder(self.path)
        except (OSError, ValueError):
            return False
        return current is not None and self.holder is not None and current.token == self.holder.token

    def _start_heartbeat(self) -> None:
        self._stop = threading.Event()
        if self.heartbeat > 0:
            self._thread = threading.Thread(target=self._beat, name=f"deepscope-lock-{self.folder.name}", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            if not self._still_ours():
                log.warning(f"run folder '{self.folder}': its lock {self.path} was removed or taken by another "
                            "process; this process no longer writes it alone")
                return
            try:
                os.utime(self.path)
            except OSError:
                pass  # a network filesystem's hiccup; the next beat tries again


def _create(path: Path, holder: Holder) -> bool:
    """Create the lock ``path`` naming ``holder``, whole and atomically; ``False`` when it exists."""
    data = json.dumps(asdict(holder)).encode()
    tmp = path.with_name(f"{path.name}.{holder.token}.tmp")
    _write_new(tmp, data)
    try:
        try:
            os.link(tmp, path)
            return True
        except OSError as exc:
            if os.stat(tmp).st_nlink == 2:  # NFS: the link was made but its reply was lost
                return True
            if exc.errno not in _NO_HARD_LINKS:
                if exc.errno == errno.EEXIST:
                    return False
                raise
        try:
            _write_new(path, data)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (``O_EXCL``: it must not exist) holding ``data``, flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _remove_stale(path: Path, stale: Holder) -> bool:
    """Remove the lock ``path`` if it still is ``stale``'s; ``True`` when this call removed it.

    One process at a time removes (it holds the guard file), and it checks the lock's token first:
    another process that judged the same lock stale cannot remove the lock taken in its place.
    """
    guard = path.with_name(path.name + ".takeover")
    try:
        _write_new(guard, b"")
    except FileExistsError:
        age = _age(guard)
        if age is not None and age > _GUARD_ABANDONED_S:
            guard.unlink(missing_ok=True)
        time.sleep(0.05)  # another process is removing it
        return False
    try:
        try:
            current = read_holder(path)
        except ValueError:
            return False
        if current is None or current.token != stale.token:
            return False
        path.unlink()
        return True
    finally:
        guard.unlink(missing_ok=True)


def _not_running(holder: Holder) -> str | None:
    """Why ``holder`` surely no longer runs, or ``None`` when it may (always for another host's)."""
    if not holder.on_this_machine() or sys.platform == "win32":
        return None  # another host's processes cannot be seen; Windows' os.kill(pid, 0) would kill it
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return f"process {holder.pid} no longer runs"
    except OSError:
        pass  # PermissionError: it runs, as another user
    stat = _proc_stat(holder.pid)
    if stat is None:
        return None
    state, start = stat
    if state == "Z":
        return f"process {holder.pid} has exited"
    if holder.process_start is not None and start != holder.process_start:
        return f"pid {holder.pid} now belongs to another process (it started after the lock was taken)"
    return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of a process, from Linux's ``/proc``; else ``None``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name (field 2) may hold spaces and parentheses
    return fields[0], int(fields[19])  # fields 3 and 22


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _command() -> str:
    args = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    args[0] = Path(args[0]).name
    text = shlex.join(args)
    return text if len(text) <= 200 else text[:197] + "..."


def _age(path: Path) -> float | None:
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
