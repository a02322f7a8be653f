"""Marks on the map: a layer outlining good (green) and bad (red, dashed) tiles, and a tool to mark by clicking."""
from __future__ import annotations

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsFeatureRequest,
    QgsField,
    QgsGeometry,
    QgsProject,
    QgsRendererCategory,
    QgsVectorLayer,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool
from qgis.PyQt.QtCore import Qt, QVariant, pyqtSignal

from .logic.errors import PluginError
from .logic.feedback import BAD, GOOD, Marks
from .logic.hits import Hit
from .result_store import MARKS, kept_layers, persist
from .results import add_to_results, alive, hits_from_layer, results_group, tile_symbol

MARKS_LAYER_NAME = "HarMA marks"
MARK_COLORS = {GOOD: "#1a9641", BAD: "#d7191c"}


def build_marks_layer() -> QgsVectorLayer:
    """An empty memory layer for marked tiles, outlined by mark."""
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", MARKS_LAYER_NAME, "memory")
    layer.dataProvider().addAttributes([QgsField("tile_id", QVariant.Int), QgsField("mark", QVariant.String),
                                        QgsField("collection", QVariant.String), QgsField("raster", QVariant.String)])
    layer.updateFields()
    categories = [QgsRendererCategory(mark, tile_symbol(color, fill_alpha=45, width_mm=1.1, dashed=mark == BAD),
                                      mark) for mark, color in MARK_COLORS.items()]
    layer.setRenderer(QgsCategorizedSymbolRenderer("mark", categories))
    return layer


def show_marks(project: QgsProject, layer: QgsVectorLayer | None, marks: Marks) -> QgsVectorLayer:
    """Fill the marks layer with the current marks (creating it on top of the results group when needed)."""
    if not alive(layer):
        layer = build_marks_layer()
        try:  # kept in the project's GeoPackage, so the marks come back with the project
            layer = persist(layer, MARKS, project)
        except PluginError:
            pass  # an unwritable folder: the marks still work for this session
        add_to_results(project, layer)
    else:  # keep it above newer results layers
        group = results_group(project)
        node = group.findLayer(layer.id())
        if node is not None and group.children().index(node) != 0:
            group.insertChildNode(0, node.clone())
            group.removeChildNode(node)
    provider = layer.dataProvider()
    provider.deleteFeatures([f.id() for f in layer.getFeatures()])
    features = []
    for tile_id, mark in marks.labels.items():
        feature = QgsFeature(layer.fields())
        hit = marks.hits[tile_id]
        for name, value in (("tile_id", tile_id), ("mark", mark), ("collection", hit.collection),
                            ("raster", hit.raster)):  # by name: a GeoPackage table adds its fid first
            feature.setAttribute(name, value)
        feature.setGeometry(QgsGeometry.fromWkt(marks.hits[tile_id].wkt()))
        features.append(feature)
    provider.addFeatures(features)
    layer.updateExtents()
    layer.triggerRepaint()
    return layer


def saved_marks(project: QgsProject) -> tuple[QgsVectorLayer | None, Marks]:
    """The marks layer of a reopened project and the marks it holds."""
    layers = kept_layers(project, MARKS)
    marks = Marks()
    if not layers:
        return None, marks
    layer = layers[0]
    labels = {int(f["tile_id"]): str(f["mark"]) for f in layer.getFeatures()}
    for hit in hits_from_layer(layer):
        if labels.get(hit.tile_id) in (GOOD, BAD) and hit.collection:
            marks.toggle(Hit(0, 0.0, hit.tile_id, hit.raster, hit.collection, "", hit.rings), labels[hit.tile_id])
    return layer, marks


class MarkTool(QgsMapTool):
    """Left click marks the clicked result tile good, right click bad (clicking again unmarks)."""

    tileClicked = pyqtSignal(int, str)  # tile_id, GOOD or BAD

    def __init__(self, canvas: QgsMapCanvas, layer: QgsVectorLayer) -> None:
        super().__init__(canvas)
        self.layer = layer
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def tile_at(self, event: QgsMapMouseEvent) -> int | None:
        """The best-ranked tile of the results layer under the mouse, if any."""
        point = self.toLayerCoordinates(self.layer, event.mapPoint())
        here = QgsGeometry.fromPointXY(point)
        request = QgsFeatureRequest().setFilterRect(here.boundingBox().buffered(1e-9))
        under = [f for f in self.layer.getFeatures(request) if f.geometry().contains(here)]
        return min(under, key=lambda f: f["rank"])["tile_id"] if under else None

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 - QGIS API name
        """Emit tileClicked for the tile under the click."""
        tile_id = self.tile_at(event)
        if tile_id is not None:
            self.tileClicked.emit(int(tile_id), BAD if event.button() == Qt.MouseButton.RightButton else GOOD)
