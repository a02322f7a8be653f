"""POST /api/v1/map (a zero-shot class map as GeoJSON polygons) and the cached files of maps and heatmaps:
GET /api/v1/maps/<id>.tif|.qml|.legend.json and GET /api/v1/heatmaps/<id>.tif. Heatmaps themselves are search
answers (`"as": "heatmap"` in POST /api/v1/search, server.api). The routes are added to the API blueprint
(token check and JSON errors included) when this module is imported, which server.app does.
"""

from __future__ import annotations

from flask import Response, send_file

from server.api import _body, _json, bp, services
from server.maps_run import cached_file, map_answer

MIMETYPES = {"tif": "image/tiff; application=geotiff", "qml": "application/xml", "legend.json": "application/json"}


@bp.post("/map")
def zero_shot_map() -> Response:
    s = services()
    answer = map_answer(s.store, s.model, s.embed_text, _body(), bp.url_prefix or "")
    return _json(answer, mimetype="application/geo+json")


def _send(kind: str, name: str, suffixes: tuple[str, ...]) -> Response:
    path = cached_file(services().store, kind, name, suffixes)
    suffix = name.partition(".")[2]
    return send_file(path, mimetype=MIMETYPES[suffix], as_attachment=suffix == "tif", download_name=name,
                     max_age=0)


@bp.get("/maps/<name>")
def map_file(name: str) -> Response:
    return _send("maps", name, ("tif", "qml", "legend.json"))


@bp.get("/heatmaps/<name>")
def heatmap_file(name: str) -> Response:
    return _send("heatmaps", name, ("tif",))
