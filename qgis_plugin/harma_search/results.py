"""Results layers: typed memory layer per query, graduated by score, rank labels, in the results group."""
from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsPalLayerSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRendererRange,
    QgsSimpleFillSymbolLayer,
    QgsTextFormat,
    QgsUnitTypes,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt, QVariant
from qgis.PyQt.QtGui import QColor, QFont

from .logic.errors import PluginError
from .logic.hits import RESULT_FIELDS, Hit, rerank
from .logic.styles import score_classes

GROUP_NAME = "HarMA results"
FILL_ALPHA = 30  # of 255: the tile is tinted, the imagery under it stays readable
OUTLINE_MM = 0.7
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


def tile_symbol(color: str, fill_alpha: int = FILL_ALPHA, width_mm: float = OUTLINE_MM,
                dashed: bool = False) -> QgsFillSymbol:
    """A light fill with a strong outline over a white halo, so the imagery stays visible at every zoom."""
    halo = QgsSimpleFillSymbolLayer(QColor(0, 0, 0, 0), Qt.BrushStyle.NoBrush, QColor(255, 255, 255, 220),
                                    Qt.PenStyle.SolidLine, width_mm + 0.8)
    fill = QColor(color)
    fill.setAlpha(fill_alpha)
    pen = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
    main = QgsSimpleFillSymbolLayer(fill, Qt.BrushStyle.SolidPattern, QColor(color), pen, width_mm)
    symbol = QgsFillSymbol()
    symbol.deleteSymbolLayer(0)
    for symbol_layer in (halo, main):  # appendSymbolLayer takes ownership (a list in the constructor does not)
        symbol_layer.setStrokeWidthUnit(QgsUnitTypes.RenderUnit.RenderMillimeters)
        symbol.appendSymbolLayer(symbol_layer)
    return symbol


def label_settings(expression: str) -> QgsVectorLayerSimpleLabeling:
    """Bold dark labels with a white buffer, placed inside the tile."""
    labels = QgsPalLayerSettings()
    labels.fieldName = expression
    labels.isExpression = True
    labels.placement = QgsPalLayerSettings.Placement.OverPoint
    text = QgsTextFormat()
    font = QFont()
    font.setBold(True)
    text.setFont(font)
    text.setSize(11)
    text.setColor(QColor("#1a1a1a"))
    text.buffer().setEnabled(True)
    text.buffer().setSize(1.2)
    text.buffer().setColor(QColor("white"))
    labels.setFormat(text)
    return QgsVectorLayerSimpleLabeling(labels)


def style_results_layer(layer: QgsVectorLayer, scores: list[float]) -> None:
    """Outline coloured by score class (light fill, white halo) and bold '#rank' labels."""
    ranges = [QgsRendererRange(cls.lower, cls.upper, tile_symbol(cls.color), cls.label)
              for cls in score_classes(scores)]
    layer.setRenderer(QgsGraduatedSymbolRenderer("score", ranges))
    layer.setLabeling(label_settings("'#' || \"rank\""))
    layer.setLabelsEnabled(True)


def alive(layer: QgsMapLayer | None) -> bool:
    """True while layer exists and is in the project (the analyst may remove it at any time)."""
    return layer is not None and not sip.isdeleted(layer) and QgsProject.instance().mapLayer(layer.id()) is not None


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


def add_below(project: QgsProject, layer: QgsMapLayer, anchor: QgsMapLayer) -> None:
    """Add layer to the results group right below anchor (so anchor's outlines stay on top)."""
    project.addMapLayer(layer, False)
    group = results_group(project)
    node = group.findLayer(anchor.id())
    position = group.children().index(node) + 1 if node is not None else len(group.children())
    group.insertLayer(position, layer)


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
