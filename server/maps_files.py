"""Files of heatmaps and zero-shot maps: float32 score GeoTIFFs, uint8 class GeoTIFFs with a colour table, a
QGIS style (.qml) and legend (.legend.json) beside them, and per-class dissolved polygons (GeoPackage or
GeoJSON in EPSG:4326). One raster file per source raster, on its stride grid (server.search.heatmap)."""

from __future__ import annotations

import colorsys
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from server.search.heatmap import RasterLayout
from server.search.landcover import UNKNOWN, ClassSet

NODATA_CLASS, UNKNOWN_CLASS, FIRST_CLASS = 0, 1, 2  # values of a class map
UNKNOWN_RGB = (190, 190, 190)
# tab20, then a few of Dark2: distinct colours for up to 27 classes, golden-ratio hues after that
_PALETTE = ("1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf",
            "aec7e8", "ffbb78", "98df8a", "ff9896", "c5b0d5", "c49c94", "f7b6d2", "dbdb8d", "9edae5", "1b9e77",
            "d95f02", "7570b3", "e7298a", "66a61e", "e6ab02", "a6761d", "393b79")


def class_colour(i: int) -> tuple[int, int, int]:
    """RGB of the i-th class (0-based)."""
    if i < len(_PALETTE):
        h = _PALETTE[i]
        return int(h[:2], 16), int(h[2:4], 16), int(h[4:], 16)
    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{v:02x}" for v in rgb)


def legend(classes: ClassSet) -> list[dict[str, Any]]:
    """[{value, label, prompt, color}] of a class map, "unknown" first."""
    out = [{"value": UNKNOWN_CLASS, "label": UNKNOWN, "prompt": None, "color": _hex(UNKNOWN_RGB)}]
    for i, (label, prompt) in enumerate(zip(classes.labels, classes.prompts)):
        out.append({"value": FIRST_CLASS + i, "label": label, "prompt": prompt,
                    "color": _hex(class_colour(i))})
    return out


def per_raster_paths(out: str | Path, lays: list[tuple[str, RasterLayout]]) -> list[Path]:
    """OUT itself for one raster, else OUT_<n>_<raster stem><suffix> for each (n from 1)."""
    out = Path(out)
    if len(lays) == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{n}_{Path(lay.raster).stem}{out.suffix}") for n, (_, lay) in
            enumerate(lays, 1)]


def _profile(lay: RasterLayout, dtype: str, count: int, nodata: float) -> dict[str, Any]:
    profile = {"driver": "GTiff", "width": lay.width, "height": lay.height, "count": count, "dtype": dtype,
               "transform": lay.transform, "nodata": nodata, "compress": "deflate"}
    if lay.width >= 512 and lay.height >= 512:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if lay.crs:
        profile["crs"] = lay.crs
    return profile


def write_heat(path: Path, lay: RasterLayout, score: np.ndarray, cosine: np.ndarray, tags: dict[str, Any]) -> None:
    """A float32 GeoTIFF: band 1 the score search ranks by, band 2 the cosine; NaN where no tile."""
    import rasterio

    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", **_profile(lay, "float32", 2, math.nan)) as dst:
        dst.write(score.astype(np.float32), 1)
        dst.write(cosine.astype(np.float32), 2)
        dst.set_band_description(1, "score")
        dst.set_band_description(2, "cosine")
        dst.update_tags(**{k: json.dumps(v) for k, v in tags.items()})
    tmp.replace(path)


def qml(entries: list[dict[str, Any]]) -> str:
    """A QGIS paletted-renderer style for a class map (loaded with the .tif when named alike)."""
    rows = "\n".join(f"        <paletteEntry value=\"{e['value']}\" color=\"{e['color']}\" alpha=\"255\" "
                     f"label={quoteattr(str(e['label']))}/>" for e in entries)
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n<qgis version=\"3.22\" "
            "styleCategories=\"Symbology\">\n  <pipe>\n    <rasterrenderer type=\"paletted\" band=\"1\" "
            "opacity=\"1\" alphaBand=\"-1\" nodataColor=\"\">\n      <colorPalette>\n"
            f"{rows}\n      </colorPalette>\n    </rasterrenderer>\n  </pipe>\n</qgis>\n")


def write_classes(path: Path, lay: RasterLayout, grid: np.ndarray, classes: ClassSet, tags: dict[str, Any]) -> None:
    """A uint8 class GeoTIFF (0 no tile, 1 unknown, 2.. the classes) with a colour table, the legend in its
    tags, and PATH's .qml and .legend.json beside it."""
    import rasterio

    entries = legend(classes)
    cmap = {NODATA_CLASS: (0, 0, 0, 0)}
    for e in entries:
        h = e["color"].lstrip("#")
        cmap[e["value"]] = (int(h[:2], 16), int(h[2:4], 16), int(h[4:], 16), 255)
    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", **_profile(lay, "uint8", 1, NODATA_CLASS)) as dst:
        dst.write(grid.astype(np.uint8), 1)
        dst.write_colormap(1, cmap)
        dst.set_band_description(1, "class")
        dst.update_tags(legend=json.dumps(entries), **{f"CLASS_{e['value']}": e["label"] for e in entries},
                        **{k: json.dumps(v) for k, v in tags.items()})
    tmp.replace(path)
    path.with_suffix(".qml").write_text(qml(entries), encoding="utf-8")
    path.with_suffix(".legend.json").write_text(json.dumps(entries, indent=1), encoding="utf-8")


def class_shapes(lay: RasterLayout, grid: np.ndarray) -> dict[int, list[Any]]:
    """Polygons of each class value of a class grid, in the raster's CRS (cells of one value joined)."""
    from rasterio.features import shapes

    out: dict[int, list[Any]] = {}
    for geom, value in shapes(grid.astype(np.uint8), mask=grid > NODATA_CLASS, transform=lay.transform):
        out.setdefault(int(value), []).append(shape(geom))
    return out


def dissolve(parts: Iterable[tuple[str | None, dict[int, list[Any]]]], crs: str | None, classes: ClassSet
             ) -> list[dict[str, Any]]:
    """One row per class value present: {value, label, prompt, color, geometry (in `crs`)}; parts come with
    their own CRS and are reprojected when it differs."""
    from rasterio.warp import transform_geom

    merged: dict[int, list[Any]] = {}
    for src_crs, by_value in parts:
        for value, geoms in by_value.items():
            g = unary_union(geoms)
            if crs and src_crs and src_crs != crs:
                g = shape(transform_geom(src_crs, crs, mapping(g)))
            merged.setdefault(value, []).append(g)
    rows = []
    for e in legend(classes):
        if e["value"] in merged:
            rows.append({**e, "geometry": unary_union(merged[e["value"]])})
    return rows


def polygons_crs(lays: list[tuple[str, RasterLayout]]) -> str | None:
    """The rasters' shared CRS, else EPSG:4326 (rasters in several CRSs); None for pixel coordinates."""
    crss = {lay.crs for _, lay in lays}
    if crss == {None}:
        return None
    return crss.pop() if len(crss) == 1 else "EPSG:4326"


def to_geojson_features(rows: list[dict[str, Any]], crs: str | None) -> list[dict[str, Any]]:
    """Class rows as GeoJSON features in EPSG:4326."""
    from rasterio.warp import transform_geom

    feats = []
    for r in rows:
        geom = mapping(r["geometry"])
        if crs and crs != "EPSG:4326":
            geom = transform_geom(crs, "EPSG:4326", geom)
        props = {k: v for k, v in r.items() if k != "geometry"}
        feats.append({"type": "Feature", "id": r["label"], "geometry": geom, "properties": props})
    return feats


def write_polygons(rows: list[dict[str, Any]], crs: str | None, path: str | Path) -> None:
    """Class polygons to .gpkg (layer 'classes', in `crs`) or .geojson (EPSG:4326)."""
    path = Path(path)
    if path.suffix.lower() in (".geojson", ".json"):
        fc = {"type": "FeatureCollection", "features": to_geojson_features(rows, crs)}
        path.write_text(json.dumps(fc), encoding="utf-8")
        return
    from server.cli import geopandas

    gpd = geopandas()
    frame = gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "geometry"} for r in rows],
                             geometry=[r["geometry"] for r in rows], crs=crs)
    frame.to_file(path, layer="classes", driver="GPKG")
