"""The plugin's HTTP client: QgsBlockingNetworkRequest, so QGIS's proxy, auth and SSL settings apply."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsBlockingNetworkRequest, QgsFeedback, QgsMessageLog
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtNetwork import QNetworkRequest

from .logic import api
from .logic.errors import CancelledError, ServerUnavailableError

USER_AGENT = b"harma-search-qgis-plugin"
LOG_TAG = "HarMA Search"


class ServerClient:
    """Sends ApiRequests to one server; blocking, so use it inside a QgsTask or a Processing algorithm.

    feedback (a task's or an algorithm's) cancels between requests, never in the middle of one.
    """

    def __init__(self, base_url: str, token: str = "", feedback: QgsFeedback | None = None) -> None:
        self.base_url = api.normalise_base_url(base_url)
        self.token = token
        self.feedback = feedback

    def detached(self) -> ServerClient:
        """A client for the same server that is not cancelled with this one's feedback."""
        return ServerClient(self.base_url, self.token, None)

    def _request(self, req: api.ApiRequest) -> QNetworkRequest:
        request = QNetworkRequest(QUrl(req.url(self.base_url)))
        request.setRawHeader(b"User-Agent", USER_AGENT)
        request.setRawHeader(b"Accept", b"application/json")
        if req.body is not None:
            request.setHeader(QNetworkRequest.KnownHeaders.ContentTypeHeader, "application/json")
        if self.token:
            request.setRawHeader(b"Authorization", b"Bearer " + self.token.encode("utf-8"))
        return request

    def _cancelled(self) -> bool:
        return self.feedback is not None and self.feedback.isCanceled()

    def _send(self, req: api.ApiRequest) -> bytes:
        url = req.url(self.base_url)
        if self._cancelled():
            raise CancelledError(f"Cancelled before {req.method} {url}")
        blocking = QgsBlockingNetworkRequest()
        request = self._request(req)
        # The feedback is deliberately not handed to QgsBlockingNetworkRequest: in QGIS 3.22 a cancel that
        # arrives from another thread while the reply is starting can leave the request's event loop waiting
        # forever (seen in tests). Requests here are short; cancellation is checked before and after each.
        if req.method == "GET":
            blocking.get(request, True)
        elif req.method == "POST":
            blocking.post(request, req.payload(), True)
        elif req.method == "DELETE":
            blocking.deleteResource(request)
        else:
            raise ValueError(f"unsupported HTTP method {req.method!r}")
        if self._cancelled():
            raise CancelledError(f"Cancelled: {req.method} {url}")
        reply = blocking.reply()
        raw = bytes(reply.content())
        status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
        if status is None:  # no HTTP answer at all: refused, timed out, DNS, SSL
            reason = str(reply.errorString()) or blocking.errorMessage()
            QgsMessageLog.logMessage(f"{req.method} {url}: {blocking.errorMessage()}", LOG_TAG, Qgis.MessageLevel.Info)
            raise ServerUnavailableError(
                f"Server not reachable at {self.base_url} ({reason[:60]}): start it with 'python -m server …' "
                "or fix the URL in the Server tab, then press Retry"
            )
        if int(status) >= 400:
            raise api.error_from_response(int(status), raw, url)
        return raw

    def call(self, req: api.ApiRequest) -> Any:
        """Send req and return its decoded JSON body."""
        return api.decode_json(self._send(req), req.url(self.base_url))

    def download(self, req: api.ApiRequest, dest: str) -> str:
        """Send req and write the raw body to dest."""
        Path(dest).write_bytes(self._send(req))
        return dest
