"""The plugin's one user-facing error type and its few children; messages say what to do next."""


class PluginError(Exception):
    """An error whose message is shown to the analyst as is (no traceback)."""


class InputError(PluginError, ValueError):
    """A search or indexing request the dock or an algorithm cannot send as it stands."""


class ServerUnavailableError(PluginError):
    """The server could not be reached at all (not running, wrong URL, blocked)."""


class ServerResponseError(PluginError):
    """The server answered with an error status or a body that is not the expected JSON."""

    def __init__(self, message: str, status: int | None = None, error: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class CancelledError(PluginError):
    """The analyst cancelled the operation (the server-side job was cancelled too)."""
