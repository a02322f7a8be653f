"""Headless pictures of the plugin: its docks after real searches beside the map rendered offscreen."""
from __future__ import annotations

import time
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsMapLayer,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMapCanvas, QgsMessageBar
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage, QPainter
from qgis.PyQt.QtWidgets import QApplication, QWidget

from .dock import HarmaDock
from .logic.errors import PluginError
from .result_store import store_path
from .results import wgs84
from .settings import PluginSettings


def render_map(layers: list[QgsMapLayer], extent: QgsRectangle, crs: QgsCoordinateReferenceSystem,
               size: QSize) -> QImage:
    """Render layers (first on top) over extent into an image, as a map canvas would."""
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(crs)
    settings.setOutputSize(size)
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor("white"))
    settings.setFlag(QgsMapSettings.Flag.Antialiasing, True)
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def grab_widget(widget: QWidget, size: QSize) -> QImage:
    """Lay out and paint a widget offscreen."""
    widget.resize(size)
    widget.show()
    QApplication.processEvents()
    return widget.grab().toImage()


def stacked(top: QImage, bottom: QImage) -> QImage:
    """top over bottom on one white canvas."""
    out = QImage(max(top.width(), bottom.width()), top.height() + bottom.height(), QImage.Format.Format_RGB32)
    out.fill(QColor("white"))
    painter = QPainter(out)
    painter.drawImage(0, 0, top)
    painter.drawImage(0, top.height(), bottom)
    painter.end()
    return out


def side_by_side(left: QImage, right: QImage, gap: int = 8) -> QImage:
    """Both images on one white canvas, left then right."""
    out = QImage(left.width() + gap + right.width(), max(left.height(), right.height()), QImage.Format.Format_RGB32)
    out.fill(QColor("white"))
    painter = QPainter(out)
    painter.drawImage(0, 0, left)
    painter.drawImage(left.width() + gap, 0, right)
    painter.end()
    return out


SCREEN = QSize(1366, 768)  # a common laptop screen
DOCK_WIDTH = 430


def hit_extent(layer: QgsVectorLayer, rank: int = 1, context_tiles: float = 1.5) -> QgsRectangle:
    """The extent of the hit with rank, grown by context_tiles tile widths on each side (as 'zoom to hit')."""
    feature = next(f for f in layer.getFeatures() if f["rank"] == rank)
    extent = feature.geometry().boundingBox()
    extent.grow(max(extent.width(), extent.height()) * context_tiles)
    return extent


class _Iface:
    """The little of QgisInterface the dock and its controller use, for a picture outside QGIS."""

    def __init__(self) -> None:
        self.canvas = QgsMapCanvas()
        self.canvas.setDestinationCrs(wgs84())
        self.bar = QgsMessageBar()

    def mapCanvas(self) -> QgsMapCanvas:  # noqa: N802 - QgisInterface name
        return self.canvas

    def messageBar(self) -> QgsMessageBar:  # noqa: N802 - QgisInterface name
        return self.bar

    def mainWindow(self) -> None:  # noqa: N802 - QgisInterface name
        return None


def _wait(condition, limit_s: float = 600.0) -> None:  # noqa: ANN001 - a callable
    deadline = time.monotonic() + limit_s
    while not condition():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() > deadline:
            raise PluginError("the server did not answer within 10 minutes: is it running?")


def search_screenshot(server_url: str, collection: str, queries: list[str], k: int, out_path: str,
                      screen: QSize = SCREEN, token: str = "") -> str:
    """Run the queries through the real dock and controller (one result shown, the rest in the history), then
    save the search dock over the results dock beside the map zoomed to the best hit of the last one."""
    from .controller import Controller  # the controller needs a running QGIS application

    iface = _Iface()
    settings = PluginSettings(server_url=server_url, token=token, default_k=k)
    dock = HarmaDock(iface, settings)
    controller = Controller(iface, dock, settings)
    project = QgsProject.instance()
    try:
        controller.check_server()
        _wait(lambda: not controller.busy())
        if controller.server is None:
            raise PluginError(f"no server at {server_url}: {controller.last_error}")
        dock.collection_combo.setCurrentText(collection)
        for query in queries:
            dock.query_edit.setText(query)
            dock.request_search()
            _wait(lambda: not controller.busy())
        layer = controller.layer
        if layer is None:
            raise PluginError(f"{queries[-1]!r} found nothing in {collection!r}: index rasters first")
        for path in dict.fromkeys(f["raster"] for f in layer.getFeatures()):
            raster = QgsRasterLayer(path, Path(path).stem, "gdal")
            if raster.isValid():  # below the results group, as the analyst's imagery
                project.addMapLayer(raster, False)
                project.layerTreeRoot().addLayer(raster)
        dock.results_list.setCurrentRow(0)
        root = project.layerTreeRoot()
        shown = [x for x in root.layerOrder() if root.findLayer(x.id()) and root.findLayer(x.id()).isVisible()]
        map_image = render_map(shown, hit_extent(layer), wgs84(), QSize(screen.width() - DOCK_WIDTH, screen.height()))
        search_height = screen.height() - 340  # the results dock below: its list and all its buttons
        top = grab_widget(dock, QSize(DOCK_WIDTH, search_height))
        bottom = grab_widget(dock.results_dock, QSize(DOCK_WIDTH, screen.height() - search_height))
        image = side_by_side(stacked(top, bottom), map_image, gap=0)
    finally:
        controller.shutdown()
        dock.disconnect_project()
        store = store_path(project)
        project.clear()
        store.unlink(missing_ok=True)
        dock.results_dock.deleteLater()
        dock.deleteLater()
    if not image.save(out_path, "PNG"):
        raise PluginError(f"Could not write {out_path!r}: choose a writable .png path")
    return out_path
