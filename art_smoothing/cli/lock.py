"""The lock that makes a run folder belong to one run: an exclusive, non-blocking lock on a file in the folder
(``fcntl.flock``; ``msvcrt.locking`` on Windows; none where neither exists). The operating system releases it
when the process ends, however it ends, so a crash never leaves a stale lock: a lock file left behind by a
killed run is simply locked again."""

from __future__ import annotations

import contextlib
import os

__all__ = ["LOCK_NAME", "FolderLock"]

#: the lock file of a running run (removed when it ends; ignored where it is left by a killed process)
LOCK_NAME = ".art-smoothing.lock"


class FolderLock:
    """An exclusive lock on ``<folder>/.art-smoothing.lock`` (``fcntl.flock``; ``msvcrt.locking`` on Windows):
    :meth:`acquire` returns False at once when another process holds it. The operating system releases it
    when the process dies; :meth:`release` also removes the file."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd: int | None = None

    def acquire(self) -> bool:
        for _ in range(10):  # the file may be removed by the run that held it between our open and our lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                return False
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return True
            os.close(fd)
        return False

    def holder(self) -> str:
        """The process id written by the holder ('?' when unreadable)."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                return fh.read().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):  # Windows cannot remove an open file: it stays, unlocked
            os.remove(self.path)
        os.close(self.fd)  # closing drops the lock
        self.fd = None


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True
    try:
        import msvcrt
    except ImportError:  # neither: no locking on this platform (the non-empty check still protects a run)
        return True
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True
