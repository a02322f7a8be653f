"""Processing algorithm 'Set up local HarMA server': private environment, install, start; outputs the URL."""
from __future__ import annotations

import time

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from ..local_manager import get_manager, set_local_setting
from ..logic.errors import PluginError
from ..logic.local_install import DEFAULT_SOURCE, run_setup

READY_TIMEOUT_S = 600


class SetupServerAlgorithm(QgsProcessingAlgorithm):
    """Sets up the plugin's own server (as the dock's 'Set up local server') and waits until it answers."""

    SOURCE, PYTHON, SERVER_URL = "SOURCE", "PYTHON", "SERVER_URL"

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "setup_local_server"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        """Name shown in the toolbox."""
        return "Set up local HarMA server"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API name
        """Help shown beside the dialog."""
        return ("Creates a private Python environment in the QGIS profile folder (with uv when it is on PATH, "
                "else the chosen or a found Python >= 3.10), installs the serving package into it (the PyPI name "
                "harma-search, or a wheel or folder for offline sites) and starts the server on a free loopback "
                "port, readable folders = those of the project's raster layers. The server runs until QGIS closes.")

    def createInstance(self) -> SetupServerAlgorithm:  # noqa: N802 - QGIS API name
        """A fresh copy (Processing runs copies)."""
        return SetupServerAlgorithm()

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API name
        """Declare parameters and outputs."""
        self.addParameter(QgsProcessingParameterString(
            self.SOURCE, "Package source (PyPI name, wheel or folder)", DEFAULT_SOURCE))
        self.addParameter(QgsProcessingParameterFile(
            self.PYTHON, "Python to use (empty: uv or one found)", QgsProcessingParameterFile.Behavior.File,
            optional=True))
        self.addOutput(QgsProcessingOutputString(self.SERVER_URL, "Server URL"))

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802, ANN001 - QGIS API
        """Install (progress and cancel through feedback), start, wait for the server's URL."""
        source = self.parameterAsString(parameters, self.SOURCE, context).strip() or DEFAULT_SOURCE
        python = self.parameterAsFile(parameters, self.PYTHON, context).strip()
        manager = get_manager()
        set_local_setting("source", source)

        def line(text: str) -> None:
            manager.log.add(text)
            feedback.pushConsoleInfo(text)

        def progress(percent: float, text: str) -> None:
            feedback.setProgress(percent * 0.9)
            feedback.setProgressText(text)

        try:
            started = time.monotonic()
            run_setup(manager.env_dir, source, python, line, progress, feedback.isCanceled)
            feedback.pushInfo(f"Installed in {time.monotonic() - started:.1f} s")
            manager.stop()  # a running server keeps the old code: start the newly installed one
            started = time.monotonic()
            process = manager.start()
            feedback.setProgressText(f"Starting the server (pid {process.pid}); the model loads first")
            url = process.wait_ready(READY_TIMEOUT_S, feedback.isCanceled)
            feedback.pushInfo(f"Server answered {time.monotonic() - started:.1f} s after its start")
        except PluginError as exc:
            raise QgsProcessingException(str(exc)) from exc
        set_local_setting("autostart", True)
        feedback.setProgress(100)
        feedback.pushInfo(f"Local server running at {url} (pid {process.pid})")
        return {self.SERVER_URL: url}
