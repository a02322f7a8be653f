"""Plugin entry: dock, menu/toolbar action and Processing provider, added on load and removed on unload."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .controller import Controller
from .dock import HarmaDock
from .local_controller import LocalServerController
from .local_manager import get_manager, release_manager
from .maps_controller import MapsController
from .processing.provider import HarmaProvider
from .settings import load_settings

MENU = "&HarMA Search"
ICON = str(Path(__file__).resolve().parent / "icon.svg")


class HarmaSearchPlugin:
    """What QGIS loads: initProcessing, initGui and unload."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: HarmaProvider | None = None
        self.dock: HarmaDock | None = None
        self.action: QAction | None = None
        self.controller: Controller | None = None
        self.local: LocalServerController | None = None
        self.maps: MapsController | None = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API name
        """Register the Processing provider (QGIS calls this before initGui)."""
        if self.provider is None:
            self.provider = HarmaProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API name
        """Add the dock, the action and the provider; check the server once."""
        self.initProcessing()
        settings = load_settings()
        self.dock = HarmaDock(self.iface, settings, self.iface.mainWindow())
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock.results_dock)  # below it
        self.controller = Controller(self.iface, self.dock, settings)
        self.maps = MapsController(self.iface, self.dock, self.controller)
        self.local = LocalServerController(self.iface, self.dock, self.controller, get_manager())
        self.action = QAction(QIcon(ICON), "HarMA Search", self.iface.mainWindow())
        self.action.setCheckable(True)
        self.action.setChecked(True)
        self.action.toggled.connect(self.dock.setUserVisible)
        self.dock.visibilityChanged.connect(self.action.setChecked)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        self.iface.addRasterToolBarIcon(self.action)
        self.controller.check_server()
        self.local.autostart()

    def unload(self) -> None:
        """Remove everything initGui and initProcessing added."""
        if self.local is not None:
            self.local.shutdown()
            self.local = None
        release_manager()  # stops the local server
        if self.controller is not None:
            self.controller.shutdown()  # cancels the Maps tab's tasks too (it keeps their references)
            self.controller = None
            self.maps = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeRasterToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.dock is not None:
            self.dock.disconnect_project()
            self.iface.removeDockWidget(self.dock.results_dock)
            self.dock.results_dock.deleteLater()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
