"""The server token in QGIS's authentication database: QgsSettings keeps only the auth config id."""
from __future__ import annotations

import secrets

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings

from .logic.errors import PluginError

CONFIG_NAME = "HarMA Search server token"
# A method every QGIS build has; the plugin reads the secret back and sends it as a Bearer header itself.
METHOD = "Basic"
SAVE_FIX = ("Could not save the token in the QGIS authentication database: set its master password "
            "(Settings ▸ Options ▸ Authentication), then press Connect again")


def store_token(token: str, authcfg: str = "") -> str:
    """Save token in the auth database (updating authcfg when it exists); return the config id."""
    manager = QgsApplication.authManager()
    config = QgsAuthMethodConfig(METHOD)
    config.setName(CONFIG_NAME)
    config.setConfig("username", "token")
    config.setConfig("password", token)
    if authcfg and authcfg in manager.configIds():
        config.setId(authcfg)
        ok = manager.updateAuthenticationConfig(config)
    else:
        ok = manager.storeAuthenticationConfig(config)
    if not ok or not config.id():
        raise PluginError(SAVE_FIX)
    return config.id()


def load_token(authcfg: str) -> str:
    """The token kept under authcfg ('' when there is none or it cannot be decrypted)."""
    if not authcfg:
        return ""
    config = QgsAuthMethodConfig()
    if not QgsApplication.authManager().loadAuthenticationConfig(authcfg, config, True):
        return ""
    return config.config("password", "")


def remove_token(authcfg: str) -> None:
    """Delete the auth config authcfg (nothing when it does not exist)."""
    manager = QgsApplication.authManager()
    if authcfg and authcfg in manager.configIds():
        manager.removeAuthenticationConfig(authcfg)


LOCAL_CONFIG_NAME = "HarMA Search local server token"
LOCAL_KEY = "harma_search/local"


def local_token() -> tuple[str, str]:
    """The local server's token and where it is kept ('auth database' or 'QgsSettings'); made on first use.

    The token goes to the auth database; where that refuses it (no master password set, e.g. a fresh profile
    or a headless QGIS) it is kept in QgsSettings instead: it guards a loopback-only server of this profile.
    """
    store = QgsSettings()
    authcfg = str(store.value(f"{LOCAL_KEY}/authcfg", "", type=str))
    token = load_token(authcfg)
    if token:
        return token, "auth database"
    token = str(store.value(f"{LOCAL_KEY}/token", "", type=str)) or secrets.token_urlsafe(32)
    manager = QgsApplication.authManager()
    if not manager.isDisabled() and (manager.masterPasswordIsSet() or manager.masterPasswordHashInDatabase()):
        config = QgsAuthMethodConfig(METHOD)
        config.setName(LOCAL_CONFIG_NAME)
        config.setConfig("username", "token")
        config.setConfig("password", token)
        stored = manager.storeAuthenticationConfig(config)  # (ok, config) in 3.22's bindings
        ok, saved = stored if isinstance(stored, tuple) else (stored, config)
        if ok and saved.id():
            store.setValue(f"{LOCAL_KEY}/authcfg", saved.id())
            store.remove(f"{LOCAL_KEY}/token")
            return token, "auth database"
    store.setValue(f"{LOCAL_KEY}/token", token)
    return token, "QgsSettings (the auth database has no master password)"
