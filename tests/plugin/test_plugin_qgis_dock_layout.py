"""Issue 16 items 1 and 7a: the dock fits a 768 px screen, and its raster list follows the project."""
import harma_search
import pytest
from plugin_testing import GEOTIFF, RASTER
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtWidgets import QScrollArea

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
    assert [tabs.tabText(i) for i in range(tabs.count())] == ["Search", "Index", "Server"]
    wanted = {"Search": [dock.search_button, dock.results.refine_button, dock.results.find_all_button],
              "Index": [dock.tile_size_spin, dock.index_button, dock.cancel_index_button, dock.index_progress],
              "Server": [dock.url_edit, dock.retry_button]}
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
    names = [dock.raster_list.item(i).text() for i in range(dock.raster_list.count())]
    assert "first raster" in names  # no Refresh press needed
    dock.raster_list.item(names.index("first raster")).setCheckState(Qt.CheckState.Checked)
    project.addMapLayer(second)
    rows = {dock.raster_list.item(i).text(): dock.raster_list.item(i) for i in range(dock.raster_list.count())}
    assert rows["first raster"].checkState() == Qt.CheckState.Checked  # ticks survive the refresh
    assert rows["second raster"].checkState() == Qt.CheckState.Unchecked
    project.removeMapLayer(first.id())
    names = [dock.raster_list.item(i).text() for i in range(dock.raster_list.count())]
    assert "first raster" not in names and "second raster" in names
    project.removeMapLayer(second.id())
