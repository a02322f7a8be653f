"""Headless pictures of the plugin: the dock and a results layer rendered in an offscreen map, side by side."""
from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsMapLayer,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsRectangle,
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


def search_screenshot(server_url: str, collection: str, query: str, k: int, out_path: str,
                      map_size: QSize = QSize(900, 900)) -> str:
    """Search the server, show the hits in a dock and on a map over their rasters, save one PNG."""
    client = ServerClient(server_url)
    params = SearchParams(collection=collection, query=query, k=k)
    hits = run_search(client, params)
    if not hits:
        raise PluginError(f"'{query}' found nothing in {collection!r}: index rasters first")
    layer = build_results_layer(hits, f"HarMA: {params.label}")
    rasters = [QgsRasterLayer(path, path, "gdal") for path in dict.fromkeys(h.raster for h in hits)]
    extent = layer.extent()
    extent.grow(max(extent.width(), extent.height()) * 0.05)
    map_image = render_map([layer, *[r for r in rasters if r.isValid()]], extent, wgs84(), map_size)
    dock = HarmaDock(None, PluginSettings(server_url=server_url, default_k=k))
    dock.show_server(fetch_status(client))
    dock.collection_combo.setCurrentText(collection)
    dock.query_edit.setText(query)
    dock.show_hits(hits)
    dock.results_list.setCurrentRow(0)
    dock.set_search_message(f"{len(hits)} tiles · best score {hits[0].score:.3f}")
    dock_image = grab_widget(dock, QSize(440, map_size.height()))
    image = side_by_side(dock_image, map_image)
    if not image.save(out_path, "PNG"):
        raise PluginError(f"Could not write {out_path!r}: choose a writable .png path")
    dock.deleteLater()
    return out_path
