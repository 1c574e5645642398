"""One process at a time on an SQLite database: an exclusive ``flock`` on a file beside it.

SQLite's own locks keep two writers from corrupting the file, but not from both running: two
servers on one database each rebuild their in-memory stock from it and would each sell the same
units. So ``SqliteStore.open`` takes ``ProcessLock`` on ``<database>.lock`` first and holds it
until ``close``. The lock is ``flock(LOCK_EX | LOCK_NB)``: it belongs to the open file (not to
the process, unlike the POSIX locks SQLite takes), so a second store in the same process is
refused too, and the kernel drops it when the descriptor closes, also when the process dies
(``kill -9``): no stale lock to clean up. The holder writes its pid and host into the file, for
the refusal's message; the file itself is never deleted (deleting it would let a third opener
lock a new file while the second still holds the old one).

One caveat: a child made by ``fork()`` without ``exec`` shares the descriptor and keeps the
lock held after its parent exits. The descriptor is close-on-exec, so ``subprocess`` children
do not hold it.
"""

import contextlib
import errno
import fcntl
import os
import socket

from pyorder.storage.base import StorageError, StoreInUseError

SUFFIX = ".lock"
"""The lock file's name is the database's plus this."""


class ProcessLock:
    """An exclusive lock on ``<database>.lock``, taken by ``acquire`` and released by
    ``release`` (or when the process ends)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.path = database + SUFFIX
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise ``StoreInUseError`` (another holder) or ``StorageError`` (the
        file cannot be opened, e.g. a missing folder)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StorageError(f"{self.database}: cannot open the lock file: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreInUseError(_in_use_message(self.database, holder)) from None
            raise StorageError(f"{self.database}: cannot lock {self.path}: {e}") from e
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} host {socket.gethostname()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise StorageError(f"{self.database}: cannot write {self.path}: {e}") from e
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (emptying the file first: no one holds it); safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # the note is only for the message
            os.ftruncate(fd, 0)
        os.close(fd)


def _read_holder(fd: int) -> str:
    """The holder's note (``pid N host H``), or what to say if it has not written it yet."""
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "pid and host not written yet"


def _in_use_message(database: str, holder: str) -> str:
    same = holder.startswith(f"pid {os.getpid()} host {socket.gethostname()}")
    who = "another store in this process" if same else "another process"
    return (
        f"{database} is already served by {who} ({holder}): an SQLite database is"
        " single-process; stop that process first, or use PostgreSQL (--database"
        " postgresql://...) to run several nodes"
    )
