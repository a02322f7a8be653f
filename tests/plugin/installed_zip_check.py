"""Run in a subprocess by test_plugin_qgis_package.py (not collected on its own): installs the plugin zip into
the fresh QGIS profile of this pytest session the way QGIS's 'Install from ZIP' does, then loads it through
qgis.utils like QGIS at startup. Needs HARMA_PLUGIN_ZIP and pytest --noconftest (no source tree on sys.path).
"""
import os
import sys
import time
import zipfile
from pathlib import Path

import qgis.utils
from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QDockWidget


def install_like_qgis(zip_path: str, plugins_dir: Path) -> str:
    """What QgsPluginInstaller.installFromZipFile does: root folder from metadata.txt, then unzip."""
    sys.path.append(str(Path(QgsApplication.pkgDataPath()) / "python"))
    from pyplugin_installer.unzip import unzip

    with zipfile.ZipFile(zip_path) as archive:
        metadata = sorted(name for name in archive.namelist() if name.endswith("metadata.txt"))
    name = os.path.split(metadata[0])[0]
    unzip(zip_path, str(plugins_dir))
    return name


def test_zip_installs_into_a_fresh_profile_and_loads(qgis_iface):
    profile = Path(QgsApplication.qgisSettingsDirPath())
    plugins_dir = profile / "python" / "plugins"
    assert not plugins_dir.exists() or not any(plugins_dir.iterdir()), "profile is not fresh"
    name = install_like_qgis(os.environ["HARMA_PLUGIN_ZIP"], plugins_dir)
    assert name == "harma_search"
    qgis.utils.plugin_paths[:] = [str(plugins_dir)]
    qgis.utils.home_plugin_path = str(plugins_dir)
    sys.path.insert(0, str(plugins_dir))
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.available_plugins == [name]
    assert qgis.utils.pluginMetadata(name, "qgisMinimumVersion") == "3.22"
    assert qgis.utils.pluginMetadata(name, "hasProcessingProvider") == "yes"
    assert qgis.utils.loadPlugin(name)
    assert Path(sys.modules[name].__file__).parent == plugins_dir / name
    assert qgis.utils.startProcessingPlugin(name)
    assert QgsApplication.processingRegistry().providerById("harma_search") is not None
    assert qgis.utils.unloadPlugin(name)
    assert qgis.utils.loadPlugin(name) and qgis.utils.startPlugin(name)
    plugin = qgis.utils.plugins[name]
    docks = qgis_iface.mainWindow().findChildren(QDockWidget, "HarmaSearchDock")
    assert plugin.dock in docks
    algs = [a.id() for a in QgsApplication.processingRegistry().providerById("harma_search").algorithms()]
    assert {"harma_search:index_rasters", "harma_search:search_text"} <= set(algs)
    deadline = time.monotonic() + 120  # a guard against hangs only
    while plugin.controller.busy() and time.monotonic() < deadline:  # the startup server check
        QgsApplication.processEvents()
    assert not plugin.controller.busy()
    assert qgis.utils.unloadPlugin(name)
    assert QgsApplication.processingRegistry().providerById("harma_search") is None
    assert name not in sys.modules
