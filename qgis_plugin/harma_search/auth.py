"""The server token in QGIS's authentication database: QgsSettings keeps only the auth config id."""
from __future__ import annotations

from qgis.core import QgsApplication, QgsAuthMethodConfig

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
