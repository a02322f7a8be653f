"""The one blueprint of the HTTP API (/api/v1): views parse requests and serialise results, nothing more."""

from __future__ import annotations

import hmac
import json
import math
from typing import Any

from flask import Blueprint, Response, current_app, request

from server.errors import InvalidRequest, Unauthorized
from server.maps_run import answer_as, heatmap_answer
from server.previews import MAX_PREVIEW_SIDE, tile_geotiff, tile_png
from server.search.search_request import tile_id_of
from server.services import Services
from server.training_job import start_training, switch_model

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def services() -> Services:
    """The app's services."""
    return current_app.extensions["harma"]


def _json(data: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(json.dumps(data, allow_nan=False), status=status, mimetype=mimetype)


def _accepted(job: Any) -> Response:
    """202 with the job and its Location, the answer of every request that starts a job."""
    resp = _json(job.to_dict(), 202)
    resp.headers["Location"] = f"{bp.url_prefix}/jobs/{job.id}"
    return resp


def _body() -> Any:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # the JSON decoder recurses per nesting level; silent=True only covers ValueError
        raise InvalidRequest("the JSON body nests too deeply; send a flat object such as "
                             "{\"text\": \"a river\", \"k\": 10}") from None
    if body is None:
        raise InvalidRequest("the request body must be JSON with Content-Type: application/json")
    _refuse_nonfinite(body, "body")
    return body


def _refuse_nonfinite(value: Any, where: str) -> None:
    """Refuse NaN and Infinity anywhere in a JSON body (Python's decoder accepts them), naming the field."""
    stack = [(value, where)]
    while stack:
        v, at = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidRequest(f"{at} holds {v!r}; NaN and Infinity are not allowed, send finite numbers")
        if isinstance(v, dict):
            stack.extend((item, str(k) if at == "body" else f"{at}.{k}") for k, item in v.items())
        elif isinstance(v, list):
            stack.extend((item, f"{at}[{i}]") for i, item in enumerate(v))


@bp.before_request
def _check_token() -> None:
    token = current_app.config.get("TOKEN")
    if not token:
        return
    given = request.headers.get("X-Harma-Token", "")
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not hmac.compare_digest(given.encode(), str(token).encode()):
        raise Unauthorized("missing or wrong token; send the server's token as 'Authorization: Bearer TOKEN'")


@bp.get("/health")
def health() -> Response:
    return _json(services().health())


@bp.get("/collections")
def list_collections() -> Response:
    s = services()
    return _json({"collections": [s.collection_summary(n) for n in s.store.names()],
                  "models": s.models.available(), "default_model": s.models.default.identity})


@bp.post("/collections")
def create_collection() -> Response:
    summary, created = services().create_collection(_body())
    return _json(summary, 201 if created else 200)


@bp.get("/collections/<name>")
def get_collection(name: str) -> Response:
    return _json(services().collection_summary(name, with_rasters=True))


@bp.delete("/collections/<name>")
def delete_collection(name: str) -> Response:
    services().delete_collection(name)
    return _json({"deleted": name})


@bp.post("/collections/<name>/rasters")
def add_rasters(name: str) -> Response:
    return _accepted(services().add_rasters(name, _body()))


@bp.post("/collections/<name>/reindex")
def reindex(name: str) -> Response:
    return _accepted(services().reindex(name, _body()))


@bp.delete("/collections/<name>/rasters")
def remove_rasters(name: str) -> Response:
    return _json(services().remove_rasters(name, _body()))


@bp.get("/jobs")
def list_jobs() -> Response:
    return _json({"jobs": [j.to_dict() for j in services().jobs.list()]})


@bp.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    return _json(services().jobs.get(job_id).to_dict())


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Response:
    return _json(services().jobs.cancel(job_id).to_dict())


@bp.post("/train")
def train() -> Response:
    return _accepted(start_training(services(), _body()))


@bp.post("/model")
def serve_model() -> Response:
    return _json(switch_model(services(), _body()))


@bp.post("/search")
def search() -> Response:
    body = _body()
    if answer_as(body) == "heatmap":  # every tile's score as GeoTIFFs (server/maps_run.py)
        s = services()
        return _json(heatmap_answer(s.store, s.model, s.embed_text, body, bp.url_prefix or ""))
    return _json(services().search(body), mimetype="application/geo+json")


@bp.get("/tiles/<name>/<int:tile_id>.png")
def tile_preview(name: str, tile_id: int) -> Response:
    size = request.args.get("size", "512")
    if not (size.isascii() and size.isdigit()) or len(size) > 6:  # int() of thousands of digits is a ValueError
        raise InvalidRequest(f"size={size[:20]!r}{'...' if len(size) > 20 else ''} must be a whole number of "
                             f"pixels, e.g. size=512 (at most {MAX_PREVIEW_SIDE})")
    s = services()
    data = tile_png(s.store.get(name), tile_id_of(tile_id, "tile id"), int(size), roots=s.allowed_roots)
    return Response(data, mimetype="image/png")


@bp.get("/tiles/<name>/<int:tile_id>.tif")
def tile_crop(name: str, tile_id: int) -> Response:
    s = services()
    data = tile_geotiff(s.store.get(name), tile_id_of(tile_id, "tile id"), roots=s.allowed_roots)
    resp = Response(data, mimetype="image/tiff; application=geotiff")
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}_{tile_id}.tif"'
    return resp
