"""Issue 16 items 2-5 and 10: the dock shows what the server last said, once, with what to change."""
import shutil
from pathlib import Path

import pytest
from conftest import load_plugin
from harma_search.tasks import Outcome
from plugin_testing import (
    COLLECTION,
    GEOTIFF,
    RASTER,
    LiveServer,
    get_json,
    index_directly,
    wait_task,
    wait_until,
)
from qgis.core import Qgis, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt

COLORADO = GEOTIFF / "aerial_colorado_0p15m_rgb.tif"


def shown_texts(plugin) -> list[str]:
    """Every message the analyst can see at once: dock lines and the message bar."""
    dock = plugin.dock
    bar = plugin.iface.messageBar()
    levels = (Qgis.MessageLevel.Info, Qgis.MessageLevel.Warning, Qgis.MessageLevel.Critical,
              Qgis.MessageLevel.Success)
    return [dock.status_label.text(), dock.search_label.text(), dock.index_label.text(),
            dock.results.header.text(), dock.results.marks_label.text(), dock.server_label.text(),
            *[m for level in levels for m in bar.get_messages(level)]]


def index_with_dock(plugin, collection: str, raster: Path, tile_size: int):
    """Index a folder (folder field) or one raster (as a ticked project layer) through the dock."""
    dock = plugin.dock
    layer = None
    if raster.is_dir():
        dock.folder_widget.setFilePath(str(raster))
    else:
        layer = QgsRasterLayer(str(raster), "to index", "gdal")
        QgsProject.instance().addMapLayer(layer)
        dock.refresh_raster_layers()
    for i in range(dock.raster_list.count()):
        item = dock.raster_list.item(i)
        item.setCheckState(Qt.CheckState.Checked if item.text().split("  · ")[0] == "to index" else Qt.CheckState.Unchecked)
    dock.index_collection_edit.setText(collection)
    dock.tile_size_spin.setValue(tile_size)
    try:
        dock.index_button.click()
        result = wait_task(plugin.controller.index_task)
        wait_until(lambda: not plugin.controller.busy(), "the status refresh after indexing")
    finally:
        dock.folder_widget.setFilePath("")
        if layer is not None:
            QgsProject.instance().removeMapLayer(layer.id())
    return result


@pytest.fixture
def doomed_server(tmp_path):
    """A second real server (own store, one small raster indexed), to be killed by the test."""
    server = LiveServer(tmp_path / "doomed-store")
    try:
        server.wait_ready()
        index_directly(server.url, "doomed", COLORADO, 128)
        yield server
    finally:
        server.stop()


@pytest.fixture
def folder_raster(tmp_path):
    """A folder holding one copy of a small raster (rasters_in_folder needs a folder)."""
    folder = tmp_path / "rasters"
    folder.mkdir()
    shutil.copy(COLORADO, folder / COLORADO.name)
    return folder


def test_killed_server_turns_the_status_red_and_drops_stale_hits(qgis_iface, doomed_server):
    plugin = load_plugin(qgis_iface, doomed_server.url)
    try:
        dock, controller = plugin.dock, plugin.controller
        assert dock.status_label.text().startswith("Connected")
        dock.collection_combo.setCurrentText("doomed")
        dock.query_edit.setText("buildings")
        dock.search_button.click()
        assert wait_task(controller.search_task).outcome is Outcome.SUCCESS
        assert dock.results_list.count() > 0
        qgis_iface.messageBar().clear_messages()
        doomed_server.stop()
        dock.query_edit.setText("a new query")
        dock.search_button.click()
        result = wait_task(controller.search_task)
        assert result.outcome is Outcome.FAILED
        assert "not reachable" in dock.status_label.text()  # not "Connected" any more
        assert dock.results_list.count() == 0  # no hits of the old query under the new text
        assert controller.server is None and result.unavailable and dock.server_state() == "error"
        assert "a new query" in dock.results.header.text()
        # item 10: one short message with the fix, shown once
        assert len(result.error) <= 160 and "Retry" in result.error and "python -m server" in result.error
        assert sum(result.error in text for text in shown_texts(plugin)) == 1, shown_texts(plugin)
    finally:
        plugin.unload()


def test_unclear_messages_say_what_to_change(plugin, indexed):
    dock = plugin.dock
    dock.collection_combo.setCurrentText(COLLECTION)
    dock.query_edit.setText("")
    dock.search_button.click()
    text = dock.search_label.text()
    assert "Query" in text and "Find similar" in text and "not neither" not in text
    dock.query_edit.setText("green fields")
    dock.min_score_spin.setValue(0.99)
    dock.search_button.click()
    result = wait_task(plugin.controller.search_task)
    dock.min_score_spin.setValue(dock.min_score_spin.minimum())
    assert result.outcome is Outcome.SUCCESS
    text = dock.search_label.text()
    assert "relevance 0.99" in text and "best here: 0." in text and "lower Min relevance" in text, text


def test_finishing_an_index_job_keeps_the_search_collection(plugin, indexed):
    dock = plugin.dock
    dock.collection_combo.setCurrentText(COLLECTION)
    dock.query_edit.setText("houses")
    dock.search_button.click()
    wait_task(plugin.controller.search_task)
    listed = [dock.results_list.item(i).text() for i in range(dock.results_list.count())]
    result = index_with_dock(plugin, "colorado", COLORADO, 128)
    assert result.outcome is Outcome.SUCCESS, result.error
    assert dock.collection_combo.currentText() == COLLECTION
    assert [dock.results_list.item(i).text() for i in range(dock.results_list.count())] == listed
    assert "colorado" in [dock.collection_combo.itemText(i) for i in range(dock.collection_combo.count())]
    assert "choose 'colorado' under Collection" in dock.index_label.text()


def test_reindexing_with_another_tile_size_is_refused_clearly(plugin, live_server):
    first = index_with_dock(plugin, "colorado-64", COLORADO, 128)
    assert first.outcome is Outcome.SUCCESS, first.error
    jobs_before = len(get_json(f"{live_server}/api/v1/jobs")["jobs"])
    result = index_with_dock(plugin, "colorado-64", COLORADO, 64)
    assert result.outcome is Outcome.FAILED
    assert "128 px" in result.error and "64 px" in result.error and "new collection name" in result.error
    assert plugin.dock.index_label.text() == result.error
    assert len(get_json(f"{live_server}/api/v1/jobs")["jobs"]) == jobs_before  # no job was started
    again = index_with_dock(plugin, "colorado-64", COLORADO, 128)  # same size: nothing new, said so
    assert again.outcome is Outcome.SUCCESS and "already" in plugin.dock.index_label.text()


def test_a_refused_index_request_leaves_no_collection_behind(plugin, live_server, folder_raster):
    result = index_with_dock(plugin, "refused", folder_raster, 128)
    assert result.outcome is Outcome.FAILED
    assert "outside the allowed roots" in result.error
    assert "refused" not in get_json(f"{live_server}/api/v1/health")["collections"]
    assert RASTER.exists()
