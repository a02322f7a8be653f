"""Runs the dock's requests as QgsTasks and applies their outcomes on the main thread."""
from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject, QgsVectorLayer
from qgis.gui import QgsMapToolIdentifyFeature
from qgis.PyQt.QtCore import QStandardPaths
from qgis.PyQt.QtWidgets import QFileDialog

from .area_tool import PolygonDrawTool
from .dock import HarmaDock
from .feedback import FeedbackController
from .history import (
    add_result,
    label_of,
    no_match_of,
    remember_request,
    results,
    show_only,
    shown_result,
    zoom_with_context,
)
from .index_controller import IndexingMixin
from .logic.errors import PluginError
from .logic.feedback import FeedbackParams
from .logic.hits import Hit, SearchAnswer
from .logic.operations import best_score, download_previews, fetch_status, no_match_message, search_answer
from .logic.params import SearchParams
from .logic.status import JobStatus, ServerStatus
from .network import LOG_TAG, ServerClient
from .previews import add_preview
from .result_store import KIND, RESULT, export_geopackage, persist, rewrite_source
from .results import alive, build_results_layer, filter_by_area, hits_from_layer
from .settings import PluginSettings, save_settings
from .tasks import IndexTask, Outcome, ServerTask, TaskResult

Query = SearchParams | FeedbackParams


def preview_folder() -> str:
    """Where tile previews are cached (outside the plugin folder, which QGIS wipes on upgrade)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)
    return str(Path(base or QgsApplication.qgisSettingsDirPath()) / "harma_search" / "previews")


class Controller(IndexingMixin):
    """Owns the running tasks (references kept), the newest-query counter and the current results layer."""

    def __init__(self, iface, dock: HarmaDock, settings: PluginSettings) -> None:
        self.iface = iface
        self.dock = dock
        self.settings = settings
        self.tasks: list[ServerTask] = []
        self.search_task: ServerTask | None = None
        self.index_task: IndexTask | None = None
        self.search_seq = 0
        self.status_task: ServerTask | None = None
        self.server: ServerStatus | None = None
        self._layer: QgsVectorLayer | None = None
        self.last_error = ""
        self.closed = False
        self.map_tool: QgsMapToolIdentifyFeature | None = None
        self.area_tool: PolygonDrawTool | None = None
        self.last_job: JobStatus | None = None
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
        dock.results.resultChosen.connect(self.show_result)
        dock.drawAreaRequested.connect(self.draw_area)
        self.feedback = FeedbackController(self)
        project = QgsProject.instance()
        project.readProject.connect(self.restore)
        project.cleared.connect(self.restore)
        project.writeMapLayer.connect(self._writing_layer)
        project.layersRemoved.connect(self._layers_removed)
        self.restore()

    @property
    def layer(self) -> QgsVectorLayer | None:
        """The newest results layer, None when there is none or the analyst removed it from the project."""
        return self._layer if alive(self._layer) else None

    # ----- task bookkeeping -----
    def _start(self, task: ServerTask) -> ServerTask:
        self.tasks = [t for t in self.tasks if t.result is None] + [task]
        QgsApplication.taskManager().addTask(task)
        return task

    def busy(self) -> bool:
        """True until every task of this plugin has handed over its outcome."""
        return any(t.result is None for t in self.tasks)

    def _fail(self, message: str) -> None:
        """A failure with no place of its own in the dock: one message in the message bar."""
        self.last_error = message
        QgsMessageLog.logMessage(message, LOG_TAG, Qgis.MessageLevel.Warning)
        self.iface.messageBar().pushWarning("HarMA Search", message)

    def _failed(self, result: TaskResult, show) -> None:  # noqa: ANN001 - the dock line that shows it
        """Show a failed task's message once: an unreachable server in the status line, the rest under the action."""
        self.last_error = result.error
        QgsMessageLog.logMessage(result.error, LOG_TAG, Qgis.MessageLevel.Warning)
        if result.unavailable:
            self.server = None
            self.dock.show_server_error(result.error)
            show("")
        else:
            show(result.error)

    def _answered(self) -> None:
        """The server answered: if the status line still shows a failure, ask /health again."""
        if self.server is None and (self.status_task is None or self.status_task.result is not None):
            self.check_server()

    def shutdown(self) -> None:
        """Cancel running tasks; their late outcomes are then ignored."""
        self.closed = True
        for task in self.tasks:
            if task.result is None:
                task.cancel()
        for tool in (self.map_tool, self.area_tool):
            if tool is not None:
                self.iface.mapCanvas().unsetMapTool(tool)
        if self.area_tool is not None:
            self.area_tool.clear()
        self.feedback.shutdown()
        project = QgsProject.instance()
        project.readProject.disconnect(self.restore)
        project.cleared.disconnect(self.restore)
        project.writeMapLayer.disconnect(self._writing_layer)
        project.layersRemoved.disconnect(self._layers_removed)

    def apply_settings(self, settings: PluginSettings) -> None:
        """Keep and persist new settings from the dock (the token goes to the auth database)."""
        self.settings = settings
        try:
            self.settings = save_settings(settings)
            self.dock.authcfg = self.settings.authcfg
            self.dock.server_label.setText("")
        except PluginError as exc:
            self.dock.server_label.setText(str(exc))

    # ----- server status -----
    def check_server(self) -> ServerTask:
        """Ask /health in a task; the dock shows the status or a clear message."""
        self.dock.show_server_pending(f"Connecting to {self.settings.server_url}…")
        self.status_task = ServerTask("HarMA: server status", self.settings,
                                      lambda client, task: fetch_status(client), self._status_done)
        return self._start(self.status_task)

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
    def search(self, params: Query, previews: bool = True, on_layer=None) -> ServerTask:  # noqa: ANN001
        """Start a search; an older running search is cancelled and its late reply dropped.

        on_layer(layer) runs once the results layer is in the project (Find all exports it).
        """
        if self.search_task is not None and self.search_task.result is None:
            self.search_task.cancel()
        self.search_seq += 1
        seq = self.search_seq
        dock = self.dock
        count = dock.preview_spin.value() if previews and dock.preview_check.isChecked() else 0
        folder = preview_folder()

        def work(client: ServerClient, task: ServerTask) -> tuple[SearchAnswer, list[tuple[Hit, str]], float | None]:
            task.setProgress(10)
            answer = search_answer(client, params)
            if isinstance(params, SearchParams):
                answer = SearchAnswer(filter_by_area(answer.hits, params.area_wkt), answer.no_match,
                                      answer.no_match_reason)
            task.setProgress(60)
            hits = answer.hits
            best = best_score(client, params) if not hits and params.min_score is not None else None
            return answer, download_previews(client, hits, folder, count) if count and hits else [], best

        dock.set_searching(True)
        dock.begin_search(params.label)
        self.search_task = ServerTask(f"HarMA search: {params.label}", self.settings, work,
                                      lambda result: self._search_done(seq, params, result, on_layer))
        return self._start(self.search_task)

    def cancel_search(self) -> None:
        """Cancel the running search; whatever it still returns is dropped."""
        if self.search_task is not None and self.search_task.result is None:
            self.search_seq += 1
            self.search_task.cancel()
            self.dock.set_searching(False)
            self.dock.set_search_message("Search cancelled")
            self.dock.show_hits([], "No results: the search was cancelled")

    def _search_done(self, seq: int, params: Query, result: TaskResult, on_layer) -> None:  # noqa: ANN001
        if self.closed:
            return
        if seq != self.search_seq:
            QgsMessageLog.logMessage(f"Dropped the stale reply of '{params.label}'", LOG_TAG, Qgis.MessageLevel.Info)
            return
        dock = self.dock
        dock.set_searching(False)
        if result.outcome is Outcome.CANCELLED:
            dock.set_search_message("Search cancelled")
            dock.show_hits([], "No results: the search was cancelled")
            return
        if result.outcome is Outcome.FAILED:
            dock.show_hits([], f"No results: '{params.label}' failed")
            self._failed(result, dock.set_search_message)
            return
        self._answered()
        answer, previews, best = result.value
        hits = answer.hits
        if not hits:
            dock.show_hits([], f"No results for '{params.label}'")
            dock.set_search_message(no_match_message(params, best))
            return
        project = QgsProject.instance()
        layer = build_results_layer(hits, f"HarMA: {params.label}", answer.no_match)
        try:  # into the project's GeoPackage, so the result is saved with the project
            layer = persist(layer, RESULT, project)
        except PluginError as exc:
            self._fail(f"{exc} · the result is kept in memory only and is lost when the project closes")
        self._layer = layer
        add_result(project, layer, params.label, answer.no_match, answer.no_match_reason)
        remember_request(layer, params)
        for hit, path in reversed(previews):
            try:
                add_preview(project, path, f"HarMA preview #{hit.rank} (tile {hit.tile_id})", layer, hit.raster)
            except PluginError as exc:
                self._fail(str(exc))
        self.show_result(layer.id(), zoom=True)
        dock.set_search_message("")
        self.feedback.results_changed(layer)
        if on_layer is not None:
            on_layer(layer)

    # ----- result history -----
    def show_result(self, layer_id: str, zoom: bool = True) -> None:
        """Show one result (its hits in the list, its layer and previews on the map), hide the others."""
        layer = QgsProject.instance().mapLayer(layer_id)
        if not isinstance(layer, QgsVectorLayer):
            return
        self._layer = layer
        show_only(layer)
        no_match, reason = no_match_of(layer)
        self.dock.results.show_result(hits_from_layer(layer), label_of(layer), no_match, reason, self.feedback.marks)
        self._list_history()
        if zoom and self.iface is not None:
            zoom_with_context(self.iface.mapCanvas(), layer)
        self.feedback.results_changed(layer)

    def _list_history(self) -> None:
        current = self.layer
        self.dock.results.set_history([(x.id(), label_of(x)) for x in results()],
                                      current.id() if current is not None else "")

    def restore(self, *_args) -> None:  # noqa: ANN002 - the project's DOM document, or nothing
        """Take up the results and marks a (re)opened project holds; the dock lists its history."""
        self.feedback.restore()
        layer = shown_result()
        if layer is None:
            self._layer = None
            self.dock.results.show_hits([], "No search yet")
            self._list_history()
            return
        self.show_result(layer.id(), zoom=False)  # the project keeps its own map extent

    def _layers_removed(self, *_ids) -> None:  # noqa: ANN002 - removed layer ids
        self._list_history()

    def _writing_layer(self, layer, element, document) -> None:  # noqa: ANN001 - QgsMapLayer, QDom*
        """The project is being saved: a result or marks layer moves next to the project file first."""
        if isinstance(layer, QgsVectorLayer) and layer.customProperty(KIND):
            try:
                rewrite_source(layer, element, document)
            except PluginError as exc:
                self._fail(str(exc))

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

    def ask_export_path(self) -> str | None:
        """Ask where to write a GeoPackage (None when the analyst cancels)."""
        path, _ = QFileDialog.getSaveFileName(self.dock, "Export results", "", "GeoPackage (*.gpkg)")
        return path or None

    def export(self, path: str | None = None, layer: QgsVectorLayer | None = None) -> str | None:
        """Export a results layer (the current one by default) to a GeoPackage (asks for a path if none)."""
        layer = layer or self.layer
        if layer is None:
            self.dock.set_search_message("Nothing to export yet: run a search first")
            return None
        path = path or self.ask_export_path()
        if not path:
            return None
        try:
            roots = self.server.allowed_roots if self.server is not None else ()
            written = export_geopackage(layer, path, roots)
        except PluginError as exc:
            self.dock.set_search_message(str(exc))
            return None
        self.dock.set_search_message(f"Exported {layer.featureCount()} tiles to {written}")
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

    def draw_area(self) -> PolygonDrawTool:
        """Let the analyst draw the search area on the map (corners by left clicks, right click closes)."""
        canvas = self.iface.mapCanvas()
        if self.area_tool is not None:
            self.area_tool.clear()
        self.area_tool = PolygonDrawTool(canvas)
        self.area_tool.polygonDrawn.connect(self._area_drawn)
        canvas.setMapTool(self.area_tool)
        self.dock.set_search_message("Click the area's corners on the map; right-click to close it")
        return self.area_tool

    def _area_drawn(self, geometry) -> None:  # noqa: ANN001 - QgsGeometry in the canvas CRS
        self.dock.drawn = (geometry, self.iface.mapCanvas().mapSettings().destinationCrs())
        self.dock.set_search_message("Area drawn: Search looks only at tiles mostly inside it")

    def pick_feature(self, feature) -> None:  # noqa: ANN001 - QgsFeature from the map tool
        """Select the picked tile in the list and search for similar tiles."""
        self.dock.select_hit(feature["tile_id"])
        self.dock.request_similar()
