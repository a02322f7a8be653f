"""The plugin loads and unloads cleanly in a real QGIS: dock, menu action, Processing provider, settings."""
from pathlib import Path

import harma_search
from harma_search.settings import PREFIX, PluginSettings, load_settings, save_settings
from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtWidgets import QDockWidget


def provider_ids():
    return {p.id() for p in QgsApplication.processingRegistry().providers()}


def test_load_and_unload_leave_nothing_behind(qgis_iface):
    before = provider_ids()
    plugin = harma_search.classFactory(qgis_iface)
    plugin.initProcessing()
    plugin.initGui()
    assert "harma_search" in provider_ids() - before
    algs = sorted(a.id() for a in QgsApplication.processingRegistry().providerById("harma_search").algorithms())
    assert {"harma_search:index_rasters", "harma_search:search_text"} <= set(algs)
    docks = [d for d in qgis_iface.mainWindow().findChildren(QDockWidget) if d.objectName() == "HarmaSearchDock"]
    assert docks == [plugin.dock]
    assert plugin.action.text() == "HarMA Search" and plugin.action.isChecked()
    plugin.action.setChecked(False)
    assert not plugin.dock.isUserVisible()
    controller = plugin.controller
    plugin.unload()
    assert provider_ids() == before
    assert controller.closed
    assert plugin.dock is None and plugin.action is None and plugin.provider is None


def test_settings_live_in_qgssettings_under_the_plugin_prefix():
    folder = Path(harma_search.__file__).parent
    files_before = {p for p in folder.rglob("*") if "__pycache__" not in p.parts}
    old = load_settings()
    try:
        save_settings(PluginSettings("http://127.0.0.1:9999", "secret", 7))
        assert QgsSettings().value(f"{PREFIX}/server_url") == "http://127.0.0.1:9999"
        assert load_settings() == PluginSettings("http://127.0.0.1:9999", "secret", 7)
    finally:
        save_settings(old)
    assert {p for p in folder.rglob("*") if "__pycache__" not in p.parts} == files_before
