"""The GeoJSON answer of a search: features, the query as understood, and how the hits were scored."""

from __future__ import annotations

from typing import Any

from shapely.geometry import MultiPolygon, mapping
from shapely.geometry.base import BaseGeometry

from server.search.area import MIN_INSIDE
from server.search.search_request import SearchRequest

SCORE = {"cosine": "cosine with the query vector", "feedback": "classifier probability",
         "querybank": "cosine minus the tile's querybank offset (QB-Norm)",
         "relevance": "relevance (ties broken by the querybank-corrected cosine)"}
RELEVANCE = {"text": "share of real captions whose best hit here scores lower, times the text gate",
             "example": "share of sampled tiles whose nearest other tile is less similar",
             "feedback": "classifier probability"}
CALIBRATED = ("probability that the tile shows what was asked (calibrated on val from the querybank-corrected "
              "cosine, calibration.json), times the text gate")
MERGED = {"relevance": "each model's calibrated relevance (P(match)), comparable across models",
          "cosine": "cosine with each model's own query vector (a model without calibration.json was searched, "
                    "so relevance is not comparable across the models)"}


def geojson_geometry(geom: BaseGeometry | None) -> dict[str, Any] | None:
    """A single-part footprint is written as a Polygon; only antimeridian-split ones stay multi."""
    if geom is None:
        return None
    if isinstance(geom, MultiPolygon) and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    return dict(mapping(geom))


def feature(rank: int, hit: tuple, row: dict[str, Any], folded: int | None) -> dict[str, Any]:
    """One hit (key, cosine, relevance, corrected, tile id, collection) as a GeoJSON Feature."""
    key, cos, relv, corr, tile_id, col = hit
    props = {"rank": rank, "score": key, "cosine": cos, "relevance": relv, "tile_id": tile_id, "collection": col.name,
             "model": col.identity, "raster": row["raster"],
             "window": [row["col_off"], row["row_off"], row["width"], row["height"]],
             "crs": row["crs"], "bounds": [row["minx"], row["miny"], row["maxx"], row["maxy"]]}
    if folded is not None:
        props["near_duplicates"] = folded
    return {"type": "Feature", "id": f"{col.name}:{tile_id}", "geometry": geojson_geometry(row["geom"]),
            "properties": props}


def scoring(by: str, kind: str, calibrated: bool, no_match_below: float | None, gate: float | None,
            expanded: bool, beta: float | None, classifier: Any) -> dict[str, Any]:
    """How one model's hits were scored and ranked."""
    out: dict[str, Any] = {
        "ranked_by": by, "score": SCORE[by],
        "cosine": "cosine with the query vector" if kind != "feedback" else
                  "cosine with the feedback classifier's direction",
        "relevance": CALIBRATED if calibrated else RELEVANCE[kind], "calibrated": calibrated}
    if calibrated:
        out["no_match_below"] = no_match_below
    if kind == "text":
        out["text_gate"] = None if gate is None else round(gate, 4)
        out["expanded"] = expanded
    if beta is not None:
        out["beta"] = beta
    if classifier is not None:
        out["classifier"] = {"scale": round(classifier.scale, 4), "bias": round(classifier.bias, 4)}
    return out


def query_json(req: SearchRequest, query: dict[str, Any], names: list[str], area: BaseGeometry | None
               ) -> dict[str, Any]:
    """The request as understood: query, collections searched, area and thresholds."""
    area_json: dict[str, Any] = {"bbox": list(req.bbox) if req.bbox else None,
                                 "bbox_crs": req.bbox_crs if req.bbox else None}
    if req.geometry is not None:
        area_json.update(geometry=geojson_geometry(area), geometry_crs="EPSG:4326")
    if area is not None:
        area_json["area_rule"] = (f"tiles with at least {MIN_INSIDE:.0%} of their area inside (the tiles touching "
                                  "it when the area is smaller than that)")
        area_json["min_inside"] = MIN_INSIDE
    return {**query, "k": req.k, "collections": names, **area_json, "min_score": req.min_score,
            "min_cosine": req.min_cosine, "dedupe": req.dedupe, "dedupe_iou": req.dedupe_iou if req.dedupe else None,
            "expand": req.expand, "all": req.all}
