"""Server health and indexing-job status parsed from the server's JSON, with short display texts."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ServerResponseError

FINAL_STATES = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class ServerStatus:
    """What GET /health says about the server."""

    status: str
    version: str = ""
    model: str = ""
    device: str = ""
    collections: tuple[str, ...] = ()
    allowed_roots: tuple[str, ...] = ()  # folders the server may read (None known: empty)
    models: dict[str, str] = field(default_factory=dict)  # collection -> the model its vectors come from
    indexed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # raster path -> collections holding it

    def with_collections(self, body: Any, rasters: dict[str, Any]) -> ServerStatus:
        """This status plus each collection's model (GET /collections) and indexed rasters (GET /collections/x)."""
        items = body.get("collections", []) if isinstance(body, dict) else body or []
        models = {str(c["name"]): model_name(c.get("model")) for c in items if isinstance(c, dict) and "name" in c}
        indexed: dict[str, tuple[str, ...]] = {}
        for name, summary in rasters.items():
            for raster in (summary or {}).get("raster_list") or ():
                path = str(raster.get("path", "")) if isinstance(raster, dict) else str(raster)
                if path:
                    indexed[path] = (*indexed.get(path, ()), name)
        return replace(self, models=models, indexed=indexed)

    def describe(self) -> str:
        """One line for the dock: model, device and number of collections."""
        count = len(self.collections)
        noun = "collection" if count == 1 else "collections"
        return f"Connected · {self.model or 'unknown model'} on {self.device or '?'} · {count} {noun}"


def _names(items: Any) -> tuple[str, ...]:
    if isinstance(items, dict):
        items = items.get("collections", list(items))
    names: list[str] = []
    for item in items or ():
        name = item.get("name") if isinstance(item, dict) else item
        if name is not None:
            names.append(str(name))
    return tuple(names)


def model_name(model: Any) -> str:
    """A model's readable name from a string or a {identity|name} object."""
    if isinstance(model, dict):
        model = model.get("name") or model.get("identity") or ""
    return str(model or "")


def parse_health(body: Any) -> ServerStatus:
    """Build a ServerStatus from the /health body or raise ServerResponseError if it is not one."""
    if not isinstance(body, dict) or "status" not in body:
        raise ServerResponseError(f"/health answered {str(body)[:120]!r}, not a HarMA Search health report")
    model = body.get("model", "")
    if isinstance(model, dict):
        model = model.get("identity") or model.get("name") or ""
    return ServerStatus(
        status=str(body["status"]),
        version=str(body.get("version", "")),
        model=str(model or body.get("model_identity", "")),
        device=str(body.get("device", "")),
        collections=_names(body.get("collections", ())),
        allowed_roots=tuple(str(r) for r in body.get("allowed_roots") or ()),
    )


def parse_collections(body: Any) -> tuple[str, ...]:
    """Collection names from GET /collections (a list of names or objects with a name)."""
    return _names(body)


def format_duration(seconds: float | None) -> str:
    """Seconds as H:MM:SS or M:SS; '?' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class JobStatus:
    """What GET /jobs/<id> says about an indexing job."""

    job_id: str
    state: str
    done: int = 0
    total: int = 0
    tiles_per_s: float | None = None
    eta_s: float | None = None
    errors: tuple[str, ...] = field(default_factory=tuple)

    @property
    def finished(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return self.state in FINAL_STATES

    @property
    def percent(self) -> float:
        """Progress in percent (0 while the total is unknown)."""
        if self.state == "done":
            return 100.0
        return 100.0 * self.done / self.total if self.total > 0 else 0.0

    def describe(self) -> str:
        """One line for the dock and the task manager: counts, speed and ETA."""
        if self.state == "done" and self.total == 0 and not self.errors:
            return "done: no new tiles (these rasters are already in the collection)"
        text = f"{self.state}: {self.done}/{self.total or '?'} tiles"
        if self.tiles_per_s:
            text += f" · {self.tiles_per_s:.1f} tiles/s"
        if not self.finished:
            text += f" · ETA {format_duration(self.eta_s)}"
        if self.errors:
            text += f" · {len(self.errors)} error(s)"
        return text


def parse_job(body: Any, job_id: str) -> JobStatus:
    """Build a JobStatus from a /jobs/<id> body or raise ServerResponseError."""
    if not isinstance(body, dict) or "state" not in body:
        raise ServerResponseError(f"/jobs/{job_id} answered {str(body)[:120]!r}, not a job status")
    errors = body.get("errors") or ()
    return JobStatus(
        job_id=str(body.get("job_id", body.get("id", job_id))),
        state=str(body["state"]),
        done=int(_number(body.get("done")) or 0),
        total=int(_number(body.get("total")) or 0),
        tiles_per_s=_number(body.get("tiles_per_s")),
        eta_s=_number(body.get("eta_s")),
        errors=tuple(str(e) for e in errors),
    )
