"""Issue 16 items 7 and 8: previews look as the encoder saw them, sit under their outlines, and the results
style leaves the imagery readable."""
import urllib.request

import pytest
from harma_search.results import GROUP_NAME
from harma_search.snapshot import render_map
from plugin_testing import COLLECTION, GEOTIFF, RASTER, index_directly, wait_task
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QImage

ATLANTA = GEOTIFF / "spacenet_atlanta_pan_0p5m.tif"  # uint16, one band


@pytest.fixture(scope="module")
def atlanta(live_server):
    """A collection of the 16-bit raster, indexed through the server's API."""
    index_directly(live_server, "atlanta", ATLANTA, 300)
    return "atlanta"


def search(plugin, collection: str, query: str, previews: int = 0):
    dock = plugin.dock
    dock.collection_combo.setCurrentText(collection)
    dock.query_edit.setText(query)
    dock.k_spin.setValue(3)
    dock.min_score_spin.setValue(dock.min_score_spin.minimum())
    dock.preview_check.setChecked(previews > 0)
    dock.preview_spin.setValue(max(previews, 1))
    dock.search_button.click()
    result = wait_task(plugin.controller.search_task)
    assert result.error == "", result.error
    return plugin.controller.layer


def group_layers():
    group = QgsProject.instance().layerTreeRoot().findGroup(GROUP_NAME)
    return [node.layer() for node in group.findLayers()]


def gray(image: QImage, x: int, y: int) -> int:
    return image.pixelColor(x, y).value()


def test_16_bit_previews_are_stretched_like_the_encoder_saw_them(plugin, atlanta, live_server):
    layer = search(plugin, atlanta, "buildings and roads", previews=1)
    preview = group_layers()[group_layers().index(layer) + 1]
    assert isinstance(preview, QgsRasterLayer) and preview.name().startswith("HarMA preview #1")
    hit = plugin.dock.hits[0]
    with urllib.request.urlopen(f"{live_server}/api/v1/tiles/{atlanta}/{hit.tile_id}.png?size=300") as reply:
        encoder = QImage.fromData(reply.read(), "PNG")
    size = QSize(encoder.width(), encoder.height())
    shown = render_map([preview], preview.extent(), preview.crs(), size)
    points = [(x, y) for x in range(2, size.width() - 2, 4) for y in range(2, size.height() - 2, 4)]
    diff = sum(abs(gray(shown, x, y) - gray(encoder, x, y)) for x, y in points) / len(points)
    brightness = sum(gray(shown, x, y) for x, y in points) / len(points)
    assert diff < 20, (diff, brightness)
    assert brightness > 50, brightness


def test_previews_lie_under_their_result_outlines(plugin, indexed):
    layer = search(plugin, COLLECTION, "houses near the sea", previews=2)
    order = group_layers()
    previews = [lay for lay in order if lay.name().startswith("HarMA preview #")][:2]
    assert len(previews) == 2
    assert order.index(layer) < order.index(previews[0]) < order.index(previews[1])
    assert QgsProject.instance().layerTreeRoot().findLayer(layer.id()).isVisible()


def test_zoomed_to_a_hit_the_imagery_stays_readable(plugin, indexed):
    layer = search(plugin, COLLECTION, "a town by the sea")
    tile = next(f for f in layer.getFeatures() if f["rank"] == 1).geometry().boundingBox()
    raster = QgsRasterLayer(str(RASTER), "imagery", "gdal")
    size = QSize(300, 300)
    plain = render_map([raster], tile, layer.crs(), size)
    styled = render_map([layer, raster], tile, layer.crs(), size)
    inner = [(x, y) for x in range(45, 255, 3) for y in range(45, 255, 3)
             if not (105 <= x <= 195 and 105 <= y <= 195)]  # inside the tile, away from the rank label
    diff = sum(abs(plain.pixelColor(x, y).red() - styled.pixelColor(x, y).red())
               + abs(plain.pixelColor(x, y).green() - styled.pixelColor(x, y).green())
               + abs(plain.pixelColor(x, y).blue() - styled.pixelColor(x, y).blue()) for x, y in inner) / len(inner) / 3
    assert diff < 20, diff
    # the outline is strong: along the tile's edge the styled map differs clearly from the imagery
    def rgb_diff(x: int, y: int) -> float:
        a, b = plain.pixelColor(x, y), styled.pixelColor(x, y)
        return (abs(a.red() - b.red()) + abs(a.green() - b.green()) + abs(a.blue() - b.blue())) / 3

    near_edges = [max(rgb_diff(x, d) for d in range(8)) for x in range(60, 240, 3)]
    near_edges += [max(rgb_diff(d, y) for d in range(8)) for y in range(60, 240, 3)]
    assert sum(near_edges) / len(near_edges) > 40, near_edges
