"""Results layers: typed layer per query, outlines by relevance in words, rank labels, in the results group."""
from __future__ import annotations

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsPalLayerSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSimpleFillSymbolLayer,
    QgsSingleSymbolRenderer,
    QgsTextFormat,
    QgsUnitTypes,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt, QVariant
from qgis.PyQt.QtGui import QColor, QFont

from .logic.errors import PluginError
from .logic.hits import RESULT_FIELDS, Hit, rerank
from .logic.styles import NO_MATCH_COLOR, RELEVANCE_CLASSES

GROUP_NAME = "HarMA results"
FILL_ALPHA = 30  # of 255: the tile is tinted, the imagery under it stays readable
OUTLINE_MM = 0.7
MIN_INSIDE = 0.5  # a tile belongs to an area search when at least half of it lies inside the area
_QVARIANT_TYPES = {"integer": QVariant.Int, "double": QVariant.Double, "string": QVariant.String}


def result_fields() -> QgsFields:
    """The typed fields of a results layer."""
    fields = QgsFields()
    for name, kind in RESULT_FIELDS:
        fields.append(QgsField(name, _QVARIANT_TYPES[kind]))
    return fields


def inside_share(tile: QgsGeometry, area: QgsGeometry) -> float:
    """The share (0-1) of tile's area that lies inside area (both in the same CRS)."""
    total = tile.area()
    return tile.intersection(area).area() / total if total > 0 else 0.0


def filter_by_area(hits: list[Hit], area_wkt: str | None, min_inside: float = MIN_INSIDE) -> list[Hit]:
    """Hits mostly (>= min_inside of the tile) inside the area (EPSG:4326 WKT), re-ranked; all when None."""
    if not area_wkt:
        return list(hits)
    area = QgsGeometry.fromWkt(area_wkt)
    if area.isNull():
        raise PluginError(f"The search area gave an unusable polygon {area_wkt[:60]!r}: choose another one")
    return rerank([h for h in hits if inside_share(QgsGeometry.fromWkt(h.wkt()), area) >= min_inside - 1e-9])


def hits_from_layer(layer: QgsVectorLayer) -> list[Hit]:
    """The hits a results layer holds (a saved one too), sorted by rank."""
    hits = []
    names = layer.fields().names()
    for feature in layer.getFeatures():
        geometry = feature.geometry()
        polygon = geometry.asMultiPolygon()[0] if geometry.isMultipart() else geometry.asPolygon()
        value = {n: (None if feature[n] is None or str(feature[n]) == "NULL" else feature[n]) for n in names}
        hits.append(Hit(
            rank=int(value.get("rank") or 0), score=float(value.get("score") or 0.0),
            tile_id=int(value["tile_id"]), raster=str(value.get("raster") or ""),
            collection=str(value.get("collection") or ""), query=str(value.get("query") or ""),
            rings=tuple(tuple((p.x(), p.y()) for p in ring) for ring in polygon),
            relevance=None if value.get("relevance") is None else float(value["relevance"]),
            cosine=None if value.get("cosine") is None else float(value["cosine"])))
    return sorted(hits, key=lambda h: h.rank)


def build_results_layer(hits: list[Hit], name: str, no_match: bool = False) -> QgsVectorLayer:
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
    style_results_layer(layer, no_match)
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


def style_results_layer(layer: QgsVectorLayer, no_match: bool = False) -> None:
    """Outlines by relevance in words (strong / possible / weak; light fill, white halo) and bold '#rank'
    labels; the closest tiles of an answer with no match get one grey dashed outline instead."""
    if no_match:
        symbol = tile_symbol(NO_MATCH_COLOR, fill_alpha=0, width_mm=0.5, dashed=True)
        layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    else:
        categories = [QgsRendererCategory(cls.word, tile_symbol(cls.color), cls.label) for cls in RELEVANCE_CLASSES]
        layer.setRenderer(QgsCategorizedSymbolRenderer("match", categories))
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
    """Add layer right below anchor in anchor's group (so anchor's outlines stay on top), collapsed."""
    project.addMapLayer(layer, False)
    node = project.layerTreeRoot().findLayer(anchor.id())
    group = node.parent() if node is not None else results_group(project)
    position = group.children().index(node) + 1 if node is not None else len(group.children())
    group.insertLayer(position, layer).setExpanded(False)  # a preview's band legend is noise


def project_context() -> QgsCoordinateTransformContext:
    """The current project's coordinate transform context."""
    return QgsProject.instance().transformContext()


def wgs84() -> QgsCoordinateReferenceSystem:
    """EPSG:4326."""
    return QgsCoordinateReferenceSystem("EPSG:4326")
