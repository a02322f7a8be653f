"""Run in a subprocess by test_plugin_qgis_local_server.py (not collected on its own), in a fresh QGIS profile:
the setup algorithm installs this checkout into a private environment, the server starts, the dock connects,
follows a new raster folder, indexes and searches; a killed server is restarted once. Needs pytest --noconftest
and HARMA_REPO, HARMA_RESULT (a JSON file for the outer test). The server is left running: QGIS's exit must end it.
"""
import json
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(os.environ["HARMA_REPO"])
sys.path[:0] = [str(REPO / "qgis_plugin"), str(REPO / "tests" / "plugin")]

import harma_search  # noqa: E402
from plugin_testing import RASTER, wait_until  # noqa: E402
from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import Qt  # noqa: E402


def run_setup_algorithm(source: str) -> tuple[dict, str]:
    """The Processing algorithm, as a script would run it; returns its results and its log."""
    alg = QgsApplication.processingRegistry().createAlgorithmById("harma_search:setup_local_server")
    assert alg is not None
    feedback = QgsProcessingFeedback()
    results, ok = alg.run({"SOURCE": source}, QgsProcessingContext(), feedback)
    assert ok, feedback.textLog()[-3000:]
    return results, feedback.textLog()


def test_setup_start_index_search_restart(qgis_iface):
    profile = Path(QgsApplication.qgisSettingsDirPath())
    assert not (profile / "harma_search").exists(), "profile is not fresh"
    plugin = harma_search.classFactory(qgis_iface)
    plugin.initProcessing()
    plugin.initGui()
    dock, controller, local = plugin.dock, plugin.controller, plugin.local
    manager = local.manager
    assert manager.folder == profile / "harma_search" and not manager.is_set_up()
    wait_until(lambda: not controller.busy(), "the first (failing) server check")

    results, log = run_setup_algorithm(str(REPO))
    url = results["SERVER_URL"]
    assert url.startswith("http://127.0.0.1:") and manager.url == url
    env_python = manager.env_dir / "bin" / "python"
    assert env_python.is_file()
    facts = {"url": url, "store": str(manager.store), "pids": [],
             "timings": [line for line in log.splitlines() if line.startswith(("Installed in", "Server answered"))]}
    facts["pids"].append(manager.process.pid)
    wait_until(lambda: controller.server is not None, "the dock to connect to the local server")
    assert dock.url_edit.text() == url and dock.server_state() == "ok"
    assert manager.token and manager.token_storage.startswith("QgsSettings")  # fresh profile: no master password
    assert manager.roots == ()  # no raster layer yet

    # a raster from a new folder: the server restarts (debounced) with that folder and the dock reconnects
    layer = QgsRasterLayer(str(RASTER), "grenada", "gdal")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    wait_until(lambda: "Restarting the local server" in local.panel.state_label.text(), "the roots restart")
    started = time.monotonic()
    wait_until(lambda: manager.url and manager.announced, "the restarted server")
    facts["restart_ready_s"] = round(time.monotonic() - started, 1)
    facts["pids"].append(manager.process.pid)
    assert manager.roots == (str(RASTER.parent),)
    wait_until(lambda: controller.server is not None and not controller.busy(), "the reconnect")

    # index the layer from the dock, then search it
    dock.refresh_raster_layers()
    rows = [dock.raster_list.item(i) for i in range(dock.raster_list.count())]
    next(item for item in rows if item.text().split("  · ")[0] == "grenada").setCheckState(Qt.CheckState.Checked)
    dock.index_collection_edit.setText("grenada")
    dock.tile_size_spin.setValue(128)
    dock.index_button.click()
    task = controller.index_task
    wait_until(lambda: task.result is not None, "indexing through the local server")
    assert task.result.value is not None and task.result.value.state == "done", task.result.error
    wait_until(lambda: not controller.busy(), "the status refresh after indexing")
    dock.collection_combo.setCurrentText("grenada")
    dock.query_edit.setText("houses")
    dock.preview_check.setChecked(False)
    dock.search_button.click()
    wait_until(lambda: controller.search_task.result is not None, "the search")
    assert controller.search_task.result.error == "" and len(dock.hits) > 0, controller.search_task.result.error
    facts["hits"] = len(dock.hits)

    # diagnostics and log: versions, paths, the last lines; never the token
    text = local.diagnostics()
    assert "QGIS: 3." in text and str(manager.env_dir) in text and "serving on" in text
    assert manager.token not in text
    local.show_log()
    assert "serving on" in local.log_dialog.text.toPlainText()
    local.log_dialog.close()

    # a server that dies by itself is restarted once, and the dock says so
    os.kill(manager.process.pid, signal.SIGKILL)
    wait_until(lambda: "restarting it once" in local.panel.state_label.text(), "the restart after a crash")
    wait_until(lambda: manager.url and manager.announced, "the server restarted after the crash")
    facts["pids"].append(manager.process.pid)
    wait_until(lambda: controller.server is not None and not controller.busy(), "the reconnect after the crash")
    assert "grenada" in controller.server.collections
    facts["log"] = str(manager.log.path)
    Path(os.environ["HARMA_RESULT"]).write_text(json.dumps(facts), encoding="utf-8")
    # no unload: QGIS's exit (aboutToQuit / interpreter exit) must stop the server
