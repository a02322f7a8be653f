"""Headless pictures of the plugin: the dock and a results layer rendered in an offscreen map, side by side."""
from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsMapLayer,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage, QPainter
from qgis.PyQt.QtWidgets import QApplication, QWidget

from .dock import HarmaDock
from .logic.errors import PluginError
from .logic.operations import fetch_status, run_search
from .logic.params import SearchParams
from .network import ServerClient
from .results import build_results_layer, wgs84
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


def search_screenshot(server_url: str, collection: str, query: str, k: int, out_path: str,
                      screen: QSize = SCREEN, token: str = "") -> str:
    """Search the server, show the dock at screen height and the map zoomed to the best hit, save one PNG."""
    client = ServerClient(server_url, token)
    params = SearchParams(collection=collection, query=query, k=k)
    hits = run_search(client, params)
    if not hits:
        raise PluginError(f"'{query}' found nothing in {collection!r}: index rasters first")
    layer = build_results_layer(hits, f"HarMA: {params.label}")
    rasters = [QgsRasterLayer(path, path, "gdal") for path in dict.fromkeys(h.raster for h in hits)]
    map_size = QSize(screen.width() - DOCK_WIDTH, screen.height())
    map_image = render_map([layer, *[r for r in rasters if r.isValid()]], hit_extent(layer), wgs84(), map_size)
    dock = HarmaDock(None, PluginSettings(server_url=server_url, default_k=k))
    dock.show_server(fetch_status(client))
    dock.collection_combo.setCurrentText(collection)
    dock.query_edit.setText(query)
    dock.show_hits(hits, f"{len(hits)} tiles for '{params.label}' · best score {hits[0].score:.3f}")
    dock.results_list.setCurrentRow(0)
    dock.resize(QSize(DOCK_WIDTH, screen.height()))
    dock.show()
    dock.tabs.currentWidget().ensureWidgetVisible(dock.results.find_all_button)  # the feedback buttons too
    dock_image = grab_widget(dock, QSize(DOCK_WIDTH, screen.height()))
    image = side_by_side(dock_image, map_image, gap=0)
    dock.disconnect_project()
    dock.deleteLater()
    if not image.save(out_path, "PNG"):
        raise PluginError(f"Could not write {out_path!r}: choose a writable .png path")
    return out_path
