"""The HarMA dock: turns widget state into parameter dataclasses and shows what the plugin reports."""
from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel, QgsProject, QgsRasterLayer
from qgis.gui import QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .areas import Area, search_area
from .local_panel import LocalServerPanel, column
from .logic.errors import InputError
from .logic.hits import Hit
from .logic.params import MAX_K, IndexParams, Scope, SearchParams
from .logic.sources import path_from_source, rasters_in_folder, unique_paths
from .logic.status import JobStatus, ServerStatus
from .results_panel import ResultsPanel
from .settings import PluginSettings

SCOPE_LABELS = {Scope.WHOLE: "Whole collection", Scope.EXTENT: "Current map extent",
                Scope.SELECTION: "Selected polygons of a layer"}
NO_MIN_SCORE = -1.0  # 'any': a cosine score is never below -1
STATUS_COLORS = {"ok": "#1a7f37", "error": "#b00020", "pending": "#5f6368"}


def scrolled(widget: QWidget) -> QScrollArea:
    """widget inside a frameless scroll area, so a tab never asks for more height than the screen has."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(widget)
    return area


class HarmaDock(QgsDockWidget):
    """Server status line above three tabs: Search (form and results), Index and Server."""

    searchRequested = pyqtSignal(object)  # SearchParams
    cancelSearchRequested = pyqtSignal()
    retryRequested = pyqtSignal()
    settingsChanged = pyqtSignal(object)  # PluginSettings
    hitActivated = pyqtSignal(object)  # Hit
    exampleRequested = pyqtSignal(object)  # SearchParams with a tile_id
    pickOnMapRequested = pyqtSignal()
    exportRequested = pyqtSignal()
    markRequested = pyqtSignal(object, str)  # list[Hit], GOOD or BAD
    clearMarksRequested = pyqtSignal()
    markOnMapRequested = pyqtSignal()
    refineRequested = pyqtSignal()
    findAllRequested = pyqtSignal()
    indexRequested = pyqtSignal(object)  # IndexParams
    cancelIndexRequested = pyqtSignal()

    def __init__(self, iface, settings: PluginSettings, parent: QWidget | None = None) -> None:
        super().__init__("HarMA Search", parent)
        self.setObjectName("HarmaSearchDock")
        self.iface = iface
        self.authcfg = settings.authcfg
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        self.status_label = QLabel("Not checked yet")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tabs = QTabWidget()
        self.tabs.addTab(scrolled(column(self._search_box(settings), grow=self._results_box())), "Search")
        self.tabs.addTab(scrolled(self._index_box()), "Index")
        self.local_panel = LocalServerPanel.from_settings()
        self.tabs.addTab(scrolled(column(self._server_box(settings), self.local_panel)), "Server")
        layout.addWidget(self.status_label)
        layout.addWidget(self.tabs, 1)
        self.setWidget(body)
        self.set_searching(False)
        self.set_indexing(False)
        project = QgsProject.instance()
        project.layersAdded.connect(self.refresh_raster_layers)
        project.layersRemoved.connect(self.refresh_raster_layers)

    def disconnect_project(self) -> None:
        """Stop following the project's layers (on unload)."""
        project = QgsProject.instance()
        project.layersAdded.disconnect(self.refresh_raster_layers)
        project.layersRemoved.disconnect(self.refresh_raster_layers)

    # ----- building -----
    def _server_box(self, settings: PluginSettings) -> QGroupBox:
        box = QGroupBox("Server")
        form = QFormLayout(box)
        self.url_edit = QLineEdit(settings.server_url)
        self.token_edit = QLineEdit(settings.token)
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("only when the server asks for one")
        self.token_edit.setToolTip("Kept in the QGIS authentication database, not in plain settings")
        self.retry_button = QPushButton("Connect / Retry")
        self.retry_button.clicked.connect(self._apply_settings_and_retry)
        self.server_label = QLabel("")
        self.server_label.setWordWrap(True)
        form.addRow("URL", self.url_edit)
        form.addRow("Token", self.token_edit)
        form.addRow(self.retry_button)
        form.addRow(self.server_label)
        return box

    def _search_box(self, settings: PluginSettings) -> QGroupBox:
        box = QGroupBox("Search")
        form = QFormLayout(box)
        self.collection_combo = QComboBox()
        self.collection_combo.setEditable(True)
        self.query_edit = QLineEdit()
        self.query_edit.setPlaceholderText("e.g. a river next to farmland")
        self.query_edit.returnPressed.connect(self.request_search)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, MAX_K)
        self.k_spin.setValue(settings.default_k)
        self.scope_combo = QComboBox()
        for scope, label in SCOPE_LABELS.items():
            self.scope_combo.addItem(label, scope.value)
        self.area_layer_combo = QgsMapLayerComboBox()
        for combo in (self.collection_combo, self.scope_combo, self.area_layer_combo):  # narrow docks too
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.area_layer_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.scope_combo.currentIndexChanged.connect(self._scope_changed)
        self.min_score_spin = QDoubleSpinBox()
        self.min_score_spin.setRange(NO_MIN_SCORE, 1.0)
        self.min_score_spin.setSingleStep(0.01)
        self.min_score_spin.setDecimals(3)
        self.min_score_spin.setSpecialValueText("any")
        self.min_score_spin.setValue(NO_MIN_SCORE)
        self.preview_check = QCheckBox("Add previews of the top")
        self.preview_spin = QSpinBox()
        self.preview_spin.setRange(1, 20)
        self.preview_spin.setValue(3)
        preview_row = QHBoxLayout()
        preview_row.addWidget(self.preview_check)
        preview_row.addWidget(self.preview_spin)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.request_search)
        self.cancel_search_button = QPushButton("Cancel")
        self.cancel_search_button.clicked.connect(self.cancelSearchRequested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.search_button)
        buttons.addWidget(self.cancel_search_button)
        self.search_label = QLabel("")
        self.search_label.setWordWrap(True)
        form.addRow("Collection", self.collection_combo)
        form.addRow("Query", self.query_edit)
        form.addRow("Results (k)", self.k_spin)
        form.addRow("Scope", self.scope_combo)
        form.addRow("Polygon layer", self.area_layer_combo)
        self.min_score_spin.setToolTip("Keep hits whose cosine score is at least this")
        form.addRow("Min score", self.min_score_spin)
        form.addRow(preview_row)
        form.addRow(buttons)
        form.addRow(self.search_label)
        self._scope_changed()
        return box

    def _results_box(self) -> ResultsPanel:
        self.results = panel = ResultsPanel()
        self.results_list = panel.list
        self.similar_button, self.pick_button = panel.similar_button, panel.pick_button
        self.export_button = panel.export_button
        panel.similar_button.clicked.connect(self.request_similar)
        panel.pick_button.clicked.connect(self.pickOnMapRequested)
        panel.export_button.clicked.connect(self.exportRequested)
        panel.hitActivated.connect(self.hitActivated)
        panel.markRequested.connect(self.markRequested)
        panel.clearMarksRequested.connect(self.clearMarksRequested)
        panel.markOnMapRequested.connect(self.markOnMapRequested)
        panel.refineRequested.connect(self.refineRequested)
        panel.findAllRequested.connect(self.findAllRequested)
        return panel

    def _index_box(self) -> QGroupBox:
        box = QGroupBox("Index rasters")
        form = QFormLayout(box)
        self.raster_list = QListWidget()
        self.raster_list.setMinimumHeight(60)
        self.raster_list.setMaximumHeight(110)
        self.refresh_rasters_button = QPushButton("Refresh layer list")
        self.refresh_rasters_button.clicked.connect(self.refresh_raster_layers)
        self.folder_widget = QgsFileWidget()
        self.folder_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.index_collection_edit = QLineEdit()
        self.index_collection_edit.setPlaceholderText("collection name (created if new)")
        self.tile_size_spin = QSpinBox()
        self.tile_size_spin.setRange(0, 8192)
        self.tile_size_spin.setSpecialValueText("server default")
        self.index_button = QPushButton("Index")
        self.index_button.clicked.connect(self.request_index)
        self.cancel_index_button = QPushButton("Cancel indexing")
        self.cancel_index_button.clicked.connect(self.cancelIndexRequested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.index_button)
        buttons.addWidget(self.cancel_index_button)
        self.index_progress = QProgressBar()
        self.index_progress.setRange(0, 100)
        self.index_label = QLabel("")
        self.index_label.setWordWrap(True)
        form.addRow("Raster layers", self.raster_list)
        form.addRow(self.refresh_rasters_button)
        form.addRow("or folder", self.folder_widget)
        form.addRow("Collection", self.index_collection_edit)
        form.addRow("Tile size (px)", self.tile_size_spin)
        form.addRow(buttons)
        form.addRow(self.index_progress)
        form.addRow(self.index_label)
        self.refresh_raster_layers()
        return box

    # ----- widget state -> parameters -----
    def _scope_changed(self) -> None:
        self.area_layer_combo.setEnabled(self.scope() is Scope.SELECTION)

    def scope(self) -> Scope:
        """The chosen search scope."""
        return Scope(self.scope_combo.currentData())

    def set_scope(self, scope: Scope) -> None:
        """Choose a search scope."""
        self.scope_combo.setCurrentIndex(self.scope_combo.findData(scope.value))

    def _area(self) -> Area:
        return search_area(self.iface.mapCanvas() if self.iface else None, self.scope(),
                           self.area_layer_combo.currentLayer())

    def _min_score(self) -> float | None:
        value = self.min_score_spin.value()
        return None if value <= NO_MIN_SCORE else value

    def search_params(self, tile_id: int | None = None) -> SearchParams:
        """The search the widgets describe (by example when tile_id is given); raises InputError."""
        bbox, area_wkt, area_geojson = self._area()
        return SearchParams(
            collection=self.collection_combo.currentText().strip(),
            query="" if tile_id is not None else self.query_edit.text(),
            tile_id=tile_id, k=self.k_spin.value(), scope=self.scope(), bbox=bbox,
            min_score=self._min_score(), area_wkt=area_wkt, area_geojson=area_geojson,
        )

    def index_params(self) -> IndexParams:
        """The indexing request the widgets describe; raises InputError."""
        paths = []
        for row in range(self.raster_list.count()):
            item = self.raster_list.item(row)
            if item.checkState() == Qt.CheckState.Checked:
                paths.append(item.data(Qt.ItemDataRole.UserRole))
        folder = self.folder_widget.filePath().strip()
        if folder:
            paths.extend(rasters_in_folder(folder))
        tile_size = self.tile_size_spin.value() or None
        collection = self.index_collection_edit.text().strip() or self.collection_combo.currentText().strip()
        return IndexParams(collection=collection, paths=unique_paths(paths), tile_size=tile_size)

    def request_search(self) -> None:
        """Emit searchRequested with the current parameters, or show why it cannot run."""
        self._emit(self.searchRequested, self.search_params)

    def request_similar(self) -> None:
        """Emit exampleRequested for the selected result."""
        hit = self.selected_hit()
        if hit is None:
            self.set_search_message("Pick a result in the list (or on the map) to find similar tiles")
            return
        self._emit(self.exampleRequested, lambda: self.search_params(tile_id=hit.tile_id))

    def request_index(self) -> None:
        """Emit indexRequested with the current parameters, or show why it cannot run."""
        try:
            params = self.index_params()
        except InputError as exc:
            self.index_label.setText(str(exc))
            return
        self.indexRequested.emit(params)

    def _emit(self, signal, build) -> None:  # noqa: ANN001 - a bound signal and a factory
        try:
            params = build()
        except InputError as exc:
            self.set_search_message(str(exc))
            return
        signal.emit(params)

    def _apply_settings_and_retry(self) -> None:
        self.settingsChanged.emit(PluginSettings(self.url_edit.text().strip(), self.token_edit.text(),
                                                 self.k_spin.value(), self.authcfg))
        self.retryRequested.emit()

    # ----- showing what the plugin reports -----
    def show_server(self, status: ServerStatus) -> None:
        """Show a reachable server and offer its collections."""
        self._status(status.describe(), "ok")
        self.set_collections(list(status.collections))

    def show_server_error(self, message: str) -> None:
        """Show why the server cannot be used."""
        self._status(message, "error")

    def show_server_pending(self, message: str) -> None:
        """Show that the server is being asked."""
        self._status(message, "pending")

    def _status(self, text: str, state: str) -> None:
        self.status_label.setText(text)
        self.status_label.setProperty("state", state)
        self.status_label.setStyleSheet(f"color: {STATUS_COLORS[state]};")

    def server_state(self) -> str:
        """'ok', 'error' or 'pending', as the status line shows it."""
        return str(self.status_label.property("state") or "pending")

    def set_collections(self, names: list[str]) -> None:
        """Replace the collection choices, keeping the current one when it still exists."""
        current = self.collection_combo.currentText()
        self.collection_combo.clear()
        self.collection_combo.addItems(names)
        if current:
            self.collection_combo.setCurrentText(current)

    def set_searching(self, running: bool) -> None:
        """Enable Cancel while a search runs."""
        self.cancel_search_button.setEnabled(running)
        if running:
            self.set_search_message("Searching…")

    def set_search_message(self, text: str) -> None:
        """Show a line under the search buttons."""
        self.search_label.setText(text)

    @property
    def hits(self) -> list[Hit]:
        """The hits listed now (from the last answer)."""
        return self.results.hits

    def begin_search(self, label: str) -> None:
        """Clear the old rows as a new search starts."""
        self.results.begin(label)

    def show_hits(self, hits: list[Hit], header: str = "", marks=None) -> None:  # noqa: ANN001 - Marks | None
        """Fill the result list."""
        self.results.show_hits(hits, header or f"{len(hits)} results", marks)

    def selected_hit(self) -> Hit | None:
        """The hit of the selected row, if any."""
        return self.results.selected_hit()

    def select_hit(self, tile_id: int) -> None:
        """Select the row of the hit with tile_id (used by the map picker)."""
        self.results.select_hit(tile_id)

    def refresh_raster_layers(self, *_changed) -> None:  # noqa: ANN002 - layers added or removed
        """List the project's file-based raster layers as checkable rows (ticks are kept)."""
        ticked = {self.raster_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.raster_list.count())
                  if self.raster_list.item(i).checkState() == Qt.CheckState.Checked}
        self.raster_list.clear()
        for layer in QgsProject.instance().mapLayers().values():
            path = path_from_source(layer.source()) if isinstance(layer, QgsRasterLayer) else None
            if path and not layer.name().startswith("HarMA preview"):
                item = QListWidgetItem(layer.name())
                item.setData(Qt.ItemDataRole.UserRole, path)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if path in ticked else Qt.CheckState.Unchecked)
                self.raster_list.addItem(item)

    def set_indexing(self, running: bool) -> None:
        """Switch the index buttons between idle and running."""
        self.index_button.setEnabled(not running)
        self.cancel_index_button.setEnabled(running)
        if running:
            self.index_progress.setValue(0)

    def show_job(self, status: JobStatus) -> None:
        """Show job progress with ETA."""
        self.index_progress.setValue(int(status.percent))
        self.index_label.setText(status.describe())

    def set_index_message(self, text: str) -> None:
        """Show a line under the index progress bar."""
        self.index_label.setText(text)
