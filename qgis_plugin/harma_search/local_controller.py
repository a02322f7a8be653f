"""Runs the local server's setup as a QgsTask and connects the dock to the server once it is ready."""
from __future__ import annotations

import traceback
from collections.abc import Callable

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsSettings, QgsTask
from qgis.PyQt.QtWidgets import QApplication

from .controller import Controller
from .dock import HarmaDock
from .local_manager import LocalServerManager, local_setting, set_local_setting
from .local_panel import LocalServerPanel, LogDialog
from .logic.errors import PluginError
from .logic.local_install import DEFAULT_SOURCE, run_setup
from .network import LOG_TAG
from .settings import PREFIX, PluginSettings


class SetupTask(QgsTask):
    """Creates the environment and installs the package in run(); hands (python or None, error) to on_done."""

    def __init__(self, manager: LocalServerManager, source: str, python: str,
                 on_done: Callable[[SetupTask], None]) -> None:
        super().__init__("HarMA: set up the local server", QgsTask.Flag.CanCancel)
        self.manager = manager
        self.source = source
        self.python = python
        self.on_done = on_done
        self.installed = ""
        self.error = ""
        self.step = ""
        self.done = False  # set on the main thread once finished() ran

    def _progress(self, percent: float, text: str) -> None:
        self.step = text
        self.setProgress(percent)

    def run(self) -> bool:
        """Worker thread: no GUI here; output lines go to the manager's log."""
        try:
            self.installed = run_setup(self.manager.env_dir, self.source, self.python, self.manager.log.add,
                                       self._progress, self.isCanceled)
            return True
        except PluginError as exc:
            self.error = str(exc)
        except Exception as exc:  # a bug: the traceback to the log panel, one line to the dock
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.MessageLevel.Critical)
            self.error = f"Unexpected error while setting up: {exc} (details in the log panel)"
        return False

    def finished(self, result: bool) -> None:
        """Main thread: hand the outcome over."""
        if self.isCanceled() and not self.error:
            self.error = "Setup cancelled"
        self.done = True
        self.on_done(self)


class LocalServerController:
    """Wires the Local server box to the manager; keeps the setup task's reference; connects the dock."""

    def __init__(self, iface, dock: HarmaDock, controller: Controller, manager: LocalServerManager) -> None:
        self.iface = iface
        self.dock = dock
        self.controller = controller
        self.manager = manager
        self.panel: LocalServerPanel = dock.local_panel
        self.setup_task: SetupTask | None = None
        self.log_dialog: LogDialog | None = None
        manager.busy = lambda: controller.index_task is not None and controller.index_task.result is None
        manager.message.connect(self.panel.show_state)
        manager.message.connect(self._refresh)
        manager.ready.connect(self.connect_dock)
        panel = self.panel
        panel.setupRequested.connect(self.setup)
        panel.cancelSetupRequested.connect(self.cancel_setup)
        panel.startRequested.connect(self.start)
        panel.stopRequested.connect(self.stop)
        panel.showLogRequested.connect(self.show_log)
        panel.copyDiagnosticsRequested.connect(self.copy_diagnostics)
        panel.autostart_check.toggled.connect(lambda on: set_local_setting("autostart", bool(on)))
        panel.show_state(manager.state if manager.running() else
                         "Ready: press Start" if manager.is_set_up() else "Not set up yet: press 'Set up local server'")
        self._refresh()
        if manager.running() and manager.url:
            self.connect_dock(manager.url, manager.token)

    def _refresh(self, *_args) -> None:  # noqa: ANN002 - any signal's arguments
        self.panel.set_running(self.manager.running())

    def autostart(self) -> None:
        """At QGIS start: start the server when it was set up and 'Start it with QGIS' is ticked."""
        if self.manager.is_set_up() and bool(local_setting("autostart", False)):
            self.start()

    def busy(self) -> bool:
        """True while the setup task runs."""
        return self.setup_task is not None and not self.setup_task.done

    def setup(self, source: str = DEFAULT_SOURCE, python: str = "") -> SetupTask | None:
        """Start the setup task (progress in the box and the task manager)."""
        if self.busy():
            return None
        set_local_setting("source", source)
        set_local_setting("python", python)
        task = self.setup_task = SetupTask(self.manager, source, python, self._setup_done)
        task.progressChanged.connect(lambda value: self._setup_progress(task, value))
        self.panel.set_setting_up(True)
        self.panel.progress.setValue(0)
        self.panel.show_state(f"Setting up the local server from {source}…")
        QgsApplication.taskManager().addTask(task)
        return task

    def _setup_progress(self, task: SetupTask, value: float) -> None:
        self.panel.progress.setValue(int(value))
        if task.step:
            self.panel.show_state(task.step)

    def cancel_setup(self) -> None:
        """Cancel the running setup (the running pip or venv command is stopped)."""
        if self.busy():
            self.setup_task.cancel()

    def _setup_done(self, task: SetupTask) -> None:
        self.panel.set_setting_up(False)
        if task.error:
            self.panel.show_state(task.error)
            QgsMessageLog.logMessage(task.error, LOG_TAG, Qgis.MessageLevel.Warning)
            return
        self.panel.progress.setValue(100)
        set_local_setting("autostart", True)
        self.panel.autostart_check.setChecked(True)
        self.manager.stop()  # a running server keeps the old code: start the newly installed one
        self.start()

    def start(self) -> None:
        """Start the server; the dock connects once it answers."""
        try:
            process = self.manager.start()
        except PluginError as exc:
            self.panel.show_state(str(exc))
            return
        self.panel.show_state(f"Starting the local server (pid {process.pid}, port {self.manager.port}); "
                              "the model loads first…")
        self._refresh()

    def stop(self) -> None:
        """Stop the server."""
        self.manager.stop()
        self._refresh()

    def connect_dock(self, url: str, token: str) -> None:
        """Point the dock and Processing at the local server and check it (the token is not saved again)."""
        self.dock.url_edit.setText(url)
        self.dock.token_edit.setText(token)
        QgsSettings().setValue(f"{PREFIX}/server_url", url)
        settings = self.controller.settings
        self.controller.settings = PluginSettings(url, token, settings.default_k, settings.authcfg)
        self._refresh()
        self.controller.check_server()

    def show_log(self) -> None:
        """Show the last lines of setup and server output."""
        self.log_dialog = LogDialog("\n".join(self.manager.log.tail(2000)), self.dock)
        self.log_dialog.show()

    def diagnostics(self) -> str:
        """The diagnostics text."""
        return self.manager.diagnostics(self.panel.source_edit.text().strip())

    def copy_diagnostics(self) -> None:
        """Copy versions, paths and the last log lines to the clipboard."""
        QApplication.clipboard().setText(self.diagnostics())
        self.panel.show_state("Diagnostics copied to the clipboard (they hold no token)")

    def shutdown(self) -> None:
        """Plugin unload: cancel a running setup (the manager itself is released by the plugin)."""
        self.cancel_setup()
        if self.log_dialog is not None:
            self.log_dialog.close()
