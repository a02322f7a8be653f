"""The search area a scope describes: the map extent or the selected polygons, in EPSG:4326."""
from __future__ import annotations

from qgis.core import QgsCoordinateTransform, QgsGeometry, QgsMapLayer, QgsProject, QgsVectorLayer
from qgis.gui import QgsMapCanvas

from .logic.errors import InputError
from .logic.params import Bbox, Scope
from .results import wgs84


def _bbox(geometry: QgsGeometry) -> Bbox:
    rect = geometry.boundingBox()
    return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())


Area = tuple[Bbox | None, str | None, str | None]


def search_area(canvas: QgsMapCanvas | None, scope: Scope, layer: QgsMapLayer | None) -> Area:
    """(bbox, WKT and GeoJSON of the polygons, or None) for scope; raises InputError when it has no area."""
    if scope is Scope.WHOLE:
        return None, None, None
    project = QgsProject.instance()
    if scope is Scope.EXTENT:
        if canvas is None:
            raise InputError("Scope 'current map extent' needs a map: choose 'Whole collection'")
        to_wgs84 = QgsCoordinateTransform(canvas.mapSettings().destinationCrs(), wgs84(), project)
        return _bbox(QgsGeometry.fromRect(to_wgs84.transformBoundingBox(canvas.extent()))), None, None
    if not isinstance(layer, QgsVectorLayer) or layer.selectedFeatureCount() == 0:
        raise InputError("Scope 'selected polygons' needs a polygon layer with selected features: select some")
    to_wgs84 = QgsCoordinateTransform(layer.crs(), wgs84(), project)
    parts = []
    for feature in layer.selectedFeatures():
        geometry = QgsGeometry(feature.geometry())
        geometry.transform(to_wgs84)
        parts.append(geometry)
    area = QgsGeometry.unaryUnion(parts)
    return _bbox(area), area.asWkt(), area.asJson(8)
