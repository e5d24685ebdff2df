"""One writer per run directory: ``<run_dir>/.lock``, created complete or not at all (a hard link to a written
temporary file) and holding the holder's pid, host and start time.

``train()`` and ``infer()`` hold it for their whole duration (a DDP job: the launching process holds it for all
the processes it spawns) and release it in ``finally``, so also on exceptions. A second process that wants the
directory fails at once naming the holder; so does another thread or another runner object of the same process
(an in-process registry: the file alone cannot tell them apart). A lock whose holder is gone (same host, pid no
longer running: the process was killed) is stale and taken over; a lock held on another host cannot be checked
and is never taken over (delete the file by hand if that host is gone). A ``.lock`` that is a directory or a
symlink is refused with a clear error, never followed or deleted.

Example:
    >>> import tempfile
    >>> run_dir = tempfile.mkdtemp()
    >>> with run_lock(run_dir, "train"):
    ...     holder = read_holder(RunDir(run_dir).lock)
    ...     holder["pid"] == os.getpid(), holder["purpose"]
    (True, 'train')
    >>> os.path.exists(RunDir(run_dir).lock)
    False
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import tempfile
import threading
import time
from typing import Dict, Optional, Tuple

from ..errors import RunnerError
from ..safe_read import read_json
from .layout import LOCK_NAME, RunDir

MAX_PID = 2 ** 31  # pids are C ints (Linux caps them at 2**22)
_UNREADABLE_GRACE_S = 10.0  # where hard links are missing, a lock file being written is empty for a moment
# Locks this process holds, by lock path: {"owner": (thread, runner id), "depth", "purpose", "started"}. A file
# lock alone cannot tell two threads or two runner objects of one process apart (same pid); this registry does.
# Nested use by the same owner (infer() inside train()) is fine.
_held: Dict[str, dict] = {}
_registry = threading.RLock()


def read_holder(path: str) -> Optional[dict]:
    """The holder recorded in a lock file; ``None`` when it cannot be read as one."""
    try:
        holder = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or type(holder.get("pid")) is not int or not isinstance(holder.get("host"), str):
        return None
    if not 0 < holder["pid"] < MAX_PID:  # e.g. 2**70: os.kill would raise OverflowError; no process has it
        return None
    return holder


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def is_stale(path: str, holder: Optional[dict]) -> bool:
    """Whether the lock file at ``path`` (its parsed ``holder``) was left by a process that is gone."""
    if holder is None:  # garbage, or the creator is between O_EXCL and its write
        try:
            return time.time() - os.path.getmtime(path) > _UNREADABLE_GRACE_S
        except OSError:
            return True
    return holder["host"] == socket.gethostname() and not _pid_alive(holder["pid"])


@contextlib.contextmanager
def _takeover_guard(path: str):
    """Serialises stale-lock takeovers: without it, a process could delete the fresh lock another process just
    created after deleting the same stale one."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no guard (the takeover race needs two stale-lock finders at once)
        yield
        return
    fd = os.open(path + ".takeover", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _owner_key(owner) -> Tuple[int, Optional[int]]:
    """Who holds a lock inside this process: the thread, and the runner object when one is given."""
    return threading.get_ident(), None if owner is None else id(owner)


def _refuse_not_a_file(path: str, run_dir: str) -> None:
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        kind = "a symlink" if os.path.islink(path) else "a directory" if os.path.isdir(path) else "not a file"
        raise RunnerError(f"the run lock {path} is {kind}, not a lock file this library wrote: the run directory "
                          f"{run_dir} cannot be locked; remove {path} (nothing else uses that name)")


def _create(path: str, record: str, run_dir: str) -> bool:
    """Create the lock file holding ``record`` complete or not at all; False when it exists already.

    The record goes to a temporary file that is hard-linked to the lock's name (atomic, and refused when the name
    exists), so no reader ever sees an empty or half-written lock, and a write that fails (disk full) leaves
    none behind. Where hard links are not supported, ``O_EXCL`` and a write (its file removed on failure)."""
    directory = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{LOCK_NAME}.", suffix=".tmp")
    except OSError as e:
        raise _write_error(path, run_dir, e) from None
    try:
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(record)
        except OSError as e:
            raise _write_error(path, run_dir, e) from None
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system
            pass
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(record)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise _write_error(path, run_dir, e) from None
    return True


def _write_error(path: str, run_dir: str, error: OSError) -> RunnerError:
    return RunnerError(f"cannot write the run lock {path} ({error.strerror or error}): the run directory {run_dir} "
                       f"was not used and no lock was left behind; free space (or fix the permissions) and run "
                       f"again")


def acquire(run_dir: str, purpose: str, owner=None) -> str:
    """Take the run directory's lock for ``owner`` (a runner; ``None``: the calling thread) and return its path.
    The same owner in the same thread may take it again (nested use); any other owner fails naming the holder,
    be it another process or another thread or runner object of this process."""
    os.makedirs(run_dir, exist_ok=True)
    path = RunDir(os.path.realpath(run_dir)).lock
    key = _owner_key(owner)
    with _registry:
        held = _held.get(path)
        if held is not None:
            if held["owner"] == key:
                held["depth"] += 1
                return path
            raise RunnerError(f"run directory {run_dir} is in use by another runner or thread of this process "
                              f"(pid {os.getpid()}, {held['purpose']}, since {held['started']}): wait for it to "
                              f"finish, or use another runner_name")
        _refuse_not_a_file(path, run_dir)
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
                             "started": started})
        for _ in range(3):
            if _create(path, record, run_dir):
                _held[path] = {"owner": key, "depth": 1, "purpose": purpose, "started": started}
                return path
            with _takeover_guard(path):
                _refuse_not_a_file(path, run_dir)
                holder = read_holder(path)
                if os.path.exists(path) and not is_stale(path, holder):
                    who = (f"pid {holder['pid']} on host {holder['host']} ({holder.get('purpose')}, since "
                           f"{holder.get('started')})" if holder else "a process that is still writing the lock")
                    raise RunnerError(f"run directory {run_dir} is in use by {who}: wait for it to finish, or use "
                                      f"another runner_name. If that process is gone (another host), delete "
                                      f"{path}") from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # stale: its holder was killed
    raise RunnerError(f"could not take the lock {path}: other processes keep taking it")


def release(path: str) -> None:
    with _registry:
        held = _held.get(path)
        if held is not None and held["depth"] > 1:
            held["depth"] -= 1
            return
        _held.pop(path, None)
        holder = read_holder(path)
        if holder is not None and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


@contextlib.contextmanager
def run_lock(run_dir: str, purpose: str, enabled: bool = True, owner=None):
    """Hold the run directory's lock for the ``with`` block for ``owner`` (see :func:`acquire`; a no-op when not
    ``enabled``)."""
    if not enabled:
        yield
        return
    path = acquire(run_dir, purpose, owner)
    try:
        yield
    finally:
        release(path)
