"""The plugin sets up and runs its own server: a real pip install of this checkout in a fresh QGIS profile.

The flow runs in a separate QGIS process (local_server_check.py) so that, once that QGIS has exited, this test
can check that no server process of it is left.
"""
import json
import os
import sys
from pathlib import Path

import pytest
from harma_search.auth import local_token
from harma_search.logic.local_server import pid_alive
from plugin_testing import REPO
from test_plugin_qgis_package import run_pytest_in_fresh_profile


def processes_using(marker: str) -> list[int]:
    """Pids whose command line mentions marker (Linux /proc; empty elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_setup_algorithm_installs_starts_indexes_searches_and_nothing_outlives_qgis(tmp_path):
    result = tmp_path / "result.json"
    root = tmp_path / "qgis"
    root.mkdir()
    done = run_pytest_in_fresh_profile(root, REPO / "tests" / "plugin" / "local_server_check.py",
                                       {"HARMA_REPO": str(REPO), "HARMA_RESULT": str(result)})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    facts = json.loads(result.read_text(encoding="utf-8"))
    print("local server facts:", {k: v for k, v in facts.items() if k != "log"})  # timings for the report
    assert facts["hits"] > 0 and len(set(facts["pids"])) == 3  # first start, new root, after the crash
    assert not [pid for pid in facts["pids"] if pid_alive(pid)], "a server outlived QGIS"
    assert processes_using(facts["store"]) == [], "a process still uses the local server's store"
    log = Path(facts["log"]).read_text(encoding="utf-8")
    assert "torch loaded: False" in log  # the install check: the server imports without torch
    assert "restarting it once" in log
    last = facts["pids"][-1]
    assert any("stopped the local server" in line and f"(pid {last})" in line for line in log.splitlines())


def test_local_token_goes_to_the_auth_database_when_it_is_unlocked(qgis_app):
    # the session's conftest set a master password, as a user who has one; a fresh profile uses QgsSettings
    token, kept_in = local_token()
    assert kept_in == "auth database" and len(token) >= 40
    assert local_token() == (token, "auth database")
    assert os.environ.get("HARMA_TOKEN") != token


def test_setup_in_the_dock_runs_as_a_task_and_can_be_cancelled(qgis_iface, tmp_path):
    import harma_search
    from plugin_testing import wait_until
    from qgis.core import QgsApplication

    plugin = harma_search.classFactory(qgis_iface)
    plugin.initProcessing()
    plugin.initGui()
    try:
        local = plugin.local
        local.manager.env_dir = tmp_path / "env"  # not the session profile's environment
        panel = local.panel
        panel.python_widget.setFilePath(sys.executable)
        panel.setup_button.click()
        task = local.setup_task
        assert task in QgsApplication.taskManager().tasks()
        assert not panel.setup_button.isEnabled() and panel.cancel_setup_button.isEnabled()
        wait_until(lambda: any(line.startswith("$ ") for line in local.manager.log.tail(5)), "the first command")
        panel.cancel_setup_button.click()
        wait_until(lambda: task.done, "the cancelled setup")
        assert "ancel" in task.error and "ancel" in panel.state_label.text()
        assert panel.setup_button.isEnabled() and not panel.cancel_setup_button.isEnabled()
        assert not local.manager.running()
    finally:
        plugin.unload()
