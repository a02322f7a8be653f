"""The search area a scope describes: the map extent, a polygon drawn on the map or the selected features of
a polygon layer, in EPSG:4326."""
from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsMapLayer,
    QgsProject,
    QgsVectorLayer,
)
from qgis.gui import QgsMapCanvas

from .logic.errors import InputError
from .logic.params import Bbox, Scope
from .results import wgs84


def _bbox(geometry: QgsGeometry) -> Bbox:
    rect = geometry.boundingBox()
    return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())


Area = tuple[Bbox | None, str | None, str | None]
Drawn = tuple[QgsGeometry, QgsCoordinateReferenceSystem] | None


def _polygon_area(geometry: QgsGeometry) -> Area:
    return _bbox(geometry), geometry.asWkt(), geometry.asJson(8)


def search_area(canvas: QgsMapCanvas | None, scope: Scope, layer: QgsMapLayer | None, drawn: Drawn = None) -> Area:
    """(bbox, WKT and GeoJSON of the polygons, or None) for scope; raises InputError when it has no area.

    The extent comes with its rectangle as WKT too: the plugin keeps only tiles mostly inside any area."""
    if scope is Scope.WHOLE:
        return None, None, None
    project = QgsProject.instance()
    if scope is Scope.EXTENT:
        if canvas is None:
            raise InputError("Scope 'current map extent' needs a map: choose 'Whole collection'")
        to_wgs84 = QgsCoordinateTransform(canvas.mapSettings().destinationCrs(), wgs84(), project)
        rect = QgsGeometry.fromRect(to_wgs84.transformBoundingBox(canvas.extent()))
        return _bbox(rect), rect.asWkt(), None
    if scope is Scope.DRAWN:
        if drawn is None:
            raise InputError("Scope 'polygon drawn on the map' needs a polygon: press Draw, click its corners on "
                             "the map and right-click to close it")
        geometry = QgsGeometry(drawn[0])
        geometry.transform(QgsCoordinateTransform(drawn[1], wgs84(), project))
        return _polygon_area(geometry)
    if not isinstance(layer, QgsVectorLayer) or layer.selectedFeatureCount() == 0:
        raise InputError("Scope 'selected polygons' needs a polygon layer with selected features: select some")
    to_wgs84 = QgsCoordinateTransform(layer.crs(), wgs84(), project)
    parts = []
    for feature in layer.selectedFeatures():
        geometry = QgsGeometry(feature.geometry())
        geometry.transform(to_wgs84)
        parts.append(geometry)
    return _polygon_area(QgsGeometry.unaryUnion(parts))
