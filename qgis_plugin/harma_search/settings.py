"""Plugin settings in QgsSettings under the plugin's prefix (never in the plugin folder)."""
from __future__ import annotations

from dataclasses import dataclass

from qgis.core import QgsSettings

from .logic.api import DEFAULT_SERVER_URL

PREFIX = "harma_search"


@dataclass
class PluginSettings:
    """Server URL, token and default k."""

    server_url: str = DEFAULT_SERVER_URL
    token: str = ""
    default_k: int = 10


def load_settings() -> PluginSettings:
    """Read the settings (defaults for missing keys)."""
    store = QgsSettings()
    defaults = PluginSettings()
    return PluginSettings(
        server_url=str(store.value(f"{PREFIX}/server_url", defaults.server_url, type=str)),
        token=str(store.value(f"{PREFIX}/token", defaults.token, type=str)),
        default_k=int(store.value(f"{PREFIX}/default_k", defaults.default_k, type=int)),
    )


def save_settings(settings: PluginSettings) -> None:
    """Write the settings."""
    store = QgsSettings()
    store.setValue(f"{PREFIX}/server_url", settings.server_url)
    store.setValue(f"{PREFIX}/token", settings.token)
    store.setValue(f"{PREFIX}/default_k", int(settings.default_k))
