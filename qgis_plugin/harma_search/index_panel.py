"""The dock's Index tab: raster layers (marked indexed / outside the server's folders) or a folder, the
collection and tile size, Index / Cancel with progress, and the folders the server may read."""
from __future__ import annotations

from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor
from qgis.PyQt.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from .logic.errors import InputError
from .logic.params import IndexParams
from .logic.sources import inside_roots, path_from_source, rasters_in_folder, unique_paths
from .logic.status import JobStatus, ServerStatus

OUTSIDE_COLOR = "#b00020"


class IndexPanel(QGroupBox):
    """Turns the Index tab's widgets into IndexParams and shows the job's progress."""

    indexRequested = pyqtSignal(object)  # IndexParams
    cancelIndexRequested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Index rasters", parent)
        self.server: ServerStatus | None = None
        form = QFormLayout(self)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.roots_label = QLabel("Folders the server may read: not known yet (connect to the server)")
        self.roots_label.setWordWrap(True)
        self.roots_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
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
        form.addRow(self.roots_label)
        form.addRow("Raster layers", self.raster_list)
        form.addRow(self.refresh_rasters_button)
        form.addRow("or folder", self.folder_widget)
        form.addRow("Collection", self.index_collection_edit)
        form.addRow("Tile size (px)", self.tile_size_spin)
        form.addRow(buttons)
        form.addRow(self.index_progress)
        form.addRow(self.index_label)
        self.collection_fallback = lambda: ""
        self.refresh_raster_layers()

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
        collection = self.index_collection_edit.text().strip() or self.collection_fallback()
        return IndexParams(collection=collection, paths=unique_paths(paths), tile_size=tile_size)

    def request_index(self) -> None:
        """Emit indexRequested with the current parameters, or show why it cannot run."""
        try:
            params = self.index_params()
        except InputError as exc:
            self.index_label.setText(str(exc))
            return
        self.indexRequested.emit(params)

    def set_server(self, status: ServerStatus | None) -> None:
        """Show the server's allowed folders and mark the rasters it has indexed or cannot read."""
        self.server = status
        roots = status.allowed_roots if status is not None else ()
        if status is None:
            text = "Folders the server may read: not known (the server is not connected)"
        elif roots:
            text = "Folders the server may read: " + "; ".join(roots)
        else:
            text = "Folders the server may read: none reported (a server without allowed folders indexes nothing)"
        self.roots_label.setText(text)
        self.refresh_raster_layers()

    def _describe(self, name: str, path: str) -> tuple[str, str, bool]:
        """(row text, tooltip, outside the allowed folders) of one raster layer."""
        status = self.server
        if status is None:
            return name, path, False
        held = status.indexed.get(path, ())
        if held:
            return f"{name}  · indexed in {', '.join(held)}", path, False
        if status.allowed_roots and not inside_roots(path, status.allowed_roots):
            return f"{name}  · outside the server's folders", f"{path}: restart the server with this folder " \
                "allowed (local server: it follows the project's folders)", True
        return name, path, False

    def refresh_raster_layers(self, *_changed) -> None:  # noqa: ANN002 - layers added or removed
        """List the project's file-based raster layers as checkable rows (ticks are kept)."""
        ticked = {self.raster_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.raster_list.count())
                  if self.raster_list.item(i).checkState() == Qt.CheckState.Checked}
        self.raster_list.clear()
        for layer in QgsProject.instance().mapLayers().values():
            path = path_from_source(layer.source()) if isinstance(layer, QgsRasterLayer) else None
            if path and not layer.name().startswith("HarMA preview"):
                text, tip, outside = self._describe(layer.name(), path)
                item = QListWidgetItem(text)
                item.setToolTip(tip)
                item.setData(Qt.ItemDataRole.UserRole, path)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if path in ticked else Qt.CheckState.Unchecked)
                if outside:
                    item.setForeground(QBrush(QColor(OUTSIDE_COLOR)))
                self.raster_list.addItem(item)

    def layer_names(self) -> list[str]:
        """The layer names listed (without their marks)."""
        return [self.raster_list.item(i).text().split("  · ", 1)[0] for i in range(self.raster_list.count())]

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
