"""Issue 29 in real QGIS over real HTTP to a real server: compare dates from the dock (Joplin, pre EPSG:26915 vs
post EPSG:4326) and through Processing (NAIP, two dates), a search's heatmap, a land-cover map."""
import shutil
from pathlib import Path

import processing
import pytest
from conftest import load_plugin
from plugin_testing import GEOTIFF, LiveServer, index_directly, wait_task
from qgis.core import (
    QgsGraduatedSymbolRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)

MULTIDATE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "multidate").resolve()
JOPLIN = MULTIDATE / "joplin_tornado_2011"
PRE, POST = JOPLIN / "pre" / "tile_337-9136.tif", JOPLIN / "post" / "tile_31500-5137.tif"
NAIP = MULTIDATE / "naip_north_dakota_2009-2020"
NAIP_2009, NAIP_2020 = NAIP / "m_4709963_se_14_1_20090818.tif", NAIP / "m_4709963_se_14_1_20200831.tif"


@pytest.fixture(scope="module")
def dated_server(tmp_path_factory):
    """A real server that may read the multi-date imagery, with NAIP 2020 indexed as 'nd'."""
    server = LiveServer(tmp_path_factory.mktemp("maps-store"), roots=(MULTIDATE, GEOTIFF))
    try:
        server.wait_ready()
        index_directly(server.url, "nd", NAIP_2020, 128)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plugin(qgis_iface, dated_server, qgis_processing):
    instance = load_plugin(qgis_iface, dated_server.url)
    yield instance
    instance.unload()
    QgsProject.instance().clear()  # later modules start from an empty project


def _layer(path: Path) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), path.stem, "gdal")
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_compare_dates_in_the_dock_styles_the_changed_cells_over_the_imagery(plugin):
    pre, post = _layer(PRE), _layer(POST)
    assert pre.crs().authid() == "EPSG:26915" and post.crs().authid() == "EPSG:4326"
    panel = plugin.dock.maps_panel
    assert [plugin.dock.tabs.tabText(i) for i in range(plugin.dock.tabs.count())][-1] == "Maps"
    panel.before_combo.setLayer(pre)
    panel.after_combo.setLayer(post)
    panel.tile_spin.setValue(100)
    panel.change_heatmap_check.setChecked(True)
    seen = []
    panel.compare_button.click()
    task = plugin.maps.running["compare"]
    assert task is not None and not panel.compare_button.isEnabled() and panel.cancel_compare_button.isEnabled()
    task.progressChanged.connect(seen.append)
    result = wait_task(task)
    assert result.outcome.value == "success", result.error
    cells, heat = plugin.maps.layers["compare"]
    assert isinstance(cells, QgsVectorLayer) and cells.featureCount() >= 10
    assert cells.name().startswith("HarMA change: tile_337-9136 → tile_31500-5137")
    renderer = cells.renderer()
    assert isinstance(renderer, QgsGraduatedSymbolRenderer) and renderer.classAttribute() == "change"
    assert len(renderer.ranges()) == 5
    ranks = sorted(f["rank"] for f in cells.getFeatures())
    assert ranks == list(range(1, cells.featureCount() + 1))
    top = next(f for f in cells.getFeatures() if f["rank"] == 1)
    assert top["change"] == max(f["change"] for f in cells.getFeatures())
    assert cells.labelsEnabled() and "rank" in cells.labeling().settings().fieldName
    # the heatmap: one pixel per 100 m cell in the grid's CRS (the before raster's UTM zone)
    assert isinstance(heat, QgsRasterLayer) and heat.crs().authid() == "EPSG:26915"
    assert isinstance(heat.renderer(), QgsSingleBandPseudoColorRenderer)
    assert heat.rasterUnitsPerPixelX() == pytest.approx(100.0)
    tree = QgsProject.instance().layerTreeRoot()
    group = tree.findLayer(cells.id()).parent()
    assert group.name() == cells.name() and tree.children()[0] is group  # on top of the imagery
    assert [n.layer() for n in group.findLayers()] == [cells, heat]
    assert not panel.cancel_compare_button.isEnabled() and "most change" in panel.compare_label.text()
    assert seen and max(seen) == 100


def test_compare_dates_refuses_one_raster_twice(plugin):
    panel = plugin.dock.maps_panel
    layer = _layer(PRE)
    panel.before_combo.setLayer(layer)
    panel.after_combo.setLayer(layer)
    panel.compare_button.click()
    assert "same" in panel.compare_label.text()


def test_compare_dates_algorithm_on_two_naip_dates(plugin, dated_server, tmp_path):
    heat_path = str(tmp_path / "naip_change.tif")
    out = processing.runAndLoadResults("harma_search:compare_dates", {
        "BEFORE": [str(NAIP_2009)], "AFTER": [str(NAIP_2020)], "TILE_SIZE_M": 500, "TEXT": "a pond",
        "DIRECTION": 0, "SERVER_URL": dated_server.url, "OUTPUT": "TEMPORARY_OUTPUT", "HEATMAP": heat_path})
    layer = QgsProject.instance().mapLayer(out["OUTPUT"])  # loaded, and styled by its post-processor
    assert isinstance(layer, QgsVectorLayer) and layer.featureCount() == out["CELLS"] > 20
    assert isinstance(layer.renderer(), QgsGraduatedSymbolRenderer) and layer.renderer().classAttribute() == "change"
    loaded_heat = [x for x in QgsProject.instance().mapLayers().values() if x.source() == out["HEATMAP"]]
    assert loaded_heat and isinstance(loaded_heat[0].renderer(), QgsSingleBandPseudoColorRenderer)
    feature = next(f for f in layer.getFeatures() if f["rank"] == 1)
    assert feature["date_before"] == "2009-08-18" and feature["date_after"] == "2020-08-31"
    assert layer.crs().authid() == "EPSG:4326"
    heat = QgsRasterLayer(out["HEATMAP"], "heat", "gdal")
    assert heat.isValid() and heat.crs().authid() == "EPSG:26914" and heat.rasterUnitsPerPixelX() == 500
    stats = heat.dataProvider().bandStatistics(1)
    assert stats.maximumValue == pytest.approx(feature["change"], abs=1e-4)


def test_compare_dates_algorithm_reports_a_path_outside_the_allowed_folders(plugin, dated_server, tmp_path):
    from qgis.core import QgsProcessingException

    outside = tmp_path / "elsewhere.tif"
    shutil.copyfile(NAIP_2009, outside)
    with pytest.raises(QgsProcessingException, match="allowed"):
        processing.run("harma_search:compare_dates", {
            "BEFORE": [str(outside)], "AFTER": [str(NAIP_2020)], "TILE_SIZE_M": 500,
            "SERVER_URL": dated_server.url, "OUTPUT": "memory:"})


def test_heatmap_of_a_search_goes_into_the_result_group(plugin):
    dock, controller = plugin.dock, plugin.controller
    dock.collection_combo.setCurrentText("nd")
    dock.query_edit.setText("a pond")
    dock.preview_check.setChecked(False)
    dock.request_search()
    assert wait_task(controller.search_task).outcome.value == "success"
    result = controller.layer
    dock.results.heatmap_button.click()
    outcome = wait_task(plugin.maps.running["heatmap"])
    assert outcome.outcome.value == "success", outcome.error
    (heat,) = plugin.maps.layers["heatmap"]
    assert isinstance(heat.renderer(), QgsSingleBandPseudoColorRenderer)
    assert heat.renderer().classificationMin() == 0 and heat.renderer().classificationMax() == 1
    assert heat.crs().authid() == "EPSG:26914" and heat.bandCount() == 2
    tree = QgsProject.instance().layerTreeRoot()
    group = tree.findLayer(result.id()).parent()
    assert [n.layer() for n in group.findLayers()][:2] == [result, heat]  # under the result's outlines


def test_map_land_cover_in_the_dock_names_the_classes_in_the_legend(plugin):
    panel = plugin.dock.maps_panel
    panel.map_collection_combo.setCurrentText("nd")
    panel.preset_combo.setCurrentIndex(0)
    panel.classes_edit.setPlainText("water=a lake or pond\nfarmland\ngrassland")
    panel.map_button.click()
    outcome = wait_task(plugin.maps.running["map"])
    assert outcome.outcome.value == "success", outcome.error
    polygons, raster = plugin.maps.layers["map"]
    assert isinstance(raster.renderer(), QgsPalettedRasterRenderer)
    names = [label for label, _ in raster.renderer().legendSymbologyItems()]
    assert names == ["unknown", "water", "farmland", "grassland"]
    assert polygons.featureCount() >= 2 and polygons.renderer().classAttribute() == "value"
    assert {f["label"] for f in polygons.getFeatures()} <= set(names)
    assert "tiles" in panel.map_label.text()


def test_map_land_cover_algorithm_with_the_ucm_preset(plugin, dated_server, tmp_path):
    out = processing.run("harma_search:map_land_cover", {
        "COLLECTION": "nd", "PRESET": 1, "FORCED": True, "SERVER_URL": dated_server.url,
        "OUTPUT_RASTER": str(tmp_path / "ucm.tif"), "OUTPUT": "memory:classes"})
    raster = QgsRasterLayer(out["OUTPUT_RASTER"], "ucm", "gdal")  # its .qml beside it styles it
    assert raster.isValid() and isinstance(raster.renderer(), QgsPalettedRasterRenderer)
    names = [label for label, _ in raster.renderer().legendSymbologyItems()]
    assert len(names) == 22 and "agricultural" in names and "unknown" in names
    layer = out["OUTPUT"]
    assert layer.featureCount() >= 1 and "unknown" not in {f["label"] for f in layer.getFeatures()}
