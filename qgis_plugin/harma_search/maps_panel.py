"""The dock's Maps tab: 'Compare dates' (two rasters → the changed cells) and 'Map land cover' (class prompts
or a preset → a class map); widgets turn into parameter dataclasses and signals, the controller does the rest."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsMapLayerProxyModel, QgsProject, QgsRasterLayer
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QWidget,
)

from .logic.change import DEFAULT_TILE_M, DIRECTIONS, MAX_TILE_M, ChangeParams
from .logic.errors import InputError
from .logic.maps import PRESETS, MapParams, class_lines
from .logic.sources import path_from_source

RASTER_FILTER = "GeoTIFF (*.tif *.tiff *.TIF *.TIFF)"


def _narrow(combo: QComboBox) -> None:
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(10)


def _buttons(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    return row


def _wrapped_label() -> QLabel:
    label = QLabel("")
    label.setWordWrap(True)
    return label


class MapsPanel(QWidget):
    """Compare dates over Map land cover, each with Run / Cancel, a progress bar and a message line."""

    compareRequested = pyqtSignal(object, bool)  # ChangeParams, also as a heatmap raster
    cancelCompareRequested = pyqtSignal()
    mapRequested = pyqtSignal(object)  # MapParams
    cancelMapRequested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addRow(self._compare_box())
        layout.addRow(self._map_box())
        self.set_comparing(False)
        self.set_mapping(False)

    # ----- building -----
    def _date_row(self, which: str) -> tuple[QgsMapLayerComboBox, QHBoxLayout]:
        combo = QgsMapLayerComboBox()
        combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        combo.setAllowEmptyLayer(True)
        _narrow(combo)
        browse = QPushButton("…")
        browse.setToolTip(f"Open a GeoTIFF as the {which} layer")
        browse.setMaximumWidth(32)
        browse.clicked.connect(lambda: self._browse(combo, which))
        return combo, _buttons(combo, browse)

    def _compare_box(self) -> QGroupBox:
        box = QGroupBox("Compare dates")
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.before_combo, before_row = self._date_row("before")
        self.after_combo, after_row = self._date_row("after")
        self.mosaic_check = QCheckBox("Whole folders (mosaics)")
        self.mosaic_check.setToolTip("Each date is every .tif in its layer's folder, as one mosaic")
        self.tile_spin = QDoubleSpinBox()
        self.tile_spin.setRange(1.0, MAX_TILE_M)
        self.tile_spin.setDecimals(0)
        self.tile_spin.setSuffix(" m")
        self.tile_spin.setValue(DEFAULT_TILE_M)
        self.tile_spin.setToolTip("Side of the square cells compared (on the ground, in metres)")
        self.change_text_edit = QLineEdit()
        self.change_text_edit.setPlaceholderText("optional: what changed, e.g. buildings")
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(DIRECTIONS)
        self.direction_combo.setToolTip("appear: cells that look more like the text after; disappear: less")
        self.change_heatmap_check = QCheckBox("Also as a heatmap raster")
        self.change_heatmap_check.setToolTip("`change` as a GeoTIFF, one pixel per cell, with a colour ramp")
        self.change_heatmap_check.setChecked(True)
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(self.request_compare)
        self.cancel_compare_button = QPushButton("Cancel")
        self.cancel_compare_button.clicked.connect(self.cancelCompareRequested)
        self.compare_progress = QProgressBar()
        self.compare_label = _wrapped_label()
        text_row = _buttons(self.change_text_edit, self.direction_combo)
        form.addRow("Before", before_row)
        form.addRow("After", after_row)
        form.addRow(self.mosaic_check)
        form.addRow("Cell size", self.tile_spin)
        form.addRow("Text", text_row)
        form.addRow(self.change_heatmap_check)
        form.addRow(_buttons(self.compare_button, self.cancel_compare_button))
        form.addRow(self.compare_progress)
        form.addRow(self.compare_label)
        return box

    def _map_box(self) -> QGroupBox:
        box = QGroupBox("Map land cover")
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.map_collection_combo = QComboBox()
        self.map_collection_combo.setEditable(True)
        _narrow(self.map_collection_combo)
        self.preset_combo = QComboBox()
        self.preset_combo.addItem("My classes (below)", "")
        for key, label in PRESETS.items():
            self.preset_combo.addItem(label, key)
        _narrow(self.preset_combo)
        self.preset_combo.currentIndexChanged.connect(self._preset_changed)
        self.classes_edit = QPlainTextEdit()
        self.classes_edit.setPlaceholderText("one class per line: forest\nwater=a lake or river\nbuildings")
        self.classes_edit.setMaximumHeight(72)
        self.forced_check = QCheckBox("No 'unknown' (forced choice)")
        self.forced_check.setToolTip("Every tile gets its best class, even when no class is likely")
        self.map_button = QPushButton("Map")
        self.map_button.clicked.connect(self.request_map)
        self.cancel_map_button = QPushButton("Cancel")
        self.cancel_map_button.clicked.connect(self.cancelMapRequested)
        self.map_progress = QProgressBar()
        self.map_label = _wrapped_label()
        form.addRow("Collection", self.map_collection_combo)
        form.addRow("Classes", self.preset_combo)
        form.addRow(self.classes_edit)
        form.addRow(self.forced_check)
        form.addRow(_buttons(self.map_button, self.cancel_map_button))
        form.addRow(self.map_progress)
        form.addRow(self.map_label)
        return box

    def share_collections(self, combo: QComboBox) -> None:
        """Offer the same collections as combo (the Search tab's), following it as the server changes."""
        self.map_collection_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)  # typing adds no entry there
        self.map_collection_combo.setModel(combo.model())

    def _preset_changed(self) -> None:
        self.classes_edit.setEnabled(not self.preset_combo.currentData())

    def _browse(self, combo: QgsMapLayerComboBox, which: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"The {which} raster", "", RASTER_FILTER)
        if path:
            self.add_file(combo, path)

    def add_file(self, combo: QgsMapLayerComboBox, path: str) -> QgsRasterLayer:
        """Open a GeoTIFF as a project layer (the imagery to compare) and choose it in combo."""
        layer = QgsRasterLayer(path, Path(path).stem, "gdal")
        if not layer.isValid():
            self.set_compare_message(f"{path!r} is not a readable raster: choose a GeoTIFF")
            return layer
        QgsProject.instance().addMapLayer(layer)
        combo.setLayer(layer)
        return layer

    # ----- widget state -> parameters -----
    def _paths(self, combo: QgsMapLayerComboBox, which: str) -> tuple[str, ...]:
        layer = combo.currentLayer()
        if layer is None:
            raise InputError(f"Choose the {which} raster layer (or open a file with …)")
        path = path_from_source(layer.source())
        if path is None:
            raise InputError(f"Layer {layer.name()!r} is not a local raster file: save it as a GeoTIFF first")
        return (str(Path(path).parent),) if self.mosaic_check.isChecked() else (path,)

    def change_params(self) -> ChangeParams:
        """The comparison the widgets describe; raises InputError."""
        return ChangeParams(before=self._paths(self.before_combo, "before"),
                            after=self._paths(self.after_combo, "after"), tile_size_m=self.tile_spin.value(),
                            text=self.change_text_edit.text(), direction=self.direction_combo.currentText())

    def map_params(self) -> MapParams:
        """The class map the widgets describe; raises InputError."""
        preset = str(self.preset_combo.currentData() or "")
        return MapParams(collection=self.map_collection_combo.currentText().strip(),
                         classes=() if preset else class_lines(self.classes_edit.toPlainText()), preset=preset,
                         forced=self.forced_check.isChecked())

    def request_compare(self) -> None:
        """Emit compareRequested, or say why the comparison cannot run."""
        try:
            params = self.change_params()
        except InputError as exc:
            self.set_compare_message(str(exc))
            return
        self.compareRequested.emit(params, self.change_heatmap_check.isChecked())

    def request_map(self) -> None:
        """Emit mapRequested, or say why the map cannot be made."""
        try:
            params = self.map_params()
        except InputError as exc:
            self.set_map_message(str(exc))
            return
        self.mapRequested.emit(params)

    # ----- showing what the plugin reports -----
    def set_comparing(self, running: bool) -> None:
        """Switch Compare / Cancel and reset the bar."""
        self.compare_button.setEnabled(not running)
        self.cancel_compare_button.setEnabled(running)
        if running:
            self.compare_progress.setValue(0)

    def set_mapping(self, running: bool) -> None:
        """Switch Map / Cancel and reset the bar."""
        self.map_button.setEnabled(not running)
        self.cancel_map_button.setEnabled(running)
        if running:
            self.map_progress.setValue(0)

    def set_compare_message(self, text: str) -> None:
        """A line under Compare."""
        self.compare_label.setText(text)

    def set_map_message(self, text: str) -> None:
        """A line under Map."""
        self.map_label.setText(text)
