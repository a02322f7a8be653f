"""Plugin settings in QgsSettings under the plugin's prefix (never in the plugin folder).

The token itself lives in QGIS's authentication database; QgsSettings only holds its auth config id.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qgis.core import Qgis, QgsMessageLog, QgsSettings

from .auth import LOCAL_KEY, load_token, local_token, remove_token, store_token
from .logic.api import DEFAULT_SERVER_URL
from .logic.errors import PluginError
from .network import LOG_TAG

PREFIX = "harma_search"


@dataclass
class PluginSettings:
    """Server URL, token (in memory only) and default k; authcfg names the token's auth config."""

    server_url: str = DEFAULT_SERVER_URL
    token: str = ""
    default_k: int = 10
    authcfg: str = field(default="", compare=False)


def _migrate_plain_token(store: QgsSettings) -> None:
    """Move a token saved in plain text by older versions into the auth database (kept if that fails)."""
    plain = str(store.value(f"{PREFIX}/token", "", type=str))
    if not plain:
        return
    try:
        store.setValue(f"{PREFIX}/authcfg", store_token(plain, str(store.value(f"{PREFIX}/authcfg", "", type=str))))
    except PluginError as exc:
        QgsMessageLog.logMessage(f"The token stays in plain text for now. {exc}", LOG_TAG, Qgis.MessageLevel.Warning)
        return
    store.remove(f"{PREFIX}/token")


def is_local_url(url: str) -> bool:
    """True when url is the plugin's own server (its token is kept apart from the one typed in the dock)."""
    local = str(QgsSettings().value(f"{LOCAL_KEY}/url", "", type=str))
    return bool(local) and url.rstrip("/") == local


def load_settings(with_token: bool = True) -> PluginSettings:
    """Read the settings (defaults for missing keys); the token comes from the auth database.

    with_token=False leaves the auth database alone (it may ask for its master password), e.g. for defaults.
    """
    store = QgsSettings()
    if with_token:
        _migrate_plain_token(store)
    defaults = PluginSettings()
    authcfg = str(store.value(f"{PREFIX}/authcfg", "", type=str))
    url = str(store.value(f"{PREFIX}/server_url", defaults.server_url, type=str))
    token = ""
    if with_token:
        token = local_token()[0] if is_local_url(url) else load_token(authcfg)
    return PluginSettings(
        server_url=url,
        token=token,
        default_k=int(store.value(f"{PREFIX}/default_k", defaults.default_k, type=int)),
        authcfg=authcfg,
    )


def save_settings(settings: PluginSettings) -> PluginSettings:
    """Write the settings (the token into the auth database); return them with the auth config id set.

    Raises PluginError when the auth database refuses the token; nothing is written in plain text then.
    """
    store = QgsSettings()
    authcfg = settings.authcfg or str(store.value(f"{PREFIX}/authcfg", "", type=str))
    if is_local_url(settings.server_url):
        pass  # the local server's token has its own place (auth.local_token); the typed one stays as it was
    elif settings.token:
        if load_token(authcfg) != settings.token:
            authcfg = store_token(settings.token, authcfg)
    elif authcfg:
        remove_token(authcfg)
        authcfg = ""
    store.setValue(f"{PREFIX}/server_url", settings.server_url)
    store.setValue(f"{PREFIX}/default_k", int(settings.default_k))
    if authcfg:
        store.setValue(f"{PREFIX}/authcfg", authcfg)
    else:
        store.remove(f"{PREFIX}/authcfg")
    store.remove(f"{PREFIX}/token")
    return PluginSettings(settings.server_url, settings.token, settings.default_k, authcfg)
