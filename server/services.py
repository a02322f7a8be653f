"""The long-lived services behind the HTTP API, with no Flask in sight: store, model, jobs, text cache."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from server import __version__
from server.errors import Conflict, InvalidRequest, NotFound, PathNotAllowed, ServerError
from server.indexing.pipeline import Progress, index_rasters
from server.jobs import Job, JobManager
from server.search.search import SearchRequest, TextEmbedder, search
from server.store.paths import check_raster_files, find_rasters, resolve_allowed
from server.store.records import TilingParams
from server.store.store import Collection, Store
from server.store.storelock import StoreLock

_COLLECTION_KEYS = {"name", "model"}
MAX_PATHS = 10_000


@dataclass
class Services:
    """Everything a request may touch; built once per app."""

    store: Store
    model: Any
    jobs: JobManager
    embed_text: TextEmbedder
    allowed_roots: list[Path]
    batch_size: int = 32
    store_lock: StoreLock | None = None  # held while this app serves the store

    def health(self) -> dict[str, Any]:
        """Liveness plus what the server is running."""
        return {"status": "ok", "version": __version__, "model": self.model.identity,
                "model_name": self.model.name, "dim": self.model.dim, "device": str(self.model.device), "runtime": getattr(self.model, "runtime", "torch"),
                "collections": self.store.names(), "allowed_roots": [str(r) for r in self.allowed_roots],
                "jobs_active": sum(j.state in ("queued", "running") for j in self.jobs.list())}

    def close(self) -> None:
        """Stop the jobs (cancelled ones save their index) and give the store up."""
        self.jobs.shutdown()
        if self.store_lock is not None:
            self.store_lock.release()

    def collection_summary(self, name: str, with_rasters: bool = False) -> dict[str, Any]:
        """Summary of one collection, optionally with its rasters; a broken one says why and how to fix it."""
        out = self.store.describe(name)
        if out["state"] == "broken":
            return out
        col = self.store.get(name)
        out["busy"] = self.jobs.busy(name)
        if with_rasters:
            out["raster_list"] = [{"path": r.path, "state": r.state, "tiles": r.tiles, "nodata_tiles": r.skipped}
                                  for r in col.rasters()]
        return out

    def create_collection(self, body: Any) -> tuple[dict[str, Any], bool]:
        """Create a collection (idempotent when name, model and tiling match); returns (summary, created)."""
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise InvalidRequest("give a JSON object with a collection name, e.g. {\"name\": \"coast\", "
                                 "\"tile_size\": 256, \"overlap\": 0}")
        model = body.get("model")
        if model is not None and model not in (self.model.name, self.model.identity):
            raise Conflict(f"this server runs model {self.model.identity!r}, not {model!r}; start a server with "
                           f"--model {model} to build collections with it")
        params = TilingParams.from_dict({k: v for k, v in body.items() if k not in _COLLECTION_KEYS})
        name = body["name"]
        if name in self.store.names():
            col = self.store.get(name)
            col.check_model(self.model.identity)
            if "views" not in body:  # an older collection (1 view) is still the same collection
                params = replace(params, views=col.params.views)
            if col.params != params:
                raise Conflict(f"collection {name!r} already exists with tiling {col.params.to_dict()}; "
                               "use another name or delete it first")
            return self.collection_summary(name), False
        self.store.create(name, self.model, params)
        return self.collection_summary(name), True

    def delete_collection(self, name: str) -> None:
        """Delete a collection no job is using (a broken one too)."""
        if self.jobs.busy(name):
            raise Conflict(f"collection {name!r} has a queued or running job; cancel it first")
        self.store.delete(name)

    def _rasters_from(self, body: Any) -> list[str]:
        if not isinstance(body, dict) or not isinstance(body.get("paths"), list) or not body["paths"]:
            raise InvalidRequest("give {\"paths\": [\"/abs/path/scene.tif\", \"/abs/folder\"]}")
        if len(body["paths"]) > MAX_PATHS:
            raise InvalidRequest(f"{len(body['paths'])} paths in one request; send at most {MAX_PATHS}")
        resolved = [resolve_allowed(p, self.allowed_roots) for p in body["paths"]]
        files = find_rasters(resolved)
        for f in files:  # a folder may hold symlinks, or VRTs, that lead outside the roots
            resolve_allowed(f, self.allowed_roots)
            check_raster_files(f, self.allowed_roots)
        if not files:
            raise NotFound(f"no .tif/.tiff files found under {body['paths']}")
        return files

    def add_rasters(self, name: str, body: Any) -> Job:
        """Validate paths now, index them in a background job."""
        col = self.store.get(name)
        col.check_model(self.model.identity)
        self.store.require_writable()
        if not self.allowed_roots:
            raise PathNotAllowed("the server has no allowed roots; restart it with --allowed-root DIR")
        files = self._rasters_from(body)

        def run(progress: Callable[[Progress], None], cancel: threading.Event) -> dict[str, Any]:
            report = index_rasters(self.store.get(name), self.model, files, batch_size=self.batch_size,
                                   progress=progress, cancel=cancel)
            return report.to_dict()

        return self.jobs.submit("index", name, run)

    def remove_rasters(self, name: str, body: Any) -> dict[str, Any]:
        """Mark the tiles of the given rasters deleted."""
        col: Collection = self.store.get(name)
        if not isinstance(body, dict) or not isinstance(body.get("paths"), list) or not body["paths"]:
            raise InvalidRequest("give {\"paths\": [\"/abs/path/scene.tif\"]} of rasters to remove")
        removed = 0
        with col.writing(self.model.identity):
            for p in body["paths"]:
                if not isinstance(p, str):
                    raise InvalidRequest(f"path {p!r} must be a string")
                removed += col.remove_raster(str(Path(p).expanduser().resolve()))
        return {"collection": name, "removed_tiles": removed}

    def search(self, body: Any) -> dict[str, Any]:
        """Run a search from a JSON body; a collection deleted while it runs is a 404 naming it, not a 500."""
        req = SearchRequest.from_json(body)
        before = set(self.store.names())
        try:
            return search(self.store, self.model, self.embed_text, req)
        except ServerError:
            raise
        except Exception as e:  # sqlite's file or an index shard vanished under the search
            gone = sorted(before - set(self.store.names()))
            if not gone:
                raise
            raise NotFound(f"collection(s) {gone} were deleted while this search ran; search again") from e
