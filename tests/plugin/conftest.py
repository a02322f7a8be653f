"""Plugin tests: plain logic tests run anywhere; test_plugin_qgis_* need QGIS's Python (see run.sh).

The QGIS tests share one live server (the real `python -m server` from the project venv, loopback, free
port, temporary store) and one collection indexed through the plugin's own dock and task.
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

# HARMA_PLUGIN_DIR runs the tests against another copy of the plugin (an older version, an unzipped package).
sys.path.insert(0, os.environ.get("HARMA_PLUGIN_DIR") or str(Path(__file__).resolve().parents[2] / "qgis_plugin"))

if importlib.util.find_spec("qgis") is None:
    # The project's own venv has no QGIS; tests/plugin/run.sh runs these with QGIS's Python.
    collect_ignore_glob = ["test_plugin_qgis_*.py"]
else:
    from plugin_testing import COLLECTION, RASTER, SERVER_PYTHON, LiveServer, wait_until


@pytest.fixture(scope="session")
def server_process(tmp_path_factory):
    """A real server on a free loopback port with a temporary store (the LiveServer)."""
    if not SERVER_PYTHON.exists():
        pytest.fail(f"{SERVER_PYTHON} is missing: create the project venv (see README) before the plugin tests")
    server = LiveServer(tmp_path_factory.mktemp("store"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def live_server(server_process):
    """URL (without /api/v1) of the session's live server."""
    return server_process.url


if importlib.util.find_spec("qgis") is not None:
    @pytest.fixture(scope="session", autouse=True)
    def auth_master_password(qgis_app):
        """The QGIS auth database unlocked, as for a user who set a master password (the token lives there)."""
        from qgis.core import QgsApplication

        assert QgsApplication.authManager().setMasterPassword("harma-test-master", True)


def load_plugin(iface, url: str):
    """Load the plugin like QGIS does and point it at url through the dock's settings and Retry button."""
    import harma_search

    instance = harma_search.classFactory(iface)
    instance.initProcessing()
    instance.initGui()
    wait_until(lambda: not instance.controller.busy(), "the first server check")
    instance.dock.url_edit.setText(url)
    instance.dock.retry_button.click()
    wait_until(lambda: not instance.controller.busy(), "the server check")
    assert instance.controller.server is not None, instance.controller.last_error
    return instance


@pytest.fixture(scope="module")
def plugin(qgis_iface, live_server):
    """A plugin instance for one test module (unloaded after it, so modules stay independent)."""
    instance = load_plugin(qgis_iface, live_server)
    yield instance
    instance.unload()


@pytest.fixture(scope="session")
def indexed(qgis_iface, live_server):
    """COLLECTION indexed from a raster layer through the dock's Index button; returns what was seen."""
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtCore import Qt

    instance = load_plugin(qgis_iface, live_server)
    layer = QgsRasterLayer(str(RASTER), "grenada", "gdal")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    dock, controller = instance.dock, instance.controller
    dock.refresh_raster_layers()
    rows = [dock.raster_list.item(i) for i in range(dock.raster_list.count())]
    next(item for item in rows if item.text().split("  · ")[0] == "grenada").setCheckState(Qt.CheckState.Checked)
    dock.index_collection_edit.setText(COLLECTION)
    dock.tile_size_spin.setValue(128)
    seen = {"labels": set(), "progress": []}
    dock.index_button.click()
    task = controller.index_task
    seen["in_task_manager"] = task in QgsApplication.taskManager().tasks()
    task.progressChanged.connect(lambda value: seen["progress"].append(value))

    def watch() -> bool:
        seen["labels"].add(dock.index_label.text())
        return task.result is not None

    wait_until(watch, "indexing the test raster")
    wait_until(lambda: not controller.busy(), "the status refresh after indexing")
    combo = dock.collection_combo
    seen.update(result=task.result, bar=dock.index_progress.value(),
                collections=[combo.itemText(i) for i in range(combo.count())],
                buttons=(dock.index_button.isEnabled(), dock.cancel_index_button.isEnabled()))
    QgsProject.instance().removeMapLayer(layer.id())
    instance.unload()
    return seen
