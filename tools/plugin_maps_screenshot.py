"""Save PNGs of the plugin's Maps tab beside the map after real runs (QGIS's Python, headless): compare dates,
a search's heatmap, a land-cover map.

Usage: .venv-qgis/bin/python tools/plugin_maps_screenshot.py --server http://127.0.0.1:8765 \
    --before PRE.tif --after POST.tif --tile-m 100 --collection nd --query "a pond" \
    --classes "water=a lake or pond" farmland grassland --out-dir docs
The server must read the rasters (--allowed-root) and hold the collection.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _wait(done) -> None:  # noqa: ANN001 - a callable
    from qgis.PyQt.QtWidgets import QApplication

    deadline = time.monotonic() + 600
    while not done():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() > deadline:
            raise SystemExit("the server did not answer within 10 minutes")


def _picture(dock, tab: str, layers, extent, crs, out: str) -> str:  # noqa: ANN001 - QGIS objects
    from harma_search.snapshot import DOCK_WIDTH, SCREEN, grab_widget, render_map, side_by_side
    from qgis.PyQt.QtCore import QSize

    dock.tabs.setCurrentIndex([dock.tabs.tabText(i) for i in range(dock.tabs.count())].index(tab))
    extent.grow(max(extent.width(), extent.height()) * 0.05)
    image = side_by_side(grab_widget(dock, QSize(DOCK_WIDTH, SCREEN.height())),
                         render_map(layers, extent, crs, QSize(SCREEN.width() - DOCK_WIDTH, SCREEN.height())), 0)
    image.save(out, "PNG")
    return out


def _shown(project):  # noqa: ANN001, ANN202
    root = project.layerTreeRoot()
    return [x for x in root.layerOrder() if root.findLayer(x.id()) and root.findLayer(x.id()).isVisible()]


def main(argv: list[str] | None = None) -> int:
    """Run the three views through the real dock and controllers and save one PNG each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server", default="http://127.0.0.1:8765")
    parser.add_argument("--before", nargs="+", required=True, help="before rasters (shown as imagery)")
    parser.add_argument("--after", nargs="+", required=True, help="after rasters (shown as imagery)")
    parser.add_argument("--tile-m", type=float, default=100.0)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--query", default="a pond")
    parser.add_argument("--classes", nargs="+", required=True)
    parser.add_argument("--out-dir", default=str(REPO / "docs"))
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO / "qgis_plugin"))
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    app = QgsApplication([], True)
    app.initQgis()
    from harma_search.controller import Controller
    from harma_search.dock import HarmaDock
    from harma_search.maps_controller import MapsController
    from harma_search.settings import PluginSettings
    from harma_search.snapshot import _Iface

    iface = _Iface()
    settings = PluginSettings(server_url=args.server, default_k=8)
    dock = HarmaDock(iface, settings)
    controller = Controller(iface, dock, settings)
    maps = MapsController(iface, dock, controller)
    project = QgsProject.instance()
    out = Path(args.out_dir)
    try:
        controller.check_server()
        _wait(lambda: not controller.busy())
        rasters = {}
        for path in [*args.before, *args.after]:
            layer = QgsRasterLayer(path, Path(path).stem, "gdal")
            project.addMapLayer(layer, False)
            project.layerTreeRoot().addLayer(layer)
            rasters[path] = layer
        panel = dock.maps_panel
        panel.before_combo.setLayer(rasters[args.before[0]])
        panel.after_combo.setLayer(rasters[args.after[0]])
        panel.mosaic_check.setChecked(len(args.before) > 1)
        panel.tile_spin.setValue(args.tile_m)
        for path in args.before:  # the change over the after imagery
            project.layerTreeRoot().findLayer(rasters[path].id()).setItemVisibilityChecked(False)
        panel.request_compare()
        _wait(lambda: not controller.busy())
        cells = maps.layers["compare"][0]
        crs = cells.crs()
        print(_picture(dock, "Maps", _shown(project), cells.extent(), crs, str(out / "plugin_change.png")))
        project.layerTreeRoot().findLayer(cells.id()).parent().setItemVisibilityChecked(False)
        for layer in rasters.values():
            project.layerTreeRoot().findLayer(layer.id()).setItemVisibilityChecked(False)
        dock.collection_combo.setCurrentText(args.collection)
        dock.query_edit.setText(args.query)
        dock.preview_check.setChecked(False)
        dock.request_search()
        _wait(lambda: not controller.busy())
        maps.show_heatmap()
        _wait(lambda: not controller.busy())
        heat = maps.layers["heatmap"][0]
        source = QgsRasterLayer(next(controller.layer.getFeatures())["raster"], "imagery", "gdal")
        project.addMapLayer(source, False)
        project.layerTreeRoot().addLayer(source)
        dock.results_list.setCurrentRow(0)
        print(_picture(dock, "Search", _shown(project), source.extent(), source.crs(), str(out / "plugin_heatmap.png")))
        project.layerTreeRoot().findLayer(heat.id()).parent().setItemVisibilityChecked(False)
        panel.map_collection_combo.setCurrentText(args.collection)
        panel.classes_edit.setPlainText("\n".join(args.classes))
        panel.request_map()
        _wait(lambda: not controller.busy())
        print(_picture(dock, "Maps", _shown(project), source.extent(), source.crs(),
                       str(out / "plugin_landcover.png")))
    finally:
        controller.shutdown()
        dock.disconnect_project()
        project.clear()
        app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
