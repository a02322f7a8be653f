"""The packaged zip: right layout and metadata, installs into a fresh QGIS profile and loads there."""
import configparser
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile

import pytest
from plugin_testing import COLLECTION, REPO

SHARED_CHECK = REPO / ".." / "shared" / "checks" / "test_plugin_loads.py"
QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"
REQUIRED_METADATA = ("name", "description", "about", "version", "qgisMinimumVersion", "author", "email",
                     "hasProcessingProvider", "homepage", "tracker", "repository", "tags", "icon")


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    """Build the zip with the real tool, as a user would."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, str(REPO / "tools" / "package_plugin.py"), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    path = done.stdout.strip().splitlines()[-1]
    assert os.path.isfile(path) and path.endswith(".zip")
    return path


def run_pytest_in_fresh_profile(root, test_file, env_extra):
    """pytest (with pytest-qgis) in a new root: its .qgis-settings is a brand-new QGIS profile."""
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--noconftest",
         "--qgis_disable_gui", "-c", str(root / "pytest.ini"), "--rootdir", str(root), str(test_file)],
        cwd=root, env=env, capture_output=True, text=True)


def test_zip_layout_and_metadata(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as archive:
        names = archive.namelist()
        metadata_text = archive.read("harma_search/metadata.txt").decode("utf-8")
    assert {name.split("/", 1)[0] for name in names} == {"harma_search"}
    assert "harma_search/__init__.py" in names and "harma_search/icon.svg" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(metadata_text)
    general = parser["general"]
    assert [key for key in REQUIRED_METADATA if not general.get(key)] == []
    assert general["qgisMinimumVersion"] == "3.22" and general["hasProcessingProvider"] == "yes"
    assert "python -m server" in general["about"]
    assert "harma_search/" + general["icon"] in names


def test_zip_installs_and_loads_in_a_fresh_profile(plugin_zip, tmp_path):
    done = run_pytest_in_fresh_profile(tmp_path, REPO / "tests" / "plugin" / "installed_zip_check.py",
                                       {"HARMA_PLUGIN_ZIP": plugin_zip})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
    assert (tmp_path / ".qgis-settings" / "profiles" / "default" / "python" / "plugins" / "harma_search"
            / "metadata.txt").is_file()


def test_qgis_process_runs_the_installed_search_algorithm(plugin_zip, tmp_path, indexed, live_server):
    profile = tmp_path / "profiles" / "default"
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(profile / "python" / "plugins")
    (profile / "QGIS").mkdir(parents=True)
    (profile / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\nharma_search=true\n", encoding="utf-8")
    out = tmp_path / "hits.gpkg"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp_path))
    # qgis_process.bin: Debian's qgis_process wrapper adds --noversioncheck, which qgis_process rejects
    done = subprocess.run(
        [QGIS_PROCESS, "--json", "run", "harma_search:search_text", f"--COLLECTION={COLLECTION}",
         "--QUERY=houses", "--K=3", f"--SERVER_URL={live_server}", f"--OUTPUT={out}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout[done.stdout.index("{"):])["results"]["OUTPUT"] == str(out)
    with sqlite3.connect(out) as db:
        table = db.execute("select table_name from gpkg_contents where data_type = 'features'").fetchone()[0]
        ranks = [row[0] for row in db.execute(f'select rank from "{table}" order by rank')]
    assert ranks == [1, 2, 3]


def test_shared_check_passes_on_the_unzipped_package(plugin_zip, tmp_path):
    unpacked = tmp_path / "unzipped"
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(unpacked)
    run_root = tmp_path / "run"
    run_root.mkdir()
    done = run_pytest_in_fresh_profile(run_root, SHARED_CHECK.resolve(),
                                       {"PLUGIN_DIR": str(unpacked / "harma_search")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ALGS" in done.stdout and "harma_search:search_text" in done.stdout
