"""Requests to the HarMA Search server (JSON over HTTP under /api/v1) and its error bodies."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from .errors import InputError, ServerResponseError
from .feedback import FeedbackParams
from .params import WGS84, SearchParams

API_PREFIX = "/api/v1"
DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
START_HINT = "python -m server --store STORE_DIR --host 127.0.0.1 --port PORT --allowed-root RASTER_DIR"


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP call: method, path below /api/v1 and an optional JSON body."""

    method: str
    path: str
    body: dict[str, Any] | None = None

    def url(self, base_url: str) -> str:
        """Full URL of this request on the server at base_url."""
        return normalise_base_url(base_url) + API_PREFIX + self.path

    def payload(self) -> bytes:
        """The JSON body as UTF-8 bytes (empty when there is none)."""
        return b"" if self.body is None else json.dumps(self.body).encode("utf-8")


def normalise_base_url(url: str) -> str:
    """Return the server's base URL without a trailing slash or API prefix; refuse non-HTTP URLs."""
    text = url.strip().rstrip("/")
    if text.endswith(API_PREFIX):
        text = text[: -len(API_PREFIX)]
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"Server URL {url!r} is not an http(s) URL: use e.g. {DEFAULT_SERVER_URL}")
    return text


def _seg(value: object) -> str:
    return quote(str(value), safe="")


def health() -> ApiRequest:
    """GET /health: status, version, model identity, device, collections."""
    return ApiRequest("GET", "/health")


def list_collections() -> ApiRequest:
    """GET /collections."""
    return ApiRequest("GET", "/collections")


def collection(name: str) -> ApiRequest:
    """GET /collections/<name>: its summary with the raster list."""
    return ApiRequest("GET", f"/collections/{_seg(name)}")


def create_collection(name: str, tile_size: int | None = None, overlap: int | None = None) -> ApiRequest:
    """POST /collections with the tiling parameters the server should use."""
    body: dict[str, Any] = {"name": name}
    if tile_size is not None:
        body["tile_size"] = int(tile_size)
    if overlap is not None:
        body["overlap"] = int(overlap)
    return ApiRequest("POST", "/collections", body)


def delete_collection(name: str) -> ApiRequest:
    """DELETE /collections/<name>."""
    return ApiRequest("DELETE", f"/collections/{_seg(name)}")


def add_rasters(collection: str, paths: list[str] | tuple[str, ...]) -> ApiRequest:
    """POST /collections/<name>/rasters: starts an indexing job (202 {job_id})."""
    return ApiRequest("POST", f"/collections/{_seg(collection)}/rasters", {"paths": list(paths)})


def reindex_collection(name: str, model: str, into: str) -> ApiRequest:
    """POST /collections/<name>/reindex: an index job (202 {job_id}) building `into` from its rasters with model."""
    return ApiRequest("POST", f"/collections/{_seg(name)}/reindex", {"model": model, "into": into})


def job_status(job_id: str) -> ApiRequest:
    """GET /jobs/<id>."""
    return ApiRequest("GET", f"/jobs/{_seg(job_id)}")


def cancel_job(job_id: str) -> ApiRequest:
    """DELETE /jobs/<id>: cancels a queued or running job."""
    return ApiRequest("DELETE", f"/jobs/{_seg(job_id)}")


def search(params: SearchParams) -> ApiRequest:
    """POST /search for a text query or an example tile."""
    body: dict[str, Any] = {"k": int(params.k), "collections": [params.collection]}
    if params.tile_id is not None:
        body["tile_id"] = int(params.tile_id)
        body["collection"] = params.collection  # the collection the example tile belongs to
    else:
        body["text"] = params.query.strip()
    if params.area_geojson:
        body["geometry"] = json.loads(params.area_geojson)
        body["geometry_crs"] = WGS84
    elif params.bbox is not None:
        body["bbox"] = list(params.bbox)
        body["bbox_crs"] = params.bbox_crs
    if params.min_score is not None:
        body["min_score"] = float(params.min_score)  # the 0-1 relevance the hits are ranked and shown by
    return ApiRequest("POST", "/search", body)


def feedback_search(params: FeedbackParams) -> ApiRequest:
    """POST /search ranked by marked tiles (relevance feedback); with find_all, every tile above min_score."""
    body: dict[str, Any] = {"positive": list(params.positive), "negative": list(params.negative),
                            "collections": [params.collection]}
    if params.text.strip():
        body["text"] = params.text.strip()
    if params.find_all:
        body["all"] = True
    else:
        body["k"] = int(params.k)
    if params.min_score is not None:
        body["min_score"] = float(params.min_score)
    return ApiRequest("POST", "/search", body)


def tile_raster(collection: str, tile_id: int) -> ApiRequest:
    """GET /tiles/<collection>/<tile_id>.tif: a georeferenced crop of one tile."""
    return ApiRequest("GET", f"/tiles/{_seg(collection)}/{_seg(tile_id)}.tif")


def change(body: dict[str, Any]) -> ApiRequest:
    """POST /change: the cells of two dates' rasters, most change first (GeoJSON)."""
    return ApiRequest("POST", "/change", body)


def heatmap(search_body: dict[str, Any]) -> ApiRequest:
    """POST /search answered as heatmaps: every tile's score as GeoTIFFs (k and 'find all' do not apply)."""
    body = {key: value for key, value in search_body.items() if key not in ("k", "all", "dedupe", "as")}
    return ApiRequest("POST", "/search", {**body, "as": "heatmap"})


def zero_shot_map(body: dict[str, Any]) -> ApiRequest:
    """POST /map: a class per tile (class GeoTIFFs to fetch) and the dissolved class polygons."""
    return ApiRequest("POST", "/map", body)


def server_file(url: str) -> ApiRequest:
    """GET a file the server named in an answer (e.g. /api/v1/heatmaps/<id>.tif); other URLs are refused."""
    path = urlsplit(url).path
    if not path.startswith(API_PREFIX + "/") or ".." in path:
        raise ServerResponseError(f"The server named a file outside its API ({url!r}): is it up to date?")
    return ApiRequest("GET", path[len(API_PREFIX):])


def decode_json(raw: bytes, url: str) -> Any:
    """Parse a JSON body or raise ServerResponseError naming the URL."""
    try:
        return json.loads(raw.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError) as exc:
        snippet = raw[:120].decode("utf-8", errors="replace")
        raise ServerResponseError(
            f"{url} did not answer with JSON ({exc}); is the server URL right? Got: {snippet!r}"
        ) from exc


def error_from_response(status: int, raw: bytes, url: str) -> ServerResponseError:
    """Turn an HTTP error status and its {error, detail} body into a readable error."""
    error, detail = "", ""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict):
        error = str(body.get("error", ""))
        detail = str(body.get("detail", "") or "")
    text = ": ".join(part for part in (error, detail) if part) or raw[:200].decode("utf-8", errors="replace")
    hint = " Check the server token in the plugin settings." if status in (401, 403) and not detail else ""
    return ServerResponseError(f"Server error {status} at {url}: {text}.{hint}", status=status, error=error)
