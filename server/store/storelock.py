"""Cross-process locks on a store and its collections, portable through the `filelock` package (fcntl on POSIX,
msvcrt on Windows). The operating system drops such a lock when its process dies, so a killed server or job
leaves no stale lock behind, and no PID has to be probed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from server.errors import Conflict, StoreInUse, storage_fault, write_failure

LOCK_NAME = ".server.lock"
PID_NAME = ".server.pid"  # beside the lock: Windows locks are mandatory, so the lock file itself is unreadable


class StoreLock:
    """Held by the one server that serves a store; a second one is refused naming the holder's PID."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = FileLock(self.root / LOCK_NAME, timeout=0, thread_local=False)

    @classmethod
    def take(cls, root: str | Path) -> StoreLock | None:
        """The lock of an existing writable store folder, acquired (StoreInUse if held); None otherwise."""
        path = Path(root).expanduser().resolve()
        if not path.is_dir() or not os.access(path, os.W_OK):
            return None
        lock = cls(path)
        lock.acquire()
        return lock

    def acquire(self) -> None:
        """Take the lock or raise StoreInUse with the holder's PID."""
        try:
            self._lock.acquire()
        except Timeout:
            raise StoreInUse(f"store in use by PID {self.holder()}: {self.root} is already served by another "
                             "server; stop that one, or start this one with another --store") from None
        except OSError as e:  # the lock file cannot be created: a full disk, say
            raise write_failure(storage_fault(e) or "io", e, self.root, None) from e
        with contextlib.suppress(OSError):  # the PID only improves the message; a full disk must not stop us
            (self.root / PID_NAME).write_text(str(os.getpid()), encoding="ascii")

    def holder(self) -> str:
        """PID of the process holding the lock, as recorded by it ('unknown' when unreadable)."""
        try:
            return str(int((self.root / PID_NAME).read_text(encoding="ascii").strip()))
        except (OSError, ValueError):
            return "unknown"

    def release(self) -> None:
        """Give the store up (idempotent)."""
        if self._lock.is_locked:
            with contextlib.suppress(OSError):
                (self.root / PID_NAME).unlink()
            self._lock.release()


@contextlib.contextmanager
def exclusive(path: Path, busy: str) -> Iterator[None]:
    """Hold the lock file `path` for the block; Conflict(busy) when another holder has it."""
    lock = FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise Conflict(busy) from None
    except OSError as e:
        kind = storage_fault(e)
        if kind is None:
            raise
        raise write_failure(kind, e, path.parent, None) from e
    try:
        yield
    finally:
        lock.release()
