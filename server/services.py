"""The long-lived services behind the HTTP API, with no Flask in sight: store, models, jobs."""

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
from server.models import ModelRegistry, ServedModel
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
    models: ModelRegistry
    jobs: JobManager
    allowed_roots: list[Path]
    batch_size: int = 32
    store_lock: StoreLock | None = None  # held while this app serves the store

    @property
    def model(self) -> Any:
        """The default model: new collections, /change and training start from it."""
        return self.models.default.model

    @property
    def embed_text(self) -> TextEmbedder:
        """The default model's text embedder."""
        return self.models.default.embed_text

    def health(self) -> dict[str, Any]:
        """Liveness plus what the server is running: the default model, the models available and each
        collection's model."""
        return {"status": "ok", "version": __version__, "model": self.model.identity,
                "model_name": self.model.name, "dim": self.model.dim, "device": str(self.model.device),
                "runtime": getattr(self.model, "runtime", "torch"), "default_model": self.models.default.describe(),
                "models": self.models.available(), "collections": self.store.names(),
                "collection_models": self.collection_models(), "allowed_roots": [str(r) for r in self.allowed_roots],
                "jobs_active": sum(j.state in ("queued", "running") for j in self.jobs.list())}

    def collection_models(self) -> list[dict[str, Any]]:
        """{collection, identity, name, source, state[, reason]} of every collection that opens."""
        out = []
        for name in self.store.names():
            try:
                col = self.store.get(name)
            except ServerError:  # broken: GET /collections says why
                continue
            out.append({"collection": name, **self.models.state_of(col)})
        return out

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
        out["model"] = self.models.state_of(col)
        out["busy"] = self.jobs.busy(name)
        if with_rasters:
            out["raster_list"] = [{"path": r.path, "state": r.state, "tiles": r.tiles, "nodata_tiles": r.skipped}
                                  for r in col.rasters()]
        return out

    def create_collection(self, body: Any) -> tuple[dict[str, Any], bool]:
        """Create a collection with the model `model` names (a loadable source), else the default (idempotent
        when name, model and tiling match); returns (summary, created)."""
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise InvalidRequest("give a JSON object with a collection name, e.g. {\"name\": \"coast\", "
                                 "\"tile_size\": 256, \"overlap\": 0}")
        params = TilingParams.from_dict({k: v for k, v in body.items() if k not in _COLLECTION_KEYS})
        served = self.models.default if body.get("model") is None else self.models.load(body["model"])
        name = body["name"]
        if name in self.store.names():
            col = self.store.get(name)
            if col.identity != served.identity:
                raise Conflict(f"collection {name!r} exists with model {col.identity!r}, not {served.identity!r}; "
                               f"give \"model\": \"{self.models.source_of(col)}\" to use it, or another name")
            if "views" not in body:  # an older collection (1 view) is still the same collection
                params = replace(params, views=col.params.views)
            if col.params != params:
                raise Conflict(f"collection {name!r} already exists with tiling {col.params.to_dict()}; "
                               "use another name or delete it first")
            return self.collection_summary(name), False
        self.store.create(name, served.model, params, source=served.source)
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
        """Validate paths now, index them with the collection's own model in a background job."""
        served = self.models.for_collection(self.store.get(name))
        self.store.require_writable()
        if not self.allowed_roots:
            raise PathNotAllowed("the server has no allowed roots; restart it with --allowed-root DIR")
        return self._index_job(name, served, self._rasters_from(body))

    def _index_job(self, name: str, served: ServedModel, files: list[str]) -> Job:
        def run(progress: Callable[[Progress], None], cancel: threading.Event) -> dict[str, Any]:
            report = index_rasters(self.store.get(name), served.model, files, batch_size=self.batch_size,
                                   progress=progress, cancel=cancel)
            return report.to_dict()

        return self.jobs.submit("index", name, run)

    def reindex(self, name: str, body: Any) -> Job:
        """Index a collection's rasters into a new collection `into` with another model (default: the default
        model), same tiling, as a background job; the old collection stays as it is."""
        if not isinstance(body, dict) or not isinstance(body.get("into"), str):
            raise InvalidRequest('give {"into": "NEW_NAME", "model": "RUN_OR_MODEL"} (model: default if left out)')
        if set(body) - {"into", "model"}:
            raise InvalidRequest(f"unknown key(s) {sorted(set(body) - {'into', 'model'})}; give into and model")
        col = self.store.get(name)
        if body["into"] == name:
            raise InvalidRequest(f"into {name!r} is the collection itself; name a new collection")
        self.store.require_writable()
        files = sorted({r.path for r in col.rasters()})
        if not files:
            raise Conflict(f"collection {name!r} holds no rasters to re-index")
        for f in files:  # indexed before the roots changed: still inside them?
            resolve_allowed(f, self.allowed_roots)
            check_raster_files(f, self.allowed_roots)
        spec = body.get("model")
        self.create_collection({"name": body["into"], **({} if spec is None else {"model": spec}),
                                **col.params.to_dict()})
        return self._index_job(body["into"], self.models.for_collection(self.store.get(body["into"])), files)

    def remove_rasters(self, name: str, body: Any) -> dict[str, Any]:
        """Mark the tiles of the given rasters deleted."""
        col: Collection = self.store.get(name)
        if not isinstance(body, dict) or not isinstance(body.get("paths"), list) or not body["paths"]:
            raise InvalidRequest("give {\"paths\": [\"/abs/path/scene.tif\"]} of rasters to remove")
        removed = 0
        with col.writing(col.identity):  # removing tiles needs no model
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
            return search(self.store, self.model, self.embed_text, req, model_for=self._model_for)
        except ServerError:
            raise
        except Exception as e:  # sqlite's file or an index shard vanished under the search
            gone = sorted(before - set(self.store.names()))
            if not gone:
                raise
            raise NotFound(f"collection(s) {gone} were deleted while this search ran; search again") from e

    def _model_for(self, col: Collection) -> tuple[Any, TextEmbedder]:
        """(model, text embedder) a collection is searched with: its own model, loaded on first use."""
        served = self.models.for_collection(col)
        return served.model, served.embed_text
