"""Results layers: typed memory layer per query, graduated by score, rank labels, in the results group."""
from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsLayerTreeGroup,
    QgsPalLayerSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRendererRange,
    QgsSymbol,
    QgsTextFormat,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor

from .logic.errors import PluginError
from .logic.hits import RESULT_FIELDS, Hit, rerank
from .logic.styles import score_classes

GROUP_NAME = "HarMA results"
_QVARIANT_TYPES = {"integer": QVariant.Int, "double": QVariant.Double, "string": QVariant.String}


def result_fields() -> QgsFields:
    """The typed fields of a results layer."""
    fields = QgsFields()
    for name, kind in RESULT_FIELDS:
        fields.append(QgsField(name, _QVARIANT_TYPES[kind]))
    return fields


def filter_by_area(hits: list[Hit], area_wkt: str | None) -> list[Hit]:
    """Hits whose footprint touches the area (EPSG:4326 WKT), re-ranked; all hits when area is None."""
    if not area_wkt:
        return list(hits)
    area = QgsGeometry.fromWkt(area_wkt)
    if area.isNull():
        raise PluginError(f"The selected polygons gave an unusable area {area_wkt[:60]!r}: select others")
    return rerank([h for h in hits if QgsGeometry.fromWkt(h.wkt()).intersects(area)])


def build_results_layer(hits: list[Hit], name: str) -> QgsVectorLayer:
    """A memory layer (EPSG:4326 polygons) with one feature per hit, styled and labelled."""
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", name, "memory")
    provider = layer.dataProvider()
    provider.addAttributes(result_fields().toList())
    layer.updateFields()
    features = []
    for hit in hits:
        feature = QgsFeature(layer.fields())
        feature.setAttributes(hit.values())
        feature.setGeometry(QgsGeometry.fromWkt(hit.wkt()))
        features.append(feature)
    if not provider.addFeatures(features):
        raise PluginError(f"Could not add {len(features)} hits to the results layer {name!r}")
    layer.updateExtents()
    style_results_layer(layer, [h.score for h in hits])
    return layer


def style_results_layer(layer: QgsVectorLayer, scores: list[float]) -> None:
    """Graduated fill by score (outlined, half transparent) and rank labels."""
    ranges = []
    for cls in score_classes(scores):
        symbol = QgsSymbol.defaultSymbol(QgsWkbTypes.GeometryType.PolygonGeometry)
        symbol.setColor(QColor(cls.color))
        symbol.setOpacity(0.55)
        symbol.symbolLayer(0).setStrokeColor(QColor("#7a0019"))
        ranges.append(QgsRendererRange(cls.lower, cls.upper, symbol, cls.label))
    layer.setRenderer(QgsGraduatedSymbolRenderer("score", ranges))
    labels = QgsPalLayerSettings()
    labels.fieldName = "rank"
    labels.placement = QgsPalLayerSettings.Placement.OverPoint
    text = QgsTextFormat()
    text.setSize(10)
    text.buffer().setEnabled(True)
    labels.setFormat(text)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    layer.setLabelsEnabled(True)


def results_group(project: QgsProject) -> QgsLayerTreeGroup:
    """The 'HarMA results' group, created at the top of the layer tree when missing."""
    root = project.layerTreeRoot()
    group = root.findGroup(GROUP_NAME)
    if group is None:
        group = root.insertGroup(0, GROUP_NAME)
    return group


def add_to_results(project: QgsProject, layer: QgsVectorLayer | QgsRasterLayer) -> None:
    """Add layer to the project inside the results group (newest on top)."""
    project.addMapLayer(layer, False)
    results_group(project).insertLayer(0, layer)


def add_preview(project: QgsProject, path: str, name: str) -> QgsRasterLayer:
    """Add a downloaded georeferenced tile crop as a raster layer in the results group."""
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        raise PluginError(f"Preview {path!r} is not a readable GeoTIFF: check the server's /tiles endpoint")
    add_to_results(project, layer)
    return layer


def export_geopackage(layer: QgsVectorLayer, path: str) -> str:
    """Write layer to a GeoPackage at path (overwriting it) and return the path."""
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "harma_results"
    options.fileEncoding = "UTF-8"
    error, message, written, _ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, path, project_context(), options
    )
    if error != QgsVectorFileWriter.WriterError.NoError:
        raise PluginError(f"Could not write {path!r}: {message}. Choose a writable .gpkg path")
    return written or path


def project_context() -> QgsCoordinateTransformContext:
    """The current project's coordinate transform context."""
    return QgsProject.instance().transformContext()


def wgs84() -> QgsCoordinateReferenceSystem:
    """EPSG:4326."""
    return QgsCoordinateReferenceSystem("EPSG:4326")
