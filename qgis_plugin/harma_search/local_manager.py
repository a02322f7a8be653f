"""The plugin's own server in QGIS: folders in the profile, its token, one child process, roots kept in step.

One manager per QGIS session (get_manager); it is created on the main thread by the plugin, so its timers live
there. start() may be called from a task or an algorithm thread; watching, restarting and announcing happen in
poll() on the main thread.
"""
from __future__ import annotations

import atexit
import platform
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject, QgsRasterLayer, QgsSettings
from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal

from .auth import LOCAL_KEY, local_token
from .logic.local_install import DEFAULT_SOURCE, python_version
from .logic.local_server import (
    LogBuffer,
    RestartPolicy,
    ServerProcess,
    covered,
    diagnostics_text,
    env_python,
    free_port,
    roots_for,
    server_command,
)
from .logic.sources import path_from_source
from .network import LOG_TAG

ROOTS_DEBOUNCE_MS = 2000
POLL_MS = 500
STOP_TIMEOUT_S = 10.0


def local_folder() -> Path:
    """Where the environment, store and log live: <QGIS profile>/harma_search (the plugin folder is wiped on upgrade)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "harma_search"


def project_raster_files(layers=None) -> list[str]:  # noqa: ANN001 - QgsMapLayer list
    """Local file paths of the (given, else the project's) raster layers."""
    layers = QgsProject.instance().mapLayers().values() if layers is None else layers
    paths = [path_from_source(layer.source()) for layer in layers if isinstance(layer, QgsRasterLayer)]
    return [p for p in paths if p]


def local_setting(name: str, default: object = "") -> object:
    """A value under harma_search/local/ in QgsSettings."""
    return QgsSettings().value(f"{LOCAL_KEY}/{name}", default, type=type(default))


def set_local_setting(name: str, value: object) -> None:
    """Write a value under harma_search/local/."""
    QgsSettings().setValue(f"{LOCAL_KEY}/{name}", value)


class LocalServerManager(QObject):
    """Starts, watches (one restart after an unexpected exit), restarts for new roots and stops the server."""

    message = pyqtSignal(str)  # a line for the dock
    ready = pyqtSignal(str, str)  # url, token

    def __init__(self, busy: Callable[[], bool] = lambda: False) -> None:
        super().__init__()
        self.folder = local_folder()
        self.env_dir = self.folder / "env"
        self.store = self.folder / "store"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = LogBuffer(self.folder / "local_server.log")
        self.busy = busy
        self.process: ServerProcess | None = None
        self.port = 0
        self.token = ""
        self.token_storage = ""
        self.roots: tuple[str, ...] = ()
        self.pending_roots: tuple[str, ...] = ()
        self.policy = RestartPolicy()
        self.announced = False
        self.state = "set up" if self.is_set_up() else "not set up"
        self._lock = threading.RLock()
        self.watch = QTimer(self)
        self.watch.setInterval(POLL_MS)
        self.watch.timeout.connect(self.poll)
        self.watch.start()
        self.roots_timer = QTimer(self)
        self.roots_timer.setSingleShot(True)
        self.roots_timer.setInterval(ROOTS_DEBOUNCE_MS)
        self.roots_timer.timeout.connect(self._apply_roots)
        QgsProject.instance().layersAdded.connect(self._layers_added)
        QgsApplication.instance().aboutToQuit.connect(self.shutdown)

    def _say(self, text: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info) -> None:
        self.state = text
        self.log.add(f"[plugin] {text}")
        QgsMessageLog.logMessage(text, LOG_TAG, level)
        self.message.emit(text)

    # ----- state -----
    def is_set_up(self) -> bool:
        """True when the private environment exists."""
        return env_python(self.env_dir).is_file()

    def running(self) -> bool:
        """True while the child process lives."""
        return self.process is not None and self.process.running()

    @property
    def url(self) -> str:
        """The running server's URL ('' until it printed it)."""
        return self.process.url if self.running() else ""

    # ----- start / stop -----
    def start(self, reset_policy: bool = True) -> ServerProcess:
        """Start the server (any thread); the running one when there is one. Raises SetupError."""
        with self._lock:
            if self.running():
                return self.process
            if not self.token:
                self.token, self.token_storage = local_token()
            self.port = self.port or free_port()  # kept across restarts: the URL others saved stays valid
            self.roots = roots_for(project_raster_files(), self.roots + self.pending_roots)
            self.pending_roots = ()
            self.store.mkdir(parents=True, exist_ok=True)
            if reset_policy:
                self.policy.reset()
            self.announced = False
            self.process = ServerProcess(server_command(self.env_dir, self.store, self.port, self.roots),
                                         self.token, self.log, self.folder)
            set_local_setting("url", f"http://127.0.0.1:{self.port}")
            self.state = f"starting on port {self.port} (pid {self.process.pid})"
            return self.process

    def stop(self) -> None:
        """Stop the child (terminate, then kill after a timeout); no restart follows."""
        with self._lock:
            process, self.process = self.process, None
        if process is not None and process.running():
            process.stop(STOP_TIMEOUT_S)
            self._say(f"Local server stopped (pid {process.pid})")

    def shutdown(self) -> None:
        """QGIS is closing or the plugin unloads: stop timers and the child."""
        self.watch.stop()
        self.roots_timer.stop()
        self.stop()

    # ----- main-thread watching -----
    def poll(self) -> None:
        """Announce a server that became ready; restart one that died by itself, once."""
        process = self.process
        if process is None:
            return
        if process.running():
            if process.url and not self.announced:
                self.announced = True
                self._say(f"Local server running at {process.url} (pid {process.pid}; rasters readable under "
                          f"{', '.join(self.roots) or 'no folder yet'})")
                self.ready.emit(process.url, self.token)
            return
        if process.stopping:
            return
        with self._lock:
            if self.process is not process:
                return
            self.process = None
        code = process.exit_code()
        if self.policy.should_restart():
            self._say(f"The local server stopped unexpectedly (exit code {code}); restarting it once",
                      Qgis.MessageLevel.Warning)
            self._start_quietly(reset_policy=False)
        else:
            self._say(f"The local server stopped (exit code {code}) and is not restarted again: see Show log, "
                      "then press Start", Qgis.MessageLevel.Critical)

    def _start_quietly(self, reset_policy: bool) -> None:
        try:
            self.start(reset_policy=reset_policy)
        except Exception as exc:  # a SetupError or an OS error: show it, never raise into a Qt slot
            self._say(str(exc), Qgis.MessageLevel.Critical)

    def _layers_added(self, layers) -> None:  # noqa: ANN001 - list of QgsMapLayer
        """A raster from a folder the server may not read: restart it with that folder (debounced)."""
        files = project_raster_files(layers)
        if not self.running() or covered(files, self.roots + self.pending_roots):
            return
        self.pending_roots = roots_for(files, self.pending_roots)
        self.roots_timer.start()

    def _apply_roots(self) -> None:
        if not self.pending_roots or not self.running():
            return
        if self.busy():  # never cut an indexing job short
            self._say("New raster folder: the local server restarts when the running job is done")
            self.roots_timer.start()
            return
        folders = ", ".join(self.pending_roots)
        self.stop()
        self._say(f"Restarting the local server so it may read rasters in {folders}")
        self._start_quietly(reset_policy=False)

    # ----- reports -----
    def diagnostics(self, source: str = "") -> str:
        """Versions, paths, state and the last log lines (never the token)."""
        python = env_python(self.env_dir)
        version = python_version(str(python)) if python.is_file() else None
        facts = {
            "QGIS": Qgis.QGIS_VERSION, "system": platform.platform(), "QGIS Python": sys.version.split()[0],
            "plugin folder": Path(__file__).resolve().parent, "profile folder": self.folder,
            "environment": f"{self.env_dir} ({'Python ' + '.'.join(map(str, version)) if version else 'missing'})",
            "uv": shutil.which("uv") or "not on PATH",
            "package source": source or local_setting("source", DEFAULT_SOURCE),
            "store": self.store, "log file": self.log.path, "state": self.state,
            "url": self.url or "-", "pid": self.process.pid if self.process else "-",
            "allowed roots": ", ".join(self.roots) or "-", "token kept in": self.token_storage or "-",
        }
        return diagnostics_text(facts, self.log.tail(40))


_MANAGER: LocalServerManager | None = None


def get_manager() -> LocalServerManager:
    """The session's manager, created on first use (the plugin creates it on the main thread)."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = LocalServerManager()
    return _MANAGER


def release_manager() -> None:
    """Stop the server and forget the manager (plugin unload)."""
    global _MANAGER
    if _MANAGER is not None:
        _MANAGER.shutdown()
        QgsProject.instance().layersAdded.disconnect(_MANAGER._layers_added)
        QgsApplication.instance().aboutToQuit.disconnect(_MANAGER.shutdown)
        _MANAGER.deleteLater()
        _MANAGER = None


@atexit.register
def _stop_at_exit() -> None:
    """Last resort when Python ends without aboutToQuit (e.g. a script or test app): no orphan server."""
    process = _MANAGER.process if _MANAGER is not None else None
    if process is not None and process.running():
        process.stop(STOP_TIMEOUT_S)
        _MANAGER.log.add(f"[plugin] Python is exiting: stopped the local server (pid {process.pid})")
