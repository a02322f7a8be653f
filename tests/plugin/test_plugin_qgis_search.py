"""Searching through the dock against the live server: results layer, list, zoom, export, previews, example."""
import pytest
from harma_search.logic.params import Scope
from harma_search.results import GROUP_NAME
from plugin_testing import COLLECTION, RASTER, post_json, wait_task, wait_until
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

QUERY = "beach"  # matches tiles of the test raster (calibrated relevance; issue 27)
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


@pytest.fixture(scope="module")
def raster_bounds():
    """The test raster's extent in EPSG:4326, computed by QGIS (independent of the server)."""
    layer = QgsRasterLayer(str(RASTER), "r", "gdal")
    transform = QgsCoordinateTransform(layer.crs(), WGS84, QgsProject.instance())
    return transform.transformBoundingBox(layer.extent())


@pytest.fixture
def dock(plugin, indexed):
    dock = plugin.dock
    dock.collection_combo.setCurrentText(COLLECTION)
    dock.query_edit.setText(QUERY)
    dock.k_spin.setValue(5)
    dock.set_scope(Scope.WHOLE)
    dock.min_score_spin.setValue(dock.min_score_spin.minimum())
    dock.preview_check.setChecked(False)
    return dock


def footprint_wkt(feature: dict) -> str:
    """WKT of a GeoJSON feature's polygon (first ring is enough for the footprints here)."""
    ring = feature["geometry"]["coordinates"][0]
    return "POLYGON ((" + ", ".join(f"{x} {y}" for x, y in ring) + "))"


def search_now(plugin, button=None):
    """Click Search (or another button) and wait for the search task's outcome."""
    (button or plugin.dock.search_button).click()
    result = wait_task(plugin.controller.search_task)
    assert result.error == "", result.error
    return plugin.controller.layer


def group_layers():
    group = QgsProject.instance().layerTreeRoot().findGroup(GROUP_NAME)
    return [] if group is None else [node.layer() for node in group.findLayers()]


def test_text_search_gives_a_ranked_scored_layer_inside_the_raster(plugin, dock, raster_bounds):
    layer = search_now(plugin)
    root = QgsProject.instance().layerTreeRoot()
    assert root.children()[0].name() == GROUP_NAME
    assert layer in group_layers() and layer.name() == f"HarMA: {QUERY}"
    types = {f.name(): f.type() for f in layer.fields()}
    assert layer.providerType() == "ogr"  # a GeoPackage table, saved with the project (issue 27)
    types.pop("fid")  # the GeoPackage's key
    assert types == {"rank": QVariant.Int, "match": QVariant.String, "score": QVariant.Double,
                     "relevance": QVariant.Double, "cosine": QVariant.Double, "tile_id": QVariant.Int,
                     "raster": QVariant.String, "collection": QVariant.String, "query": QVariant.String}
    features = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    assert 1 <= len(features) <= 5
    assert [f["rank"] for f in features] == list(range(1, len(features) + 1))
    relevance = [f["relevance"] for f in features]  # ranked by the calibrated relevance (issue 27)
    assert relevance == sorted(relevance, reverse=True) and all(0.0 <= r <= 1.0 for r in relevance)
    tolerance = 1e-6
    box = QgsRectangle(raster_bounds)
    box.grow(tolerance)
    for feature in features:
        geometry = feature.geometry()
        assert geometry.isGeosValid() and geometry.area() > 0
        assert box.contains(geometry.boundingBox()), (geometry.boundingBox().toString(), box.toString())
        assert feature["raster"].endswith(RASTER.name) and feature["query"] == QUERY
    assert isinstance(layer.renderer(), QgsCategorizedSymbolRenderer)
    assert layer.renderer().classAttribute() == "match"
    assert layer.labelsEnabled() and "rank" in layer.labeling().settings().fieldName
    assert dock.results_list.count() == len(features)
    assert dock.results_list.item(0).text().startswith("#1 ")


def test_result_rows_zoom_to_their_tile(plugin, dock):
    layer = search_now(plugin)
    canvas = plugin.iface.mapCanvas()
    canvas.setExtent(QgsRectangle(0, 0, 1, 1))  # far away from the tiles
    dock.results_list.setCurrentRow(1 if dock.results_list.count() > 1 else 0)
    hit = dock.selected_hit()
    tile = next(f for f in layer.getFeatures() if f["rank"] == hit.rank).geometry()
    to_canvas = QgsCoordinateTransform(WGS84, canvas.mapSettings().destinationCrs(), QgsProject.instance())
    tile.transform(to_canvas)
    assert canvas.extent().intersects(tile.boundingBox())
    assert canvas.extent().contains(tile.centroid().asPoint())


def test_export_to_geopackage(plugin, dock, tmp_path):
    layer = search_now(plugin)
    written = plugin.controller.export(str(tmp_path / "hits.gpkg"))
    exported = QgsVectorLayer(written, "exported", "ogr")
    assert exported.isValid() and exported.featureCount() == layer.featureCount()
    assert sorted(f["rank"] for f in exported.getFeatures()) == sorted(f["rank"] for f in layer.getFeatures())
    assert "Exported" in dock.search_label.text()


def test_previews_are_georeferenced_raster_layers(plugin, dock, raster_bounds):
    dock.preview_check.setChecked(True)
    dock.preview_spin.setValue(2)
    before = set(group_layers())
    search_now(plugin)
    previews = [lay for lay in set(group_layers()) - before if isinstance(lay, QgsRasterLayer)]
    assert len(previews) == 2
    for preview in previews:
        assert preview.isValid() and preview.crs().isValid()
        extent = QgsCoordinateTransform(preview.crs(), WGS84, QgsProject.instance()).transformBoundingBox(
            preview.extent())
        assert extent.intersects(raster_bounds)


def test_search_by_example_finds_the_tile_itself_first(plugin, dock):
    search_now(plugin)
    dock.results_list.setCurrentRow(0)
    example = dock.selected_hit()
    layer = search_now(plugin, dock.similar_button)
    assert layer.name() == f"HarMA: like tile {example.tile_id}"
    top = next(f for f in layer.getFeatures() if f["rank"] == 1)
    assert top["tile_id"] == example.tile_id and top["score"] > 0.99


def test_picking_a_tile_on_the_map_searches_similar_tiles(plugin, dock):
    first = search_now(plugin)
    plugin.controller.pick_on_map()
    tool = plugin.controller.map_tool
    assert plugin.iface.mapCanvas().mapTool() is tool
    picked = next(f for f in first.getFeatures() if f["rank"] == 2 or first.featureCount() == 1)
    tool.featureIdentified.emit(QgsFeature(picked))
    result = wait_task(plugin.controller.search_task)
    assert result.error == ""
    assert plugin.controller.layer.name() == f"HarMA: like tile {picked['tile_id']}"


def mostly_inside(tile: QgsGeometry, area: QgsGeometry) -> bool:
    """At least half of the tile lies inside the area (what an area search keeps since issue 27)."""
    return tile.intersection(area).area() >= 0.5 * tile.area() - 1e-12


def test_extent_scope_keeps_hits_inside_the_map_extent(plugin, dock, raster_bounds):
    canvas = plugin.iface.mapCanvas()
    canvas.setDestinationCrs(WGS84)
    quarter = QgsRectangle(raster_bounds.xMinimum(), raster_bounds.center().y(),
                           raster_bounds.center().x(), raster_bounds.yMaximum())
    canvas.setExtent(quarter)
    area = QgsGeometry.fromRect(canvas.extent())
    dock.set_scope(Scope.EXTENT)
    layer = search_now(plugin)
    assert layer.featureCount() >= 1
    assert all(mostly_inside(f.geometry(), area) for f in layer.getFeatures())


def test_polygon_selection_scope_keeps_hits_mostly_inside_the_selection(plugin, dock, raster_bounds, live_server):
    polygons = QgsVectorLayer("Polygon?crs=EPSG:4326", "areas", "memory")
    corner = QgsRectangle(raster_bounds.xMinimum(), raster_bounds.yMinimum(),
                          raster_bounds.xMinimum() + raster_bounds.width() / 3,
                          raster_bounds.yMinimum() + raster_bounds.height() / 3)
    far = QgsRectangle(0, 0, 1, 1)
    features = []
    for rect in (corner, far):
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromRect(rect))
        features.append(feature)
    polygons.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(polygons)
    try:
        polygons.selectByIds([next(polygons.getFeatures()).id()])
        dock.set_scope(Scope.SELECTION)
        dock.area_layer_combo.setLayer(polygons)
        layer = search_now(plugin)
        selected = QgsGeometry.fromRect(corner)
        assert layer.featureCount() >= 1
        assert all(mostly_inside(f.geometry(), selected) for f in layer.getFeatures())
        # the server searches inside the polygons: k hits when k tiles lie mostly inside (not top-k, then filtered)
        every = post_json(f"{live_server}/api/v1/search", {"text": QUERY, "k": 1000, "collections": [COLLECTION],
                                                            "dedupe": False})
        inside = sum(mostly_inside(QgsGeometry.fromWkt(footprint_wkt(f)), selected) for f in every["features"])
        assert layer.featureCount() == min(dock.k_spin.value(), inside), inside
        polygons.removeSelection()
        dock.search_button.click()
        assert "select" in dock.search_label.text().lower()
    finally:
        QgsProject.instance().removeMapLayer(polygons.id())


def test_min_score_drops_less_relevant_hits(plugin, dock):
    layer = search_now(plugin)
    scores = sorted(f["relevance"] for f in layer.getFeatures())  # Min relevance is on the shown relevance
    threshold = round(scores[len(scores) // 2], 2) - 0.005
    dock.min_score_spin.setValue(threshold)
    filtered = search_now(plugin)
    kept = [f["relevance"] for f in filtered.getFeatures()]
    assert kept and all(s >= dock.min_score_spin.value() - 1e-9 for s in kept) and len(kept) <= len(scores)


def test_newest_query_wins(plugin, dock):
    before = set(group_layers())
    dock.query_edit.setText("an old query that is superseded")
    dock.search_button.click()
    stale = plugin.controller.search_task
    dock.query_edit.setText("forest")
    dock.search_button.click()
    wait_task(plugin.controller.search_task)
    wait_until(lambda: stale.result is not None, "the superseded search")
    names = [lay.name() for lay in set(group_layers()) - before]
    assert names == ["HarMA: forest"]
    assert plugin.controller.layer.name() == "HarMA: forest"


def test_cancel_drops_the_running_search(plugin, dock):
    before = set(group_layers())
    dock.search_button.click()
    task = plugin.controller.search_task
    assert dock.cancel_search_button.isEnabled()
    dock.cancel_search_button.click()
    wait_task(task)
    assert task.isCanceled()
    assert set(group_layers()) == before
    assert dock.search_label.text() == "Search cancelled"
    assert not dock.cancel_search_button.isEnabled()


def test_bad_input_is_reported_in_the_dock_without_a_task(plugin, dock):
    dock.query_edit.setText("   ")
    task = plugin.controller.search_task
    dock.search_button.click()
    assert plugin.controller.search_task is task
    assert "Query" in dock.search_label.text()
