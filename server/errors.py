"""The server's error hierarchy: each error knows its HTTP status; messages name the bad value and the fix."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any

from harma_core.errors import HarmaError


class ServerError(HarmaError):
    """Base of every error the indexing/search services raise on purpose; `status` is its HTTP status."""

    status = 400
    title = "bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(ServerError, ValueError):
    """A request or argument that is malformed or out of range."""


class Unauthorized(ServerError):
    """A missing or wrong access token."""

    status = 401
    title = "unauthorized"


class PathNotAllowed(ServerError, PermissionError):
    """A raster path outside every configured allowed root."""

    status = 403
    title = "path not allowed"


class NotFound(ServerError, LookupError):
    """An unknown collection, job, tile or a missing file."""

    status = 404
    title = "not found"


class Conflict(ServerError):
    """A request that clashes with the current state (name taken, collection busy)."""

    status = 409
    title = "conflict"


class ModelMismatch(Conflict):
    """A collection built with another model identity than the one in use."""

    title = "model mismatch"


class ModelUnavailable(Conflict):
    """A collection whose model this server cannot load (source gone, outside the roots, torch missing)."""

    title = "model unavailable"


class RasterError(ServerError):
    """A raster that cannot be indexed: unreadable, no CRS, too small, or nothing but nodata."""

    status = 422
    title = "unusable raster"


class CollectionBroken(Conflict):
    """A collection whose files cannot be opened; listed with the reason and the fix, never served."""

    title = "collection broken"

    def __init__(self, name: str, reason: str, fix: str) -> None:
        super().__init__(f"collection {name!r} cannot be opened: {reason}. Fix: {fix}")
        self.name, self.reason, self.fix = name, reason, fix

    def to_dict(self) -> dict[str, Any]:
        """What a listing shows instead of the collection's summary."""
        return {"name": self.name, "state": "broken", "reason": self.reason, "fix": self.fix}


class StoreInUse(Conflict):
    """A store already served by another server process."""

    title = "store in use"


class StoreNotWritable(ServerError):
    """A write to a store on a read-only filesystem (or one this process may not write)."""

    status = 403
    title = "store read-only"


class StoreWriteFailed(ServerError):
    """A write that failed part-way (disk full, I/O error); what was committed before it is kept."""

    status = 507
    title = "insufficient storage"


_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def storage_fault(e: BaseException) -> str | None:
    """'full', 'read-only' or 'io' when e is the filesystem refusing a write, else None."""
    if isinstance(e, sqlite3.OperationalError):
        msg = str(e).lower()
        if "full" in msg:
            return "full"
        if "readonly" in msg or "read-only" in msg:
            return "read-only"
        return "io" if "i/o" in msg else None
    if isinstance(e, OSError):
        if e.errno in _FULL:
            return "full"
        if e.errno in _READ_ONLY:
            return "read-only"
        return "io" if e.errno == errno.EIO else None
    return None


def write_failure(kind: str, cause: BaseException, where: Path, kept: int | None) -> ServerError:
    """The error to report for a failed write of `kind` (see storage_fault); `kept` tiles remain saved,
    None when nothing was being added (a create)."""
    what = f"{kept} tiles kept" if kept is not None else "nothing was changed"
    if kind == "read-only":
        return StoreNotWritable(f"the store at {where} is read-only ({cause}); searching works, but creating "
                                "collections and indexing need a writable store: remount it read-write or "
                                "use another --store")
    if kind == "full":
        return StoreWriteFailed(f"disk full: {what}, free space and rerun ({cause})")
    return StoreWriteFailed(f"writing to {where} failed ({cause}): {what}; check the disk and rerun")


def reject_unknown(d: dict[str, Any], known: set[str], what: str) -> None:
    """InvalidRequest naming the keys of `d` that are not in `known` (and the known ones), if any."""
    unknown = set(d) - known
    if unknown:
        raise InvalidRequest(f"unknown {what}(s) {sorted(unknown)}; known: {sorted(known)}")
