"""Issue 16 items 1 and 7a: the dock fits a 768 px screen, and its raster list follows the project; issue 27:
at 1366x768 nothing scrolls sideways and the results (own dock) stay in view."""
import harma_search
import pytest
from plugin_testing import GEOTIFF, RASTER
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtWidgets import QApplication, QMainWindow, QScrollArea, QWidget

SCREEN_HEIGHT = 768


@pytest.fixture
def loaded(qgis_iface):
    plugin = harma_search.classFactory(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()


def test_dock_minimum_height_fits_a_768_px_screen(loaded):
    dock = loaded.dock
    assert dock.minimumSizeHint().height() <= SCREEN_HEIGHT, dock.minimumSizeHint()
    # with room to spare for QGIS's own toolbars and status bar
    assert dock.minimumSizeHint().height() <= SCREEN_HEIGHT // 2, dock.minimumSizeHint()


def test_every_control_is_reachable_in_a_small_dock(loaded):
    dock = loaded.dock
    dock.setFloating(True)
    dock.resize(QSize(420, 480))
    dock.show()
    tabs = dock.tabs
    assert [tabs.tabText(i) for i in range(tabs.count())] == ["Search", "Index", "Server", "Maps"]
    maps = dock.maps_panel
    wanted = {"Search": [dock.search_button, dock.cancel_search_button, dock.draw_button],
              "Index": [dock.tile_size_spin, dock.index_button, dock.cancel_index_button, dock.index_progress],
              "Server": [dock.url_edit, dock.retry_button],
              "Maps": [maps.compare_button, maps.cancel_compare_button, maps.map_button, maps.cancel_map_button]}
    for index in range(tabs.count()):
        tabs.setCurrentIndex(index)
        area = tabs.currentWidget()
        assert isinstance(area, QScrollArea)
        for widget in wanted[tabs.tabText(index)]:
            area.ensureWidgetVisible(widget)
            loaded.iface.mainWindow().repaint()
            top_left = widget.mapTo(area.viewport(), widget.rect().topLeft())
            assert area.viewport().rect().contains(top_left), (tabs.tabText(index), widget)
    assert dock.status_label.isVisible()  # the server state stays in view above the tabs


def test_raster_list_follows_layers_added_to_and_removed_from_the_project(loaded):
    dock = loaded.dock
    project = QgsProject.instance()
    first = QgsRasterLayer(str(RASTER), "first raster", "gdal")
    second = QgsRasterLayer(str(GEOTIFF / "aerial_colorado_0p15m_rgb.tif"), "second raster", "gdal")
    project.addMapLayer(first)
    names = dock.index_panel.layer_names()  # without the 'indexed in' / 'outside' marks
    assert "first raster" in names  # no Refresh press needed
    dock.raster_list.item(names.index("first raster")).setCheckState(Qt.CheckState.Checked)
    project.addMapLayer(second)
    rows = dict(zip(dock.index_panel.layer_names(), (dock.raster_list.item(i) for i in range(dock.raster_list.count()))))
    assert rows["first raster"].checkState() == Qt.CheckState.Checked  # ticks survive the refresh
    assert rows["second raster"].checkState() == Qt.CheckState.Unchecked
    project.removeMapLayer(first.id())
    names = dock.index_panel.layer_names()
    assert "first raster" not in names and "second raster" in names
    project.removeMapLayer(second.id())


def test_at_1366x768_nothing_scrolls_sideways_and_the_results_stay_in_view(loaded):
    dock = loaded.dock
    window = QMainWindow()
    window.setCentralWidget(QWidget())  # the map canvas
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock.results_dock)  # below, as the plugin does
    window.resize(1366, 768)
    window.show()
    QApplication.processEvents()
    try:
        for index in range(dock.tabs.count()):
            dock.tabs.setCurrentIndex(index)
            QApplication.processEvents()
            area = dock.tabs.currentWidget()
            assert area.horizontalScrollBar().maximum() == 0, dock.tabs.tabText(index)
            # nothing cut off on the right instead: the tab's content fits the dock's default width
            assert area.widget().minimumSizeHint().width() <= area.viewport().width(), dock.tabs.tabText(index)
        panel = dock.results
        assert dock.results_dock.isVisible() and panel.list.height() >= 90
        for widget in (panel.history_combo, panel.list, panel.good_button, panel.bad_button, panel.refine_button,
                       panel.find_all_button, panel.export_button, panel.mark_on_map_button):
            corner = widget.mapTo(window, widget.rect().bottomRight())
            assert widget.isVisible() and window.rect().contains(corner), widget
    finally:
        for widget in (dock.results_dock, dock):
            window.removeDockWidget(widget)
            widget.setParent(loaded.iface.mainWindow())  # the window must not delete the plugin's docks
        window.hide()


def test_the_dock_shows_the_server_folders_and_marks_indexed_and_outside_rasters(loaded):
    from harma_search.logic.status import ServerStatus

    dock = loaded.dock
    project = QgsProject.instance()
    layer = QgsRasterLayer(str(RASTER), "grenada", "gdal")
    project.addMapLayer(layer)
    try:
        status = ServerStatus("ok", collections=("grenada",), allowed_roots=(str(GEOTIFF),),
                              models={"grenada": "harma-lite"}, indexed={str(RASTER): ("grenada",)})
        dock.show_server(status)
        assert str(GEOTIFF) in dock.index_panel.roots_label.text()
        assert "indexed in grenada" in dock.raster_list.item(0).text()
        dock.collection_combo.setCurrentText("grenada")
        assert dock.model_label.text() == "model: harma-lite"
        dock.show_server(ServerStatus("ok", allowed_roots=("/somewhere/else",)))
        assert "outside the server's folders" in dock.raster_list.item(0).text()
    finally:
        project.removeMapLayer(layer.id())
