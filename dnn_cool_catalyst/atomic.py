"""Atomic file writes: readers see either the old file or the complete new one, never a half-written file.

The data goes to a temporary file in the target's directory (``os.replace`` is only atomic within one file
system), gets the mode a plain ``open()`` would give it under the process umask, is flushed and fsynced, and
then replaces the target. On any error the temporary file is removed and
an existing target is left untouched.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "sub", "state.json")
    >>> atomic_write_json(path, {"a": 1})
    >>> open(path).read()
    '{\\n  "a": 1\\n}'
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Iterable, Union

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating missing parent directories."""
    atomic_write_chunks(path, (data,))


def atomic_write_chunks(path: PathLike, chunks: Iterable[bytes]) -> None:
    """Write the concatenated ``chunks`` to ``path`` atomically (see :func:`atomic_write_bytes`): a large file
    without its whole text in memory at once. A chunk that fails to come (an exception) leaves the target as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600 whatever the umask; give it the mode open() would (0644 under umask 022)
        # so a shared run directory stays readable by the team.
        _chmod_for_umask(fd, tmp_path)
        with os.fdopen(fd, "wb") as f:
            for data in chunks:
                _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        # Also on KeyboardInterrupt: a stray temp file would otherwise accumulate next to the target.
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def current_umask() -> int:
    """The process umask, read without changing it where the OS tells it (Linux ``/proc``); elsewhere set and
    restored at once (``os.umask`` has no getter)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _chmod_for_umask(fd: int, tmp_path: str) -> None:
    mode = 0o666 & ~current_umask()
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:  # Windows: only the read-only bit exists
        os.chmod(tmp_path, mode)


def _write_all(f, data: bytes) -> None:
    # A seam of its own so tests can make a write fail (or the process die) half-way.
    f.write(data)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text expects str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Serialise ``obj`` first (so a serialisation error never touches the disk), then write it atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False))


def atomic_copy(source: PathLike, target: PathLike) -> None:
    """Copy ``source`` to ``target`` atomically (``shutil.copyfile`` truncates the target first)."""
    with open(source, "rb") as f:
        data = f.read()
    atomic_write_bytes(target, data)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable on POSIX; not supported (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
