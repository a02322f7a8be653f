"""The Server tab's 'Local server' box: set up, start/stop, log and diagnostics of the plugin's own server."""
from __future__ import annotations

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QFont, QTextCursor
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .local_manager import local_setting
from .logic.local_install import DEFAULT_SOURCE


def column(*widgets: QWidget, grow: QWidget | None = None) -> QWidget:
    """widgets stacked top to bottom, then grow taking the extra height (empty space when there is none)."""
    page = QWidget()
    layout = QVBoxLayout(page)
    for widget in widgets:
        layout.addWidget(widget)
    if grow is not None:
        layout.addWidget(grow, 1)
    else:
        layout.addStretch(1)
    return page


class LocalServerPanel(QGroupBox):
    """Widgets only: emits what the analyst asks for; LocalServerController does it."""

    setupRequested = pyqtSignal(str, str)  # package source, Python to use ('' = find one)
    cancelSetupRequested = pyqtSignal()
    startRequested = pyqtSignal()
    stopRequested = pyqtSignal()
    showLogRequested = pyqtSignal()
    copyDiagnosticsRequested = pyqtSignal()

    def __init__(self, source: str, python: str, autostart: bool, parent: QWidget | None = None) -> None:
        super().__init__("Local server (on this computer)", parent)
        form = QFormLayout(self)
        self.source_edit = QLineEdit(source)
        self.source_edit.setPlaceholderText(DEFAULT_SOURCE)
        self.source_edit.setToolTip("The PyPI name (default harma-search), or a wheel file or source folder for "
                                    "offline sites")
        self.python_widget = QgsFileWidget()
        self.python_widget.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.python_widget.setFilePath(python)
        self.python_widget.setToolTip("Python >= 3.10 for the environment; empty: uv when on PATH, else one found")
        self.setup_button = QPushButton("Set up local server")
        self.setup_button.clicked.connect(self._request_setup)
        self.cancel_setup_button = QPushButton("Cancel setup")
        self.cancel_setup_button.clicked.connect(self.cancelSetupRequested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.startRequested)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stopRequested)
        self.log_button = QPushButton("Show log")
        self.log_button.clicked.connect(self.showLogRequested)
        self.diagnostics_button = QPushButton("Copy diagnostics")
        self.diagnostics_button.clicked.connect(self.copyDiagnosticsRequested)
        self.autostart_check = QCheckBox("Start it with QGIS")
        self.autostart_check.setChecked(autostart)
        buttons = QGridLayout()
        for i, button in enumerate((self.setup_button, self.cancel_setup_button, self.start_button,
                                    self.stop_button, self.log_button, self.diagnostics_button)):
            buttons.addWidget(button, i // 2, i % 2)
        self.state_label = QLabel("")
        self.state_label.setWordWrap(True)
        form.addRow("Package source", self.source_edit)
        form.addRow("Python to use", self.python_widget)
        form.addRow(buttons)
        form.addRow(self.progress)
        form.addRow(self.autostart_check)
        form.addRow(self.state_label)
        self.set_setting_up(False)

    @classmethod
    def from_settings(cls) -> LocalServerPanel:
        """The box filled from what was used last time."""
        return cls(str(local_setting("source", DEFAULT_SOURCE)), str(local_setting("python")),
                   bool(local_setting("autostart", False)))

    def _request_setup(self) -> None:
        self.setupRequested.emit(self.source_edit.text().strip() or DEFAULT_SOURCE,
                                 self.python_widget.filePath().strip())

    def set_setting_up(self, running: bool) -> None:
        """Switch the setup buttons between idle and running."""
        self.setup_button.setEnabled(not running)
        self.cancel_setup_button.setEnabled(running)

    def set_running(self, running: bool) -> None:
        """Enable Start or Stop."""
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def show_state(self, text: str) -> None:
        """Show a line about the local server."""
        self.state_label.setText(text)


class LogDialog(QDialog):
    """A read-only view of the local server's log."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("HarMA Search local server log")
        self.resize(760, 480)
        layout = QVBoxLayout(self)
        self.text = QPlainTextEdit(text)
        self.text.setReadOnly(True)
        self.text.setFont(QFont("monospace"))
        layout.addWidget(self.text)
        self.text.moveCursor(QTextCursor.MoveOperation.End)
