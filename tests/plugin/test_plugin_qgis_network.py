"""The QGIS network client against a small recording HTTP server: token header, JSON errors, bodies."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from harma_search.logic import api
from harma_search.logic.errors import ServerResponseError
from harma_search.network import ServerClient


class Recorder(BaseHTTPRequestHandler):
    """Answers 401 without the right token, else echoes method, path, headers and body as JSON."""

    seen: list[dict] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        record = {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                  "type": self.headers.get("Content-Type"), "body": body}
        Recorder.seen.append(record)
        ok = record["auth"] == "Bearer s3cret"
        payload = json.dumps(record if ok else {"error": "unauthorized", "detail": "send the token"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_token_json_body_and_methods_reach_the_server(recorder_url):
    client = ServerClient(recorder_url + "/", token="s3cret")
    echoed = client.call(api.add_rasters("c 1", ["/data/a.tif"]))
    assert echoed["method"] == "POST" and echoed["path"] == "/api/v1/collections/c%201/rasters"
    assert echoed["type"] == "application/json" and json.loads(echoed["body"]) == {"paths": ["/data/a.tif"]}
    assert client.call(api.cancel_job("j9"))["method"] == "DELETE"
    assert client.call(api.health())["auth"] == "Bearer s3cret"


def test_missing_token_gives_the_servers_reason(recorder_url):
    with pytest.raises(ServerResponseError) as info:
        ServerClient(recorder_url).call(api.health())
    assert info.value.status == 401 and "send the token" in str(info.value)
    assert Recorder.seen[-1]["auth"] is None
