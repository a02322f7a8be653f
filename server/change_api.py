"""POST /api/v1/change: two dates' rasters (under the allowed roots) -> GeoJSON of the cells, most change first.

The route is added to the API blueprint (token check and JSON errors included) when this module is imported,
which server.app does. Body: {before, after (a path or a list; folders hold a mosaic), tile_size |
tile_size_m, crs?, text?, direction?, before_date?, after_date?, min_cover?, views?, k?}.
"""

from __future__ import annotations

from typing import Any

from flask import Response

from server.api import _body, _json, bp, services
from server.change_run import ChangeRequest, run_change, to_geojson
from server.errors import InvalidRequest, NotFound, PathNotAllowed
from server.store.paths import find_rasters, resolve_allowed

MAX_FILES = 1000  # per date


def _scene(paths: Any, key: str, roots: list) -> tuple[str, ...]:
    """The raster files of one date, each checked to lie under an allowed root."""
    given = [paths] if isinstance(paths, str) else paths
    if not isinstance(given, list) or not given or len(given) > MAX_FILES:
        raise InvalidRequest(f"{key} must be a raster path or a list of 1 to {MAX_FILES} of them")
    files = find_rasters([resolve_allowed(p, roots) for p in given])
    for f in files:  # a folder may hold symlinks that lead outside the roots
        resolve_allowed(f, roots)
    if not files:
        raise NotFound(f"no .tif/.tiff files found under {given}")
    return tuple(files)


def change_request(body: Any, roots: list) -> ChangeRequest:
    """Validate a JSON body into a ChangeRequest whose files all lie under the allowed roots."""
    if not isinstance(body, dict):
        raise InvalidRequest("give a JSON object, e.g. {\"before\": \"/data/2010.tif\", \"after\": "
                             "\"/data/2020.tif\", \"tile_size_m\": 300}")
    if not roots:
        raise PathNotAllowed("the server has no allowed roots; restart it with --allowed-root DIR")
    req = ChangeRequest.from_dict(body)
    return ChangeRequest.from_dict({**body, "before": list(_scene(body["before"], "before", roots)),
                                    "after": list(_scene(body["after"], "after", roots)), "k": req.k})


@bp.post("/change")
def change() -> Response:
    s = services()
    req = change_request(_body(), s.allowed_roots)
    result = run_change(s.model, req, embed_text=s.embed_text)
    return _json(to_geojson(result, req.k), mimetype="application/geo+json")
