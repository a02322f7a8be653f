"""A server that is down gives the clear message (how to start it, Retry), never a traceback."""
import socket

import harma_search
import pytest
from harma_search.logic import api
from harma_search.logic.errors import ServerUnavailableError
from harma_search.network import ServerClient
from plugin_testing import wait_task, wait_until


@pytest.fixture
def closed_port_url():
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_client_raises_the_clear_error(closed_port_url):
    with pytest.raises(ServerUnavailableError) as info:
        ServerClient(closed_port_url).call(api.health())
    message = str(info.value)
    assert closed_port_url in message and "python -m server" in message and "Retry" in message
    assert "Traceback" not in message


def test_dock_shows_the_message_then_recovers_on_retry(qgis_iface, closed_port_url, live_server):
    plugin = harma_search.classFactory(qgis_iface)
    plugin.initGui()
    try:
        dock, controller = plugin.dock, plugin.controller
        wait_until(lambda: not controller.busy(), "the first server check")
        dock.url_edit.setText(closed_port_url)
        dock.retry_button.click()
        wait_until(lambda: not controller.busy(), "the failing server check")
        status = dock.status_label.text()
        assert "not reachable" in status and "python -m server" in status and "Traceback" not in status
        assert controller.server is None
        before = controller.layer  # None, or a result an earlier search saved with the project and restored
        dock.collection_combo.setCurrentText("anything")
        dock.query_edit.setText("a river")
        dock.search_button.click()
        result = wait_task(controller.search_task)
        assert "not reachable" in result.error
        assert "not reachable" in dock.status_label.text()  # shown once, in the status line
        assert controller.layer is before  # a failed search adds no result
        dock.url_edit.setText(live_server)
        dock.retry_button.click()
        wait_until(lambda: not controller.busy(), "the server check after Retry")
        assert dock.status_label.text().startswith("Connected")
    finally:
        plugin.unload()


def test_server_errors_are_shown_with_the_servers_reason(plugin):
    dock = plugin.dock
    dock.collection_combo.setCurrentText("no-such-collection")
    dock.query_edit.setText("a river")
    dock.search_button.click()
    result = wait_task(plugin.controller.search_task)
    assert "no-such-collection" in result.error and "Server error 4" in result.error
    assert dock.search_label.text() == result.error
