"""The server's error hierarchy: each error knows its HTTP status; messages name the bad value and the fix."""

from __future__ import annotations

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


class RasterError(ServerError):
    """A raster that cannot be indexed: unreadable, no CRS, too small, or nothing but nodata."""

    status = 422
    title = "unusable raster"
