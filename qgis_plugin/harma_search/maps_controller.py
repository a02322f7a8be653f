"""Runs the Maps tab's comparisons and class maps and the results dock's 'Heatmap' as QgsTasks (references
kept by the main controller, newest run wins) and adds their layers on the main thread."""
from __future__ import annotations

import uuid
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsRasterLayer, QgsVectorLayer

from .change_layers import build_change_layer, style_change_heatmap, write_change_heatmap
from .controller import preview_folder
from .dock import HarmaDock, scrolled
from .history import label_of, request_of, result_group, zoom_with_context
from .logic.change import ChangeParams
from .logic.errors import PluginError
from .logic.maps import MapParams, fetch_change, fetch_heatmaps, fetch_map
from .map_layers import add_to_group, class_polygons_layer, class_raster_layer, heatmap_layer, output_group
from .maps_panel import MapsPanel
from .network import LOG_TAG, ServerClient
from .results import add_below
from .tasks import Outcome, ServerTask, TaskResult


def cache_folder(kind: str) -> str:
    """Where downloaded or written rasters of one kind live (beside the previews, outside the plugin folder)."""
    return str(Path(preview_folder()).parent / kind)


class MapsController:
    """The Maps tab and the Heatmap button: one running task of each kind, a newer one cancels the older."""

    def __init__(self, iface, dock: HarmaDock, controller) -> None:  # noqa: ANN001 - QgisInterface, Controller
        self.iface = iface
        self.dock = dock
        self.controller = controller
        self.panel = MapsPanel()
        self.panel.share_collections(dock.collection_combo)
        dock.maps_panel = self.panel
        dock.tabs.addTab(scrolled(self.panel), "Maps")
        self.seq = {"compare": 0, "map": 0, "heatmap": 0}
        self.running: dict[str, ServerTask | None] = {"compare": None, "map": None, "heatmap": None}
        self.layers: dict[str, list] = {}  # kind -> the layers its last run added
        self.last_error = ""
        self.panel.compareRequested.connect(self.compare)
        self.panel.cancelCompareRequested.connect(lambda: self.cancel("compare"))
        self.panel.mapRequested.connect(self.land_cover)
        self.panel.cancelMapRequested.connect(lambda: self.cancel("map"))
        dock.results.heatmap_button.clicked.connect(self.show_heatmap)

    # ----- bookkeeping -----
    def _run(self, kind: str, description: str, work, on_value, bar=None) -> ServerTask:  # noqa: ANN001
        """Start work as a task (cancelling an older one of the same kind); on_value(value) on success."""
        self.cancel(kind, quiet=True)
        self.seq[kind] += 1
        seq = self.seq[kind]
        task = ServerTask(description, self.controller.settings, work,
                          lambda result: self._done(kind, seq, result, on_value))
        if bar is not None:
            task.progressChanged.connect(lambda value: bar.setValue(int(value)))
        self.running[kind] = task
        return self.controller._start(task)  # keeps the reference; shutdown cancels it

    def cancel(self, kind: str, quiet: bool = False) -> None:
        """Cancel the running task of kind; its late outcome is dropped."""
        task = self.running.get(kind)
        if task is not None and task.result is None:
            self.seq[kind] += 1
            task.cancel()
            if not quiet:
                self._show(kind, "Cancelled", running=False)

    def _show(self, kind: str, text: str, running: bool | None = None) -> None:
        if kind == "compare":
            self.panel.set_compare_message(text)
            if running is not None:
                self.panel.set_comparing(running)
        elif kind == "map":
            self.panel.set_map_message(text)
            if running is not None:
                self.panel.set_mapping(running)
        elif text:
            self.dock.results.header.setText(text)

    def _done(self, kind: str, seq: int, result: TaskResult, on_value) -> None:  # noqa: ANN001
        if self.controller.closed or seq != self.seq[kind]:
            return
        self.running[kind] = None
        if result.outcome is Outcome.CANCELLED:
            self._show(kind, "Cancelled", running=False)
            return
        if result.outcome is Outcome.FAILED:
            self.last_error = result.error
            QgsMessageLog.logMessage(result.error, LOG_TAG, Qgis.MessageLevel.Warning)
            self._show(kind, result.error, running=False)
            if kind == "heatmap":
                self.iface.messageBar().pushWarning("HarMA Search", result.error)
            return
        try:
            message = on_value(result.value)
        except PluginError as exc:
            self.last_error = message = str(exc)
        self._show(kind, message, running=False)

    # ----- compare dates -----
    def compare(self, params: ChangeParams, heatmap: bool = True) -> ServerTask:
        """Ask the server for the changed cells; the layer (and heatmap) go over the imagery."""
        folder = cache_folder("change")

        def work(client: ServerClient, task: ServerTask):  # noqa: ANN202
            task.setProgress(5)
            answer = fetch_change(client, params)
            task.setProgress(80)
            path = ""
            if heatmap and answer.cells:
                Path(folder).mkdir(parents=True, exist_ok=True)
                path = write_change_heatmap(answer, str(Path(folder) / f"{uuid.uuid4().hex}.tif"))
            task.setProgress(100)
            return answer, path

        self._show("compare", f"Comparing {params.label}…", running=True)
        return self._run("compare", f"HarMA compare dates: {params.label}", work,
                         lambda value: self._add_change(params, *value), self.panel.compare_progress)

    def _add_change(self, params: ChangeParams, answer, heat_path: str) -> str:  # noqa: ANN001
        if not answer.cells:
            return "No cell is covered by both dates: choose rasters of one place or a smaller cell size"
        before, after = answer.dates
        project = QgsProject.instance()
        name = f"HarMA change: {params.label} ({before} → {after})"
        layer = build_change_layer(answer, name)
        group = output_group(project, name)
        add_to_group(project, group, layer)
        added = [layer]
        if heat_path:
            heat = QgsRasterLayer(heat_path, "HarMA change heatmap", "gdal")
            if heat.isValid():
                style_change_heatmap(heat)
                add_to_group(project, group, heat, expanded=False)
                group.findLayer(heat.id()).setItemVisibilityChecked(False)  # the cells show the same colours
                added.append(heat)
        self.layers["compare"] = added
        zoom_with_context(self.iface.mapCanvas(), layer)
        top = answer.cells[0]
        return (f"{len(answer.cells)} cells of {answer.cell_size:g} m compared; most change: cell "
                f"{top.value('cell')} (change {top.value('change'):.2f})")

    # ----- heatmap of a search -----
    def show_heatmap(self, layer: QgsVectorLayer | None = None) -> ServerTask | None:
        """Ask the shown result's search again as heatmaps; they go into the result's group, under its layer."""
        layer = layer if isinstance(layer, QgsVectorLayer) else self.controller.layer
        if layer is None:
            self.dock.results.header.setText("Run a search first, then press Heatmap")
            return None
        body, folder, label = request_of(layer), cache_folder("heatmaps"), label_of(layer)

        def work(client: ServerClient, task: ServerTask):  # noqa: ANN202
            task.setProgress(5)
            return fetch_heatmaps(client, body, folder,
                                  progress=lambda n, total: task.setProgress(10 + 90 * n / total))

        return self._run("heatmap", f"HarMA heatmap: {label}", work,
                         lambda files: self._add_heatmaps(layer, label, files))

    def _add_heatmaps(self, result: QgsVectorLayer, label: str, files) -> str:  # noqa: ANN001
        project = QgsProject.instance()
        if project.mapLayer(result.id()) is None:
            return "The result was removed before its heatmap came"
        added = []
        for item in reversed(files):
            heat = heatmap_layer(item, f"HarMA heatmap: {label} · {item.name}")
            add_below(project, heat, result)
            added.append(heat)
        group = result_group(result)
        if group is not None:
            group.setItemVisibilityChecked(True)
        self.layers["heatmap"] = added
        return f"Heatmap of '{label}': {len(files)} raster(s) in the result's group"

    # ----- land cover -----
    def land_cover(self, params: MapParams) -> ServerTask:
        """Ask the server for a class map; the class rasters and polygons go over the imagery."""
        folder = cache_folder("maps")

        def work(client: ServerClient, task: ServerTask):  # noqa: ANN202
            task.setProgress(5)
            return fetch_map(client, params, folder, progress=lambda n, total: task.setProgress(50 + 50 * n / total))

        self._show("map", f"Mapping {params.label}…", running=True)
        return self._run("map", f"HarMA map: {params.label}", work, lambda answer: self._add_map(params, answer),
                         self.panel.map_progress)

    def _add_map(self, params: MapParams, answer) -> str:  # noqa: ANN001
        project = QgsProject.instance()
        name = f"HarMA map: {params.label}"
        group = output_group(project, name)
        polygons = class_polygons_layer(answer, f"HarMA classes: {params.label}")
        add_to_group(project, group, polygons)
        added = [polygons]
        for number, path in enumerate(answer.paths, start=1):
            suffix = f" ({number})" if len(answer.paths) > 1 else ""
            raster = class_raster_layer(path, f"{name}{suffix}", answer.legend)
            add_to_group(project, group, raster)
            added.append(raster)
        self.layers["map"] = added
        if polygons.featureCount():
            zoom_with_context(self.iface.mapCanvas(), polygons)
        run = answer.run
        return (f"{run.get('tiles', '?')} tiles in {len(answer.legend) - 1} classes, "
                f"{run.get('unknown_tiles', 0)} unknown")
