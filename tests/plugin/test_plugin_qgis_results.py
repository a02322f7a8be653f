"""Issue 27 in a real QGIS over real HTTP: relevance in words, no_match, one result at a time with a history,
results and marks saved with the project, exports with style and relative paths, area scopes."""
import sqlite3
from pathlib import Path

import pytest
from harma_search.history import result_group, results
from harma_search.logic.params import Scope
from harma_search.result_store import unsaved_folder
from plugin_testing import COLLECTION, GEOTIFF, RASTER, wait_task
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
MATCHING = ("beach", "ocean", "forest")  # queries with strong matches in the test raster
NOTHING = "clouds"  # the server answers no_match for it


@pytest.fixture
def dock(plugin, indexed):
    QgsProject.instance().clear()
    dock = plugin.dock
    dock.collection_combo.setCurrentText(COLLECTION)
    dock.k_spin.setValue(8)
    dock.set_scope(Scope.WHOLE)
    dock.min_score_spin.setValue(dock.min_score_spin.minimum())
    dock.preview_check.setChecked(False)
    yield dock
    QgsProject.instance().clear()


@pytest.fixture(scope="module")
def raster_bounds():
    layer = QgsRasterLayer(str(RASTER), "r", "gdal")
    return QgsCoordinateTransform(layer.crs(), WGS84, QgsProject.instance()).transformBoundingBox(layer.extent())


def search(plugin, query: str, button=None):
    plugin.dock.query_edit.setText(query)
    (button or plugin.dock.search_button).click()
    result = wait_task(plugin.controller.search_task)
    assert result.error == "", result.error
    return plugin.controller.layer


def rows(dock) -> list[str]:
    return [dock.results_list.item(i).text() for i in range(dock.results_list.count())]


def visible(layer) -> bool:
    return QgsProject.instance().layerTreeRoot().findLayer(layer.id()).isVisible()


def test_list_style_and_filter_speak_relevance_in_words(plugin, dock):
    layer = search(plugin, "beach")
    words = [f["match"] for f in sorted(layer.getFeatures(), key=lambda f: f["rank"])]
    assert {"strong", "possible", "weak"} <= set(words), words
    for text, feature in zip(rows(dock), sorted(layer.getFeatures(), key=lambda f: f["rank"])):
        assert feature["match"] in text and f"{feature['relevance']:.2f}" in text
        assert f"{feature['cosine']:.3f}" not in text and f"{feature['score']:.3f}" not in text  # cosine: attributes
    assert layer.fields().indexOf("cosine") >= 0
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "match"
    legend = [c.label() for c in renderer.categories()]
    assert [label.split()[0] for label in legend[:3]] == ["strong", "possible", "weak"]
    assert "strong" in dock.results.header.text()
    dock.min_score_spin.setValue(0.5)  # Min relevance: only the strong matches
    strong = search(plugin, "beach")
    assert strong.featureCount() == words.count("strong")
    assert all(f["relevance"] >= 0.5 and f["match"] == "strong" for f in strong.getFeatures())


def test_an_answer_with_no_match_says_so_and_greys_the_closest_tiles(plugin, dock):
    layer = search(plugin, NOTHING)
    header = dock.results.header.text()
    assert f"No tiles look like '{NOTHING}'" in header and "relevance" in header  # with the server's reason
    assert dock.results_list.count() == layer.featureCount() > 0  # the closest tiles are still listed
    assert all(dock.results_list.item(i).foreground().color().name() == "#8c8c8c"
               for i in range(dock.results_list.count()))
    assert isinstance(layer.renderer(), QgsSingleSymbolRenderer)  # one grey outline, not styled as hits
    assert "No results" not in dock.search_label.text()


def test_a_new_search_hides_the_last_result_and_zooms_to_its_hits(plugin, dock):
    dock.preview_check.setChecked(True)
    dock.preview_spin.setValue(2)
    canvas = plugin.iface.mapCanvas()
    canvas.setDestinationCrs(WGS84)
    first = search(plugin, "beach")
    canvas.setExtent(QgsRectangle(0, 0, 1, 1))  # far away from the tiles
    second = search(plugin, "forest")
    first_group, second_group = result_group(first), result_group(second)
    assert QgsProject.instance().mapLayer(first.id()) is first  # hidden, not deleted
    assert not first_group.isVisible() and all(not node.isVisible() for node in first_group.findLayers())
    assert second_group.isVisible() and visible(second)
    previews = [node for node in second_group.findLayers() if isinstance(node.layer(), QgsRasterLayer)]
    assert len(previews) == 2 and all(not node.isExpanded() for node in previews)  # legends collapsed
    extent = canvas.extent()
    assert extent.contains(second.extent())
    assert extent.width() > second.extent().width() * 1.5  # with imagery around the hits
    combo = dock.results.history_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["2. forest", "1. beach"]
    combo.setCurrentIndex(1)
    combo.activated.emit(1)  # the analyst brings the first result back
    assert visible(first) and not visible(second) and plugin.controller.layer is first
    assert rows(dock)[0].startswith("#1 ") and "beach" in dock.results.header.text()


def test_results_and_marks_come_back_with_a_saved_project(plugin, dock, tmp_path):
    first = search(plugin, "beach")
    search(plugin, "ocean")
    assert Path(first.source().split("|")[0]).parent == unsaved_folder()  # an unsaved project: profile folder
    dock.results_list.setCurrentRow(0)
    dock.results_list.item(0).setSelected(True)
    dock.results.good_button.click()
    project = QgsProject.instance()
    path = tmp_path / "survey.qgz"
    assert project.write(str(path))
    store = tmp_path / "survey_harma.gpkg"
    assert store.is_file()
    with sqlite3.connect(store) as db:
        tables = {row[0] for row in db.execute("SELECT table_name FROM gpkg_contents")} - {"layer_styles"}
        styled = {row[0] for row in db.execute("SELECT f_table_name FROM layer_styles")}
    assert len(tables) == 3 and tables <= styled  # two results and the marks, each with its style
    counts = {layer.name(): layer.featureCount() for layer in results()}
    project.clear()
    assert dock.results_list.count() == 0 and dock.results.history_combo.count() == 0
    assert project.read(str(path))
    back = results()
    assert {layer.name(): layer.featureCount() for layer in back} == counts
    assert all(layer.providerType() == "ogr" and layer.isValid() for layer in back)
    assert all(isinstance(layer.renderer(), QgsCategorizedSymbolRenderer) for layer in back)
    combo = dock.results.history_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["2. ocean", "1. beach"]
    assert dock.results_list.count() == counts["HarMA: ocean"] and "ocean" in dock.results.header.text()
    assert plugin.controller.feedback.marks.positive and "1 good" in dock.results.marks_label.text()
    marks = plugin.controller.feedback.layer
    assert marks is not None and marks.featureCount() == 1 and marks.providerType() == "ogr"


def test_exports_carry_the_style_and_relative_raster_paths(plugin, dock, tmp_path):
    search(plugin, "beach")
    written = plugin.controller.export(str(tmp_path / "beach.gpkg"))
    exported = QgsVectorLayer(written, "exported", "ogr")
    assert exported.isValid() and exported.featureCount() == plugin.controller.layer.featureCount()
    assert {f["raster"] for f in exported.getFeatures()} == {RASTER.relative_to(GEOTIFF).as_posix()}
    assert isinstance(exported.renderer(), QgsCategorizedSymbolRenderer)  # the default style in layer_styles
    with sqlite3.connect(written) as db:
        assert db.execute("SELECT COUNT(*) FROM layer_styles").fetchone()[0] == 1


def polygon_layer(name: str, rect: QgsRectangle) -> QgsVectorLayer:
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", name, "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(rect))
    layer.dataProvider().addFeatures([feature])
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_the_polygon_layer_list_offers_project_polygons_not_results(plugin, dock, raster_bounds):
    fields = polygon_layer("fields", raster_bounds)
    search(plugin, "beach")
    search(plugin, "forest")
    combo = dock.area_layer_combo
    offered = [combo.layer(i) for i in range(combo.count())]
    assert fields in offered and not [x for x in offered if x is not None and x.name().startswith("HarMA")]
    assert combo.currentLayer() is fields


def test_a_polygon_drawn_on_the_map_scopes_the_search(plugin, dock, raster_bounds):
    canvas = plugin.iface.mapCanvas()
    canvas.setDestinationCrs(WGS84)
    canvas.setExtent(raster_bounds)
    canvas.refresh()
    dock.set_scope(Scope.DRAWN)
    dock.draw_button.click()
    tool = plugin.controller.area_tool
    assert canvas.mapTool() is tool
    b = raster_bounds
    corners = [(b.xMinimum(), b.yMinimum()), (b.center().x(), b.yMinimum()), (b.center().x(), b.center().y()),
               (b.xMinimum(), b.center().y())]  # the raster's lower-left quarter, clicked on the map
    to_pixels = canvas.getCoordinateTransform()
    for x, y in corners:
        pixel = to_pixels.transform(QgsPointXY(x, y))
        tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonRelease,
                                                 QPoint(round(pixel.x()), round(pixel.y())),
                                                 Qt.MouseButton.LeftButton))
    tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonRelease, QPoint(0, 0),
                                             Qt.MouseButton.RightButton))
    drawn = QgsGeometry(dock.drawn[0])
    assert abs(drawn.area() - b.width() * b.height() / 4) < 0.05 * drawn.area()
    layer = search(plugin, "beach")
    assert layer.featureCount() >= 1
    for feature in layer.getFeatures():
        tile = feature.geometry()
        assert tile.intersection(drawn).area() >= 0.5 * tile.area() - 1e-12

