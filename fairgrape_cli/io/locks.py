"""One writer per folder: ``FOLDER/run.lock``, held while a run writes the folder.

The lock is the operating system's (``flock`` on the open lock file): the kernel releases it when
its process ends in any way, SIGKILL included, so a dead run never blocks the next one, and on
NFS (where Linux maps ``flock`` onto the server's byte-range locks) it holds across machines.
The file also says who holds it (pid, host, start time), for the message a second run prints and
for two checks the OS lock cannot make alone:

- a lock file naming a process that still runs on this host is respected even where the OS lock
  could be taken (a file system whose locks are local only, or a lock file made by hand);
- where the file system has no locks at all, the pid is the only evidence: a holder whose process
  is gone is taken over, one that may be alive (or runs on another host) is not.

A lock file left behind (its process was killed) is taken over with a warning. Releasing removes
the file; a run that opened the removed file before it went checks that its lock is still the
file at the path, and tries again when it is not.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, OutputError
from .files import cannot_write

LOCK_FILE = "run.lock"
_HELD = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)

log = logging.getLogger("fairgrape")


@dataclass(frozen=True)
class Holder:
    """Who a lock file says holds it."""

    pid: int | None
    host: str | None
    started: str | None = None
    process_start: int | None = None  # the process's start time in clock ticks after boot (Linux)
    text: str = ""  # the file's content when it is not ours (a lock made by hand)

    def describe(self) -> str:
        """Who holds the lock, as a message names it."""
        if self.pid is None:
            return f"a lock file saying {self.text[:80]!r}" if self.text else "a process not yet named in it"
        where = f" on {self.host}" if self.host else ""
        since = f", started {self.started}" if self.started else ""
        return f"pid {self.pid}{where}{since}"

    def alive(self) -> bool | None:
        """Whether the holder's process still runs: True, False, or None when this host cannot
        tell (another host, or no pid)."""
        if self.pid is None or (self.host is not None and self.host != socket.gethostname()):
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it runs, as another user
        except OSError:
            return None
        started = _process_start(self.pid)
        if self.process_start is not None and started is not None and started != self.process_start:
            return False  # the pid was reused by a later process
        return True


class FolderLock:
    """``with FolderLock(folder):`` the block is the folder's only writer, or InputError (exit 2)
    naming the lock and its holder. ``taken_over`` is the holder of a stale lock taken over."""

    def __init__(self, directory: str | os.PathLike, name: str = LOCK_FILE):
        self.directory = Path(directory)
        self.path = self.directory / name
        self.taken_over: Holder | None = None
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or refuse naming who holds it (a stale lock is taken over)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(cannot_write(self.path, error)) from error
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise OutputError(cannot_write(self.path, error)) from error
            try:
                if self._try_take(fd):
                    self._fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the lock file was replaced while we waited: try the new one

    def _try_take(self, fd: int) -> bool:
        """Take the lock on ``fd``; False when ``fd`` is no longer the file at the path."""
        locked = _os_lock(fd)
        holder = _read_holder(fd)
        if locked is False:
            raise self._held(holder)
        if locked and not _same_file(fd, self.path):
            return False
        if holder is not None:
            alive = holder.alive()
            if alive or (locked is None and alive is None):
                raise self._held(holder)
            self.taken_over = holder
            log.warning(
                "%s was left by %s, which is gone; taking it over", self.path, holder.describe()
            )  # fmt: skip
        try:
            _write_holder(fd, _this_process())
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise OutputError(cannot_write(self.path, error)) from error
        return True

    def _held(self, holder: Holder | None) -> InputError:
        who = holder.describe() if holder is not None else "a process not yet named in it"
        return InputError(
            f"{self.path} is held by {who}: another fairgrape run is writing {self.directory}; "
            f"wait for it to finish or choose another output folder (--set output=DIR); if no "
            f"run is writing there, delete {self.path}"
        )

    def release(self) -> None:
        """Give the lock back (remove the file if it is still ours)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still holding it: a waiting run then sees a new file
        os.close(self._fd)  # closing releases the OS lock
        self._fd = None


def _os_lock(fd: int) -> bool | None:
    """Take the OS lock without waiting: True, False when another process holds it, None where
    the platform or file system has none."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in _HELD:
            return False
        return None  # ENOLCK, EOPNOTSUPP...: a file system without locks
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _read_holder(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return Holder(
            pid=_int_or_none(data.get("pid")),
            host=data.get("host") if isinstance(data.get("host"), str) else None,
            started=str(data["started"]) if data.get("started") else None,
            process_start=_int_or_none(data.get("process_start")),
            text=text,
        )
    first = text.split()[0]
    return Holder(pid=_int_or_none(first), host=None, text=text)  # a bare pid, as other tools write


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _this_process() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "process_start": _process_start(os.getpid()),
        "command": " ".join(sys.argv)[:300],
    }


def _write_holder(fd: int, holder: dict) -> None:
    data = (json.dumps(holder) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)  # on NFS, so another machine reads who holds it


def _process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (field 22 of /proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", errors="replace")
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None

