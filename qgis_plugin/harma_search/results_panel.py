"""The results dock: the result history, the hits of the shown result, good/bad marks and the feedback buttons
(a dock of its own, so the list and the buttons stay in view beside the search form on a 768 px screen)."""
from __future__ import annotations

from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .logic.feedback import BAD, GOOD, Marks
from .logic.hits import Hit

MARK_BACKGROUND = {GOOD: "#d9f2d9", BAD: "#f8d7d7"}
GREYED = "#8c8c8c"  # rows of an answer that matched nothing: the closest tiles, not hits


class ResultsPanel(QGroupBox):
    """Lists hits with their marks; emits what the analyst asks for."""

    hitActivated = pyqtSignal(object)  # Hit
    markRequested = pyqtSignal(object, str)  # list[Hit], GOOD or BAD
    clearMarksRequested = pyqtSignal()
    markOnMapRequested = pyqtSignal()
    refineRequested = pyqtSignal()
    findAllRequested = pyqtSignal()
    resultChosen = pyqtSignal(str)  # the results layer id chosen in the history

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Results", parent)
        self.hits: list[Hit] = []
        self.no_match = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.history_combo = QComboBox()
        self.history_combo.setToolTip("Earlier results of this project: choose one to show it again")
        self.history_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.history_combo.setMinimumContentsLength(10)
        self.history_combo.activated.connect(self._history_chosen)
        self.heatmap_button = QPushButton("Heatmap")
        self.heatmap_button.setToolTip("Show this search as a heatmap: every tile's score as a coloured raster, "
                                       "in the result's group")
        chooser = QHBoxLayout()
        chooser.addWidget(self.history_combo, 1)
        chooser.addWidget(self.heatmap_button)
        history = QFormLayout()
        history.addRow("Result", chooser)
        self.header = QLabel("No search yet")
        self.header.setWordWrap(True)
        self.list = QListWidget()
        self.list.setMinimumHeight(90)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # long names are elided
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.currentRowChanged.connect(self._row_changed)
        self.similar_button = QPushButton("Find similar")
        self.pick_button = QPushButton("Pick on map")
        self.export_button = QPushButton("Export…")
        self.good_button = QPushButton("Good")
        self.good_button.setToolTip("Mark the selected results as what you are looking for")
        self.good_button.clicked.connect(lambda: self._mark(GOOD))
        self.bad_button = QPushButton("Bad")
        self.bad_button.setToolTip("Mark the selected results as not what you are looking for")
        self.bad_button.clicked.connect(lambda: self._mark(BAD))
        self.mark_on_map_button = QPushButton("Mark on map")
        self.mark_on_map_button.setToolTip("Click result tiles on the map: left button good, right button bad")
        self.mark_on_map_button.clicked.connect(self.markOnMapRequested)
        self.clear_marks_button = QPushButton("Clear marks")
        self.clear_marks_button.clicked.connect(self.clearMarksRequested)
        self.use_text_check = QCheckBox("Refine with the query text too")
        self.use_text_check.setChecked(True)
        self.refine_button = QPushButton("Refine")
        self.refine_button.setToolTip("New results layer ranked by your good and bad marks")
        self.refine_button.clicked.connect(self.refineRequested)
        self.find_all_button = QPushButton("Find all ≥")
        self.find_all_button.setToolTip("Every tile of the collection scoring at least this, exported as footprints")
        self.find_all_button.clicked.connect(self.findAllRequested)
        self.find_all_score_spin = QDoubleSpinBox()
        self.find_all_score_spin.setRange(0.0, 1.0)
        self.find_all_score_spin.setToolTip("Minimum relevance (0 to 1) of the tiles Find all returns")
        self.find_all_score_spin.setDecimals(3)
        self.find_all_score_spin.setSingleStep(0.01)
        self.find_all_score_spin.setValue(0.5)
        self.marks_label = QLabel(Marks().describe())
        self.marks_label.setWordWrap(True)
        grid = QGridLayout()
        placed = ((self.good_button, 0, 0, 1), (self.bad_button, 0, 1, 1), (self.mark_on_map_button, 0, 2, 1),
                  (self.refine_button, 1, 0, 1), (self.clear_marks_button, 1, 1, 1), (self.similar_button, 1, 2, 1),
                  (self.find_all_button, 2, 0, 1), (self.find_all_score_spin, 2, 1, 1), (self.pick_button, 2, 2, 1),
                  (self.use_text_check, 3, 0, 2), (self.export_button, 3, 2, 1))
        for widget, row, col, span in placed:
            grid.addWidget(widget, row, col, 1, span)
        layout.addLayout(history)
        layout.addWidget(self.header)
        layout.addWidget(self.list, 1)
        layout.addLayout(grid)
        layout.addWidget(self.marks_label)

    def _mark(self, label: str) -> None:
        rows = sorted({index.row() for index in self.list.selectedIndexes()})
        hits = [self.hits[r] for r in rows if 0 <= r < len(self.hits)]
        if hits:
            self.markRequested.emit(hits, label)
        else:
            self.marks_label.setText("Select one or more results first, then press Good or Bad")

    def _history_chosen(self, index: int) -> None:
        layer_id = self.history_combo.itemData(index)
        if layer_id:
            self.resultChosen.emit(str(layer_id))

    def set_history(self, entries: list[tuple[str, str]], current: str) -> None:
        """List (layer id, label) results, newest first, with current chosen."""
        self.history_combo.blockSignals(True)
        self.history_combo.clear()
        for number, (layer_id, label) in enumerate(entries):
            self.history_combo.addItem(f"{len(entries) - number}. {label}", layer_id)
        self.history_combo.setCurrentIndex(max(self.history_combo.findData(current), 0))
        self.history_combo.blockSignals(False)

    def show_result(self, hits: list[Hit], label: str, no_match: bool, reason: str, marks: Marks | None) -> None:
        """List a result's hits; when the server found no match, say so and grey the closest tiles."""
        if no_match:
            why = f": {reason}" if reason else ""
            header = f"No tiles look like '{label}'{why}. The {len(hits)} closest tiles, not matches:"
        else:
            strong = sum(h.match == "strong" for h in hits)
            header = f"{len(hits)} tiles for '{label}' · {strong} strong match{'es' if strong != 1 else ''}"
        self.show_hits(hits, header, marks, no_match)

    def _row_changed(self, row: int) -> None:
        if 0 <= row < len(self.hits):
            self.hitActivated.emit(self.hits[row])

    def begin(self, label: str) -> None:
        """A new search started: drop the old rows so they are never shown under the new query."""
        self.show_hits([], f"Searching '{label}'…")

    def show_hits(self, hits: list[Hit], header: str, marks: Marks | None = None, no_match: bool = False) -> None:
        """Fill the list with the hits of the last answer."""
        self.hits = list(hits)
        self.no_match = no_match
        self.header.setText(header)
        self.list.blockSignals(True)
        self.list.clear()
        for hit in self.hits:
            self.list.addItem(QListWidgetItem(hit.row_text()))
        self.list.blockSignals(False)
        self.show_marks(marks or Marks())

    def show_marks(self, marks: Marks) -> None:
        """Show each row's mark (text and background) and the marks summary."""
        for row, hit in enumerate(self.hits):
            item = self.list.item(row)
            label = marks.label(hit.tile_id) if marks.collection == hit.collection else None
            item.setText(hit.row_text() + (f"  · {label}" if label else ""))
            item.setBackground(QBrush(QColor(MARK_BACKGROUND[label])) if label else QBrush())
            item.setForeground(QBrush(QColor(GREYED)) if self.no_match else QBrush())
        self.marks_label.setText(marks.describe())

    def selected_hit(self) -> Hit | None:
        """The hit of the current row, if any."""
        row = self.list.currentRow()
        return self.hits[row] if 0 <= row < len(self.hits) else None

    def select_hit(self, tile_id: int) -> None:
        """Make the row of tile_id current (used by the map picker)."""
        for row, hit in enumerate(self.hits):
            if hit.tile_id == int(tile_id):
                self.list.setCurrentRow(row)
                return


class ResultsDock(QgsDockWidget):
    """The 'HarMA results' dock: holds the results panel."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("HarMA results", parent)
        self.setObjectName("HarmaResultsDock")
        self.panel = ResultsPanel()
        self.panel.setFlat(True)
        self.panel.setTitle("")
        self.setWidget(self.panel)
        self.setAllowedAreas(Qt.DockWidgetArea.AllDockWidgetAreas)
