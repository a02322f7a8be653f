"""A map tool to draw the search area: left clicks add corners, a right click (or double click) closes it."""
from __future__ import annotations

from qgis.core import QgsGeometry, QgsPointXY, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor

AREA_COLOR = QColor(30, 120, 220, 200)


class PolygonDrawTool(QgsMapTool):
    """Draws one polygon in the canvas CRS and emits it when closed."""

    polygonDrawn = pyqtSignal(object)  # QgsGeometry in the canvas CRS

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.points: list[QgsPointXY] = []
        self.band = QgsRubberBand(canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
        self.band.setStrokeColor(AREA_COLOR)
        self.band.setFillColor(QColor(30, 120, 220, 40))
        self.band.setWidth(2)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 - QGIS API name
        """Left: add a corner; right: close the polygon (three corners at least)."""
        if event.button() == Qt.MouseButton.RightButton:
            self.finish()
            return
        self.points.append(QgsPointXY(event.mapPoint()))
        self.band.setToGeometry(QgsGeometry.fromPolygonXY([self.points]), None)

    def canvasDoubleClickEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 - QGIS API name
        """A double click closes the polygon too."""
        self.finish()

    def finish(self) -> QgsGeometry | None:
        """Close the polygon and emit it; fewer than three corners start over."""
        points, self.points = self.points, []
        if len(points) < 3:
            self.band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
            return None
        geometry = QgsGeometry.fromPolygonXY([points])
        self.band.setToGeometry(geometry, None)
        self.polygonDrawn.emit(geometry)
        return geometry

    def clear(self) -> None:
        """Remove the drawn outline from the map."""
        self.band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def deactivate(self) -> None:
        """Keep the drawn outline shown when another tool takes over."""
        self.points = []
        super().deactivate()
