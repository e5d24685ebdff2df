"""One writer per run directory: ``<run_dir>/.lock``, created with ``O_EXCL`` and holding the holder's pid, host
and start time.

``train()`` and ``infer()`` hold it for their whole duration (a DDP job: the launching process holds it for all
the processes it spawns) and release it in ``finally``, so also on exceptions. A second process that wants the
directory fails at once naming the holder. A lock whose holder is gone (same host, pid no longer running: the
process was killed) is stale and taken over; a lock held on another host cannot be checked and is never taken
over (delete the file by hand if that host is gone).

Example:
    >>> import tempfile
    >>> run_dir = tempfile.mkdtemp()
    >>> with run_lock(run_dir, "train"):
    ...     holder = read_holder(os.path.join(run_dir, LOCK_NAME))
    ...     holder["pid"] == os.getpid(), holder["purpose"]
    (True, 'train')
    >>> os.path.exists(os.path.join(run_dir, LOCK_NAME))
    False
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import time
from typing import Dict, Optional

from .errors import RunnerError
from ..safe_read import read_json

LOCK_NAME = ".lock"
_UNREADABLE_GRACE_S = 10.0  # a lock file still being written by its creator is empty for a moment
_held: Dict[str, int] = {}  # lock path -> nesting depth in this process (infer() inside train() is fine)


def read_holder(path: str) -> Optional[dict]:
    """The holder recorded in a lock file; ``None`` when it cannot be read as one."""
    try:
        holder = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int) \
            or not isinstance(holder.get("host"), str):
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


def acquire(run_dir: str, purpose: str) -> str:
    path = os.path.join(run_dir, LOCK_NAME)
    if path in _held:
        _held[path] += 1
        return path
    os.makedirs(run_dir, exist_ok=True)
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
                         "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            with _takeover_guard(path):
                holder = read_holder(path)
                if os.path.exists(path) and not is_stale(path, holder):
                    who = (f"pid {holder['pid']} on host {holder['host']} ({holder.get('purpose')}, since "
                           f"{holder.get('started')})" if holder else "a process that is still writing the lock")
                    raise RunnerError(f"run directory {run_dir} is in use by {who}: wait for it to finish, or use "
                                      f"another runner_name. If that process is gone (another host), delete "
                                      f"{path}") from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # stale: its holder was killed
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(record)
        _held[path] = 1
        return path
    raise RunnerError(f"could not take the lock {path}: other processes keep taking it")


def release(path: str) -> None:
    depth = _held.get(path, 0) - 1
    if depth > 0:
        _held[path] = depth
        return
    _held.pop(path, None)
    holder = read_holder(path)
    if holder is not None and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def run_lock(run_dir: str, purpose: str, enabled: bool = True):
    """Hold the run directory's lock for the ``with`` block (a no-op when not ``enabled``)."""
    if not enabled:
        yield
        return
    path = acquire(run_dir, purpose)
    try:
        yield
    finally:
        release(path)
