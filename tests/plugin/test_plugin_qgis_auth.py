"""Issue 16 item 11: the token lives in QGIS's authentication database; QgsSettings holds only its id."""
import harma_search
from harma_search.settings import PREFIX, PluginSettings, load_settings, save_settings
from plugin_testing import wait_until
from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings
from test_plugin_qgis_network import Recorder, recorder_url  # noqa: F401 - the recording server fixture

SECRET = "s3cret"


def plugin_values() -> dict:
    store = QgsSettings()
    store.beginGroup(PREFIX)
    values = {key: store.value(key) for key in store.allKeys()}
    store.endGroup()
    return values


def stored_secret(authcfg: str) -> str:
    config = QgsAuthMethodConfig()
    assert QgsApplication.authManager().loadAuthenticationConfig(authcfg, config, True)
    return config.config("password")


def test_token_round_trip_through_the_auth_database():
    old = load_settings()
    try:
        saved = save_settings(PluginSettings("http://127.0.0.1:9999", SECRET, 7))
        values = plugin_values()
        assert all(SECRET not in str(v) for v in values.values()), values
        assert values["authcfg"] == saved.authcfg and len(saved.authcfg) == 7
        assert stored_secret(saved.authcfg) == SECRET
        loaded = load_settings()
        assert loaded == PluginSettings("http://127.0.0.1:9999", SECRET, 7) and loaded.authcfg == saved.authcfg
        again = save_settings(PluginSettings("http://127.0.0.1:9999", "other", 7, saved.authcfg))
        assert again.authcfg == saved.authcfg and stored_secret(saved.authcfg) == "other"  # updated in place
        save_settings(PluginSettings("http://127.0.0.1:9999", "", 7, saved.authcfg))
        assert "authcfg" not in plugin_values()
        assert saved.authcfg not in QgsApplication.authManager().configIds()
    finally:
        save_settings(old)


def test_a_plain_token_of_an_older_version_is_migrated():
    old = load_settings()
    try:
        save_settings(PluginSettings(old.server_url, "", old.default_k))
        QgsSettings().setValue(f"{PREFIX}/token", "plain-old")
        loaded = load_settings()
        assert loaded.token == "plain-old"
        values = plugin_values()
        assert "token" not in values and all("plain-old" not in str(v) for v in values.values())
        assert stored_secret(values["authcfg"]) == "plain-old"
    finally:
        save_settings(old)


def test_the_dock_sends_the_stored_token(qgis_iface, recorder_url):  # noqa: F811
    old = load_settings()
    plugin = harma_search.classFactory(qgis_iface)
    plugin.initGui()
    try:
        wait_until(lambda: not plugin.controller.busy(), "the first server check")
        plugin.dock.url_edit.setText(recorder_url)
        plugin.dock.token_edit.setText(SECRET)
        plugin.dock.retry_button.click()
        wait_until(lambda: not plugin.controller.busy(), "the check against the recorder")
        assert Recorder.seen[-1]["auth"] == f"Bearer {SECRET}"
        assert all(SECRET not in str(v) for v in plugin_values().values())
    finally:
        plugin.unload()
        save_settings(old)
