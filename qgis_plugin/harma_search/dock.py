"""The HarMA dock: turns widget state into parameter dataclasses and shows what the plugin reports."""
from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel, QgsProject, QgsVectorLayer, QgsWkbTypes
from qgis.gui import QgsDockWidget, QgsMapLayerComboBox
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
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .areas import Area, Drawn, search_area
from .index_panel import IndexPanel
from .local_panel import LocalServerPanel, column
from .logic.errors import InputError
from .logic.hits import Hit
from .logic.params import MAX_K, IndexParams, Scope, SearchParams
from .logic.status import JobStatus, ServerStatus
from .result_store import KIND
from .results_panel import ResultsDock
from .settings import PluginSettings

SCOPE_LABELS = {Scope.WHOLE: "Whole collection", Scope.EXTENT: "Current map extent",
                Scope.DRAWN: "Polygon drawn on the map", Scope.SELECTION: "Selected features of a layer"}
NO_MIN_SCORE = 0.0  # 'any': relevance is never below 0
STATUS_COLORS = {"ok": "#1a7f37", "error": "#b00020", "pending": "#5f6368"}


def scrolled(widget: QWidget) -> QScrollArea:
    """widget inside a frameless scroll area that only scrolls up and down (never sideways), so a tab never
    asks for more height than the screen has."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    return area


def narrow(combo: QComboBox, chars: int = 10) -> None:
    """Let a combo shrink with a narrow dock (long entries are elided, not widening the dock)."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)


class HarmaDock(QgsDockWidget):
    """Server status line above three tabs: Search, Index and Server; the results live in their own dock
    (`results_dock`), so the list and the feedback buttons stay in view."""

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
    drawAreaRequested = pyqtSignal()

    def __init__(self, iface, settings: PluginSettings, parent: QWidget | None = None) -> None:
        super().__init__("HarMA Search", parent)
        self.setObjectName("HarmaSearchDock")
        self.iface = iface
        self.authcfg = settings.authcfg
        self.drawn: Drawn = None  # the polygon drawn on the map, with its CRS
        self.models: dict[str, str] = {}
        self.results_dock = ResultsDock(parent)
        self._results_box()
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        self.status_label = QLabel("Not checked yet")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tabs = QTabWidget()
        self.tabs.addTab(scrolled(self._search_box(settings)), "Search")
        self.tabs.addTab(scrolled(self._index_box()), "Index")
        self.local_panel = LocalServerPanel.from_settings()
        self.tabs.addTab(scrolled(column(self._server_box(settings), self.local_panel)), "Server")
        layout.addWidget(self.status_label)
        layout.addWidget(self.tabs, 1)
        self.setWidget(body)
        self.set_searching(False)
        self.set_indexing(False)
        project = QgsProject.instance()
        project.layersAdded.connect(self._layers_changed)
        project.layersRemoved.connect(self._layers_changed)

    def disconnect_project(self) -> None:
        """Stop following the project's layers (on unload)."""
        project = QgsProject.instance()
        project.layersAdded.disconnect(self._layers_changed)
        project.layersRemoved.disconnect(self._layers_changed)

    def _layers_changed(self, *_changed) -> None:  # noqa: ANN002 - layers added or removed
        self.refresh_raster_layers()
        self._offer_area_layers()

    def _offer_area_layers(self) -> None:
        """The polygon-layer list offers the project's own polygon layers, never the plugin's results or marks;
        it moves off a plugin layer to the first other polygon layer."""
        project = QgsProject.instance()
        ours = [layer for layer in project.mapLayers().values() if layer.customProperty(KIND)
                or layer.name().startswith("HarMA")]
        self.area_layer_combo.setExceptedLayerList(ours)
        current = self.area_layer_combo.currentLayer()
        if current is None or current in ours:
            polygons = [layer for layer in project.mapLayers().values() if isinstance(layer, QgsVectorLayer)
                        and layer not in ours and layer.geometryType() == QgsWkbTypes.GeometryType.PolygonGeometry]
            self.area_layer_combo.setLayer(polygons[0] if polygons else None)

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
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.collection_combo = QComboBox()
        self.collection_combo.setEditable(True)
        self.collection_combo.currentTextChanged.connect(self._show_model)
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.model_label.setStyleSheet("color: #5f6368;")
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
        self.area_layer_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.area_layer_combo.setToolTip("Search within the selected features of this polygon layer")
        self.draw_button = QPushButton("Draw")
        self.draw_button.setToolTip("Click the area's corners on the map; right-click to close it")
        self.draw_button.clicked.connect(self.drawAreaRequested)
        for combo in (self.collection_combo, self.scope_combo, self.area_layer_combo):  # narrow docks too
            narrow(combo)
        self.scope_combo.currentIndexChanged.connect(self._scope_changed)
        self.min_score_spin = QDoubleSpinBox()
        self.min_score_spin.setRange(NO_MIN_SCORE, 1.0)
        self.min_score_spin.setSingleStep(0.05)
        self.min_score_spin.setDecimals(2)
        self.min_score_spin.setSpecialValueText("any")
        self.min_score_spin.setValue(NO_MIN_SCORE)
        self.min_score_spin.setToolTip("Keep hits whose relevance (the probability that a tile shows what you "
                                       "asked, 0-1) is at least this: ≥ 0.5 strong, 0.2-0.5 possible, < 0.2 weak")
        area_row = QHBoxLayout()
        area_row.addWidget(self.area_layer_combo, 1)
        area_row.addWidget(self.draw_button)
        self.preview_check = QCheckBox("Previews")
        self.preview_check.setToolTip("Add the georeferenced crops of the top tiles below the results layer")
        self.preview_spin = QSpinBox()
        self.preview_spin.setRange(1, 20)
        self.preview_spin.setValue(3)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.request_search)
        self.cancel_search_button = QPushButton("Cancel")
        self.cancel_search_button.clicked.connect(self.cancelSearchRequested)
        self.k_spin.setMaximumWidth(80)
        self.min_score_spin.setMaximumWidth(80)
        numbers = QHBoxLayout()
        numbers.addWidget(self.k_spin)
        numbers.addWidget(QLabel("min relevance"))
        numbers.addWidget(self.min_score_spin)
        buttons = QHBoxLayout()
        for widget in (self.preview_check, self.preview_spin, self.search_button, self.cancel_search_button):
            buttons.addWidget(widget)
        self.search_label = QLabel("")
        self.search_label.setWordWrap(True)
        form.addRow("Collection", self.collection_combo)
        form.addRow(self.model_label)
        form.addRow("Query", self.query_edit)
        form.addRow("Results (k)", numbers)
        form.addRow("Scope", self.scope_combo)
        form.addRow("Area", area_row)
        form.addRow(buttons)
        form.addRow(self.search_label)
        self._scope_changed()
        self._offer_area_layers()
        return box

    def _results_box(self) -> None:
        self.results = panel = self.results_dock.panel
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

    def _index_box(self) -> IndexPanel:
        self.index_panel = panel = IndexPanel()
        panel.collection_fallback = lambda: self.collection_combo.currentText().strip()
        panel.indexRequested.connect(self.indexRequested)
        panel.cancelIndexRequested.connect(self.cancelIndexRequested)
        for name in ("raster_list", "refresh_rasters_button", "folder_widget", "index_collection_edit",
                     "tile_size_spin", "index_button", "cancel_index_button", "index_progress", "index_label"):
            setattr(self, name, getattr(panel, name))
        return panel

    # ----- widget state -> parameters -----
    def _scope_changed(self) -> None:
        self.area_layer_combo.setEnabled(self.scope() is Scope.SELECTION)
        self.draw_button.setEnabled(self.scope() is Scope.DRAWN)

    def scope(self) -> Scope:
        """The chosen search scope."""
        return Scope(self.scope_combo.currentData())

    def set_scope(self, scope: Scope) -> None:
        """Choose a search scope."""
        self.scope_combo.setCurrentIndex(self.scope_combo.findData(scope.value))

    def _area(self) -> Area:
        return search_area(self.iface.mapCanvas() if self.iface else None, self.scope(),
                           self.area_layer_combo.currentLayer(), self.drawn)

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
        return self.index_panel.index_params()

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
        self.models = dict(status.models)
        self.set_collections(list(status.collections))
        self.index_panel.set_server(status)

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
        for name in names:
            self.collection_combo.addItem(name)
            if self.models.get(name):
                self.collection_combo.setItemData(self.collection_combo.count() - 1, f"model: {self.models[name]}",
                                                  Qt.ItemDataRole.ToolTipRole)
        if current:
            self.collection_combo.setCurrentText(current)
        self._show_model()

    def _show_model(self, *_text) -> None:  # noqa: ANN002 - the new collection text
        model = self.models.get(self.collection_combo.currentText().strip(), "")
        self.model_label.setText(f"model: {model}" if model else "")
        self.model_label.setVisible(bool(model))

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
        """List the project's raster layers in the Index tab."""
        self.index_panel.refresh_raster_layers()

    def set_indexing(self, running: bool) -> None:
        """Switch the index buttons between idle and running."""
        self.index_panel.set_indexing(running)

    def show_job(self, status: JobStatus) -> None:
        """Show job progress with ETA."""
        self.index_panel.show_job(status)

    def set_index_message(self, text: str) -> None:
        """Show a line under the index progress bar."""
        self.index_panel.set_index_message(text)
