"""Relevance feedback end to end: marks from the list and the map, Refine and Find all against the live server.

Needs the server side of POST /search with positive/negative (and all + min_score).
"""
from harma_search.logic.feedback import BAD, GOOD
from harma_search.marking import MARKS_LAYER_NAME
from harma_search.results import GROUP_NAME
from harma_search.tasks import Outcome
from plugin_testing import COLLECTION, post_json, wait_task
from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsVectorLayer
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
K = 10


def run(plugin, task):
    result = wait_task(task)
    assert result.outcome is Outcome.SUCCESS and result.error == "", result.error
    return plugin.controller.layer


def click_tile(plugin, tool, layer, rank: int, button) -> None:
    """Release a mouse button over the middle of the tile with rank, as a click on the canvas does."""
    canvas = plugin.iface.mapCanvas()
    features = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    visible = features[rank - 1].geometry()  # edge tiles overlap their neighbours: click where this one shows
    for better in features[:rank - 1]:
        visible = visible.difference(better.geometry())
    point = visible.pointOnSurface().asPoint()
    pixel = canvas.getCoordinateTransform().transform(point)
    event = QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonRelease, QPoint(round(pixel.x()), round(pixel.y())),
                             button, button)
    event.setMapPoint(point)  # exactly where the pixel is, whatever the size of the hidden test canvas
    tool.canvasReleaseEvent(event)


def select_rows(dock, rows) -> None:
    dock.results_list.clearSelection()
    for row in rows:
        dock.results_list.item(row).setSelected(True)


def test_marks_refine_and_find_all(plugin, indexed, live_server, tmp_path):
    dock, controller = plugin.dock, plugin.controller
    dock.collection_combo.setCurrentText(COLLECTION)
    dock.query_edit.setText("buildings and roads")
    dock.k_spin.setValue(K)
    dock.min_score_spin.setValue(dock.min_score_spin.minimum())
    dock.preview_check.setChecked(False)
    dock.search_button.click()
    first = run(plugin, controller.search_task)
    hits = list(dock.hits)
    assert len(hits) == K
    # marks from the list: two good, one bad
    select_rows(dock, [0, 1])
    dock.results.good_button.click()
    select_rows(dock, [K - 1])
    dock.results.bad_button.click()
    # marks from the map: left click good, right click bad
    canvas = plugin.iface.mapCanvas()
    canvas.setDestinationCrs(WGS84)
    canvas.setExtent(first.extent())
    dock.results.mark_on_map_button.click()
    tool = controller.feedback.tool
    assert canvas.mapTool() is tool
    click_tile(plugin, tool, first, 3, Qt.MouseButton.LeftButton)
    click_tile(plugin, tool, first, K - 2, Qt.MouseButton.RightButton)
    marks = controller.feedback.marks
    good = {hits[0].tile_id, hits[1].tile_id, hits[2].tile_id}
    bad = {hits[K - 1].tile_id, hits[K - 3].tile_id}  # row K-1 and rank K-2
    assert set(marks.positive) == good and set(marks.negative) == bad
    assert dock.results_list.item(0).text().endswith(GOOD) and dock.results_list.item(K - 1).text().endswith(BAD)
    marks_layer = controller.feedback.layer
    assert marks_layer.name() == MARKS_LAYER_NAME and marks_layer.featureCount() == 5
    assert {f["tile_id"]: f["mark"] for f in marks_layer.getFeatures()} == {
        **{t: GOOD for t in good}, **{t: BAD for t in bad}}
    # round 1
    dock.results.refine_button.click()
    refined = run(plugin, controller.search_task)
    assert refined is not first and refined.name().startswith("HarMA: refined by 3 good, 2 bad")
    ranked = [f["tile_id"] for f in sorted(refined.getFeatures(), key=lambda f: f["rank"])]
    scores = [f["score"] for f in sorted(refined.getFeatures(), key=lambda f: f["rank"])]
    assert len(ranked) == K and scores == sorted(scores, reverse=True)
    assert len(good & set(ranked[:5])) >= 2, (ranked, good)
    assert not bad & set(ranked[:3]), (ranked, bad)
    group = QgsProject.instance().layerTreeRoot().findGroup(GROUP_NAME)
    assert group.findLayers()[0].layer() is marks_layer  # marks stay on top of the new layer
    # round 2: one more good tile from the refined list (marks carry over)
    new_row = next(r for r, h in enumerate(dock.hits) if h.tile_id not in good | bad)
    select_rows(dock, [new_row])
    dock.results.good_button.click()
    assert len(marks.positive) == 4
    dock.results.refine_button.click()
    second = run(plugin, controller.search_task)
    assert second.name().startswith("HarMA: refined by 4 good, 2 bad")
    # Find all above a threshold, exported as footprints
    relevance = [f["relevance"] for f in sorted(second.getFeatures(), key=lambda f: f["rank"])]
    assert all(0.0 <= r <= 1.0 for r in relevance), relevance  # the feedback classifier's probability
    threshold = round(relevance[K // 2], 3)
    dock.results.find_all_score_spin.setValue(threshold)
    out = tmp_path / "all.gpkg"
    every = run(plugin, controller.feedback.find_all(str(out)))
    exported = QgsVectorLayer(str(out), "exported", "ogr")
    assert exported.isValid() and exported.featureCount() == every.featureCount() >= 1
    assert all(f["relevance"] >= threshold - 1e-6 for f in exported.getFeatures())
    body = {"positive": list(marks.positive), "negative": list(marks.negative), "text": "buildings and roads",
            "collections": [COLLECTION], "all": True, "min_score": threshold}
    direct = post_json(f"{live_server}/api/v1/search", body)
    assert exported.featureCount() == len(direct["features"])
    assert "Exported" in dock.search_label.text()
    # clearing forgets the marks, on the list and the map
    dock.results.clear_marks_button.click()
    assert not marks.labels and marks_layer.featureCount() == 0


def test_removed_layers_do_not_break_marking(plugin, indexed):
    dock, controller = plugin.dock, plugin.controller
    dock.collection_combo.setCurrentText(COLLECTION)
    dock.query_edit.setText("a harbour")
    dock.search_button.click()
    layer = run(plugin, controller.search_task)
    select_rows(dock, [0])
    dock.results.good_button.click()
    marks_layer = controller.feedback.layer
    QgsProject.instance().removeMapLayer(marks_layer.id())
    select_rows(dock, [1])
    dock.results.bad_button.click()  # the marks layer comes back with both marks
    assert controller.feedback.layer.featureCount() == 2
    QgsProject.instance().removeMapLayer(layer.id())
    assert controller.layer is None
    dock.results.mark_on_map_button.click()
    assert "Run a search first" in dock.results.marks_label.text()
    dock.results.clear_marks_button.click()
