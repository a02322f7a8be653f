"""Flask app factory: defaults, then HARMA_* environment, then the caller's overrides; JSON errors only."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask, Response
from rasterio.env import set_gdal_config
from werkzeug.exceptions import HTTPException

from harma_core import HarmaError
from harma_core.serving import load_model
from server.api import _json, bp
from server.change_api import change as _change_route  # noqa: F401  (adds POST /change to bp)
from server.errors import ServerError
from server.jobs import JobManager
from server.maps_api import zero_shot_map as _map_route  # noqa: F401  (adds /map, /maps, /heatmaps)
from server.models import ModelRegistry, ServedModel, default_source
from server.search.search import TextEmbedder
from server.services import Services
from server.store.store import Store
from server.store.storelock import StoreLock

log = logging.getLogger(__name__)
DEFAULTS: dict[str, Any] = {
    "STORE": "stores",
    "ALLOWED_ROOTS": [],
    "TOKEN": None,
    "MODEL": "harma-lite",
    "DEVICE": "auto",
    "BATCH_SIZE": 32,
    "TEXT_CACHE_SIZE": 512,
    "CHECKPOINT_EVERY": 2048,
    "MAX_CONTENT_LENGTH": 1 << 20,  # 1 MiB: requests carry paths and queries, never data
    "LOADED_MODEL": None,  # an already created model to share (tests, embedding apps)
    "MODEL_SOURCE": None,  # where LOADED_MODEL loads from, recorded in new collections (default: MODEL)
    "MAX_MODELS": 3,  # models kept loaded at once (the default included); others reload from their source
    "LOCK_STORE": True,  # one server per store: a second one is refused with the holder's PID
    "STORE_LOCK": None,  # a StoreLock the caller already holds on STORE (taken before a slow model load)
    "GDAL_CACHE_MB": None,  # GDAL's block cache; None: 64 MB unless GDAL_CACHEMAX is set in the environment
}
GDAL_CACHE_MB = 64  # GDAL's own default (5% of RAM) takes GBs on huge rasters for no speed-up here



def _roots(value: Any) -> list[Path]:
    if isinstance(value, str):
        value = [v for v in value.split(os.pathsep) if v]
    roots = [Path(v).expanduser().resolve() for v in value or []]
    for r in roots:
        if not r.is_dir():
            raise ServerError(f"allowed root {r} is not a folder; give existing folders with --allowed-root")
    return roots


def _limit_gdal_cache(mb: Any) -> None:
    """Set GDAL's block cache (process-wide) before rasters are read; an explicit GDAL_CACHEMAX wins over the
    default."""
    if mb is None and "GDAL_CACHEMAX" in os.environ:
        return
    mb = GDAL_CACHE_MB if mb is None else int(mb)
    if mb < 1:
        raise ServerError(f"GDAL cache of {mb} MB is too small; give at least 1 (default {GDAL_CACHE_MB})")
    set_gdal_config("GDAL_CACHEMAX", mb * 2**20)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; the model is created (or taken from LOADED_MODEL) once and shared by all requests."""
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("HARMA")
    app.config.update(config or {})
    cfg = app.config
    _limit_gdal_cache(cfg["GDAL_CACHE_MB"])
    token = cfg["TOKEN"]
    if token and (not isinstance(token, str) or token != token.strip()):
        raise ServerError("the token is blank or has spaces around it; give a token of visible characters")
    store = Store(cfg["STORE"], checkpoint_every=int(cfg["CHECKPOINT_EVERY"]))
    lock = cfg["STORE_LOCK"]
    if lock is None and cfg["LOCK_STORE"] and store.writable:  # read-only: nobody writes, no lock needed
        lock = StoreLock(store.root)
        lock.acquire()  # before the model loads: a refused second server fails fast
    try:
        model = cfg["LOADED_MODEL"] or load_model(cfg["MODEL"], device=cfg["DEVICE"])
        roots, cache = _roots(cfg["ALLOWED_ROOTS"]), int(cfg["TEXT_CACHE_SIZE"])
        default = ServedModel(model, TextEmbedder(model, cache), cfg["MODEL_SOURCE"] or default_source(cfg["MODEL"]))
        models = ModelRegistry(default, roots, store.root / "runs", keep=int(cfg["MAX_MODELS"]), text_cache=cache)
        app.extensions["harma"] = Services(store=store, models=models, jobs=JobManager(), allowed_roots=roots,
                                           batch_size=int(cfg["BATCH_SIZE"]), store_lock=lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if not store.writable:
        log.warning("store %s is read-only: searching works, creating collections and indexing do not", store.root)
    app.register_blueprint(bp)

    @app.errorhandler(ServerError)
    def _server_error(e: ServerError) -> Response:
        return _json({"error": e.title, "detail": e.detail}, e.status)

    @app.errorhandler(HarmaError)
    def _harma_error(e: HarmaError) -> Response:
        return _json({"error": "bad request", "detail": str(e)}, 400)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Response:
        return _json({"error": (e.name or "error").lower(), "detail": e.description}, e.code or 500)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        log.exception("unhandled error")
        return _json({"error": "internal error",
                      "detail": f"unexpected {type(e).__name__}; the server log has the details"}, 500)

    return app
