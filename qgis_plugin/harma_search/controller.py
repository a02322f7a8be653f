"""Runs the dock's requests as QgsTasks and applies their outcomes on the main thread."""
from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject, QgsVectorLayer
from qgis.gui import QgsMapToolIdentifyFeature
from qgis.PyQt.QtCore import QStandardPaths
from qgis.PyQt.QtWidgets import QFileDialog

from .dock import HarmaDock
from .logic.errors import PluginError
from .logic.hits import Hit
from .logic.operations import download_previews, fetch_status, run_search
from .logic.params import IndexParams, SearchParams
from .logic.status import JobStatus, ServerStatus
from .network import ServerClient
from .results import add_preview, add_to_results, build_results_layer, export_geopackage, filter_by_area
from .settings import PluginSettings, save_settings
from .tasks import LOG_TAG, IndexTask, Outcome, ServerTask, TaskResult


def preview_folder() -> str:
    """Where tile previews are cached (outside the plugin folder, which QGIS wipes on upgrade)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)
    return str(Path(base or QgsApplication.qgisSettingsDirPath()) / "harma_search" / "previews")


class Controller:
    """Owns the running tasks (references kept), the newest-query counter and the current results layer."""

    def __init__(self, iface, dock: HarmaDock, settings: PluginSettings) -> None:
        self.iface = iface
        self.dock = dock
        self.settings = settings
        self.tasks: list[ServerTask] = []
        self.search_task: ServerTask | None = None
        self.index_task: IndexTask | None = None
        self.search_seq = 0
        self.server: ServerStatus | None = None
        self.layer: QgsVectorLayer | None = None
        self.last_error = ""
        self.closed = False
        self.map_tool: QgsMapToolIdentifyFeature | None = None
        dock.searchRequested.connect(self.search)
        dock.exampleRequested.connect(self.search)
        dock.cancelSearchRequested.connect(self.cancel_search)
        dock.retryRequested.connect(self.check_server)
        dock.settingsChanged.connect(self.apply_settings)
        dock.hitActivated.connect(self.zoom_to)
        dock.exportRequested.connect(self.export)
        dock.pickOnMapRequested.connect(self.pick_on_map)
        dock.indexRequested.connect(self.index)
        dock.cancelIndexRequested.connect(self.cancel_index)

    # ----- task bookkeeping -----
    def _start(self, task: ServerTask) -> ServerTask:
        self.tasks = [t for t in self.tasks if t.result is None] + [task]
        QgsApplication.taskManager().addTask(task)
        return task

    def busy(self) -> bool:
        """True until every task of this plugin has handed over its outcome."""
        return any(t.result is None for t in self.tasks)

    def _fail(self, message: str) -> None:
        self.last_error = message
        QgsMessageLog.logMessage(message, LOG_TAG, Qgis.MessageLevel.Warning)
        self.iface.messageBar().pushWarning("HarMA Search", message)

    def shutdown(self) -> None:
        """Cancel running tasks; their late outcomes are then ignored."""
        self.closed = True
        for task in self.tasks:
            if task.result is None:
                task.cancel()
        if self.map_tool is not None:
            self.iface.mapCanvas().unsetMapTool(self.map_tool)

    def apply_settings(self, settings: PluginSettings) -> None:
        """Keep and persist new settings from the dock."""
        self.settings = settings
        save_settings(settings)

    # ----- server status -----
    def check_server(self) -> ServerTask:
        """Ask /health in a task; the dock shows the status or a clear message."""
        self.dock.show_server_error(f"Connecting to {self.settings.server_url}…")
        return self._start(ServerTask("HarMA: server status", self.settings,
                                      lambda client, task: fetch_status(client), self._status_done))

    def _status_done(self, result: TaskResult) -> None:
        if self.closed:
            return
        if result.outcome is Outcome.SUCCESS:
            self.server = result.value
            self.dock.show_server(result.value)
        else:
            self.server = None
            self.last_error = result.error
            self.dock.show_server_error(result.error)

    # ----- search -----
    def search(self, params: SearchParams) -> ServerTask:
        """Start a search; an older running search is cancelled and its late reply dropped."""
        if self.search_task is not None and self.search_task.result is None:
            self.search_task.cancel()
        self.search_seq += 1
        seq = self.search_seq
        previews = self.dock.preview_spin.value() if self.dock.preview_check.isChecked() else 0
        folder = preview_folder()

        def work(client: ServerClient, task: ServerTask) -> tuple[list[Hit], list[tuple[Hit, str]]]:
            hits = filter_by_area(run_search(client, params), params.area_wkt)
            return hits, download_previews(client, hits, folder, previews) if previews else []

        self.dock.set_searching(True)
        self.search_task = ServerTask(f"HarMA search: {params.label}", self.settings, work,
                                      lambda result: self._search_done(seq, params, result))
        return self._start(self.search_task)

    def cancel_search(self) -> None:
        """Cancel the running search; whatever it still returns is dropped."""
        if self.search_task is not None and self.search_task.result is None:
            self.search_seq += 1
            self.search_task.cancel()
            self.dock.set_searching(False)
            self.dock.set_search_message("Search cancelled")

    def _search_done(self, seq: int, params: SearchParams, result: TaskResult) -> None:
        if self.closed:
            return
        if seq != self.search_seq:
            QgsMessageLog.logMessage(f"Dropped the stale reply of '{params.label}'", LOG_TAG, Qgis.MessageLevel.Info)
            return
        self.dock.set_searching(False)
        if result.outcome is Outcome.CANCELLED:
            self.dock.set_search_message("Search cancelled")
            return
        if result.outcome is Outcome.FAILED:
            self.dock.set_search_message(result.error)
            self._fail(result.error)
            return
        hits, previews = result.value
        if not hits:
            self.dock.show_hits([])
            self.dock.set_search_message(f"No tiles matched '{params.label}' in this scope")
            return
        project = QgsProject.instance()
        self.layer = build_results_layer(hits, f"HarMA: {params.label}")
        add_to_results(project, self.layer)
        for hit, path in reversed(previews):
            try:
                add_preview(project, path, f"HarMA preview #{hit.rank} (tile {hit.tile_id})")
            except PluginError as exc:
                self._fail(str(exc))
        self.dock.show_hits(hits)
        self.dock.set_search_message(f"{len(hits)} tiles · best score {hits[0].score:.3f}")

    # ----- results -----
    def _feature_id(self, hit: Hit) -> int | None:
        if self.layer is None:
            return None
        for feature in self.layer.getFeatures():
            if feature["rank"] == hit.rank:
                return feature.id()
        return None

    def zoom_to(self, hit: Hit) -> None:
        """Zoom the map to the hit's tile and flash it."""
        fid = self._feature_id(hit)
        if fid is not None:
            canvas = self.iface.mapCanvas()
            canvas.zoomToFeatureIds(self.layer, [fid])
            canvas.flashFeatureIds(self.layer, [fid])

    def export(self, path: str | None = None) -> str | None:
        """Export the current results layer to a GeoPackage (asks for a path when none is given)."""
        if self.layer is None:
            self.dock.set_search_message("Nothing to export yet: run a search first")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.dock, "Export results", "", "GeoPackage (*.gpkg)")
            if not path:
                return None
        try:
            written = export_geopackage(self.layer, path)
        except PluginError as exc:
            self._fail(str(exc))
            return None
        self.dock.set_search_message(f"Exported {self.layer.featureCount()} tiles to {written}")
        return written

    def pick_on_map(self) -> None:
        """Let the analyst click a result tile on the map to search for similar tiles."""
        if self.layer is None:
            self.dock.set_search_message("Run a search first, then pick one of its tiles on the map")
            return
        canvas = self.iface.mapCanvas()
        self.map_tool = QgsMapToolIdentifyFeature(canvas, self.layer)
        self.map_tool.featureIdentified.connect(self.pick_feature)
        canvas.setMapTool(self.map_tool)

    def pick_feature(self, feature) -> None:  # noqa: ANN001 - QgsFeature from the map tool
        """Select the picked tile in the list and search for similar tiles."""
        self.dock.select_hit(feature["tile_id"])
        self.dock.request_similar()

    # ----- indexing -----
    def index(self, params: IndexParams) -> IndexTask | None:
        """Start an indexing job as a task (progress in the dock and the task manager)."""
        if self.index_task is not None and self.index_task.result is None:
            self.dock.set_index_message("An indexing job is already running: cancel it or wait")
            return None
        task = IndexTask(self.settings, params, self._index_done)
        task.statusChanged.connect(self._index_progress)
        self.index_task = task
        self.dock.set_indexing(True)
        self.dock.set_index_message(f"Starting to index {len(params.paths)} raster(s)…")
        return self._start(task)

    def _index_progress(self, status: JobStatus) -> None:
        if not self.closed:
            self.dock.show_job(status)

    def cancel_index(self) -> None:
        """Cancel the running indexing task; it cancels the server job."""
        if self.index_task is not None:
            self.index_task.cancel()

    def _index_done(self, result: TaskResult) -> None:
        if self.closed:
            return
        self.dock.set_indexing(False)
        if result.outcome is Outcome.SUCCESS:
            self.dock.show_job(result.value)
            self.dock.collection_combo.setCurrentText(self.index_task.params.collection)
            self.check_server()
        else:
            self.dock.set_index_message(result.error)
            if result.outcome is Outcome.FAILED:
                self._fail(result.error)
