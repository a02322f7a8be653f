"""'Train HarMA adapter from labelled polygons' through processing.run against its own live server.

A harma-tiny server (short training) on a labelled UCM mosaic built by tools/mosaic.py: progress into the
feedback (no images/s in the first steps), the readable before/after table, the offered re-index (a collection's
reindex job followed with real progress, or a new collection with the new model), and cancel read as cancelled.
"""
import json
import subprocess
import threading
import time
import urllib.request

import processing
import pytest
from plugin_testing import REPO, SERVER_PYTHON, WAIT_LIMIT_S, get_json, wait_until
from qgis.core import (
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

UCM = REPO / ".." / "shared" / "data" / "captions" / "ucm_captions"


class RecordingFeedback(QgsProcessingFeedback):
    """Feedback recording progress values and texts; cancels itself once progress passes cancel_after."""

    def __init__(self, cancel_after: float | None = None) -> None:
        super().__init__()
        self.values: list[float] = []
        self.texts: list[str] = []
        self.pairs: list[tuple[str, float]] = []  # (progress text at the time, progress value)
        self.cancel_after = cancel_after
        self.progressChanged.connect(self._record)

    def setProgressText(self, text: str) -> None:  # noqa: N802 - QGIS API name
        self.texts.append(text)
        super().setProgressText(text)

    def _record(self, value: float) -> None:
        self.values.append(value)
        self.pairs.append((self.texts[-1] if self.texts else "", value))
        if self.cancel_after is not None and value > self.cancel_after:
            self.cancel()


@pytest.fixture(scope="module")
def provider(qgis_processing):
    """The plugin's Processing provider, registered as the plugin does (no harma-lite server needed)."""
    from harma_search.processing.provider import HarmaProvider
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    added = None
    if registry.providerById("harma_search") is None:
        added = HarmaProvider()
        assert registry.addProvider(added)
    yield
    if added is not None:
        registry.removeProvider(added)


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory, provider):
    """(URL, mosaic folder) of a harma-tiny server whose allowed root holds a labelled mosaic."""
    data = tmp_path_factory.mktemp("mosaic")
    subprocess.run([str(SERVER_PYTHON), "tools/mosaic.py", str(UCM), "--split", "train", "--per-class", "2",
                    "--classes", "beach", "forest", "freeway", "harbor", "parkinglot", "river",
                    "--out", str(data / "mosaic")], cwd=REPO, check=True, capture_output=True)
    proc = subprocess.Popen([str(SERVER_PYTHON), "-m", "server", "--store", str(data / "store"), "--host",
                             "127.0.0.1", "--port", "0", "--allowed-root", str(data), "--model", "harma-tiny",
                             "--runtime", "torch"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    found: list[str] = []
    threading.Thread(target=lambda: [found.append(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not any("serving on http://" in line for line in found):
        assert proc.poll() is None and time.monotonic() < deadline, "server did not start:\n" + "".join(found)
        time.sleep(0.2)
    url = next(line for line in found if "serving on" in line).split("serving on ", 1)[1].split()[0]
    yield url.removesuffix("/api/v1"), data
    proc.terminate()
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def layers(tiny_server):
    """(raster layer id, polygon layer id) of the mosaic, owned by the project as a user's layers are.

    Layer objects handed to processing.run outside a project outlive QGIS and crash its exit.
    """
    _, data = tiny_server
    raster = QgsRasterLayer(str(data / "mosaic.tif"), "mosaic", "gdal")
    polygons = QgsVectorLayer(f"{data / 'mosaic.gpkg'}|layername=cells", "cells", "ogr")
    assert raster.isValid() and polygons.isValid()
    QgsProject.instance().addMapLayers([raster, polygons])
    yield raster.id(), polygons.id()
    QgsProject.instance().removeAllMapLayers()


def _params(url, layers, **extra):
    return {"RASTERS": [layers[0]], "POLYGONS": layers[1], "LABEL_FIELD": "label", "EPOCHS": 2, "TILE_SIZE": 256,
            "BATCH_SIZE": 4, "SERVER_URL": url, **extra}


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback test server
        return json.loads(resp.read())


def test_training_reports_progress_and_a_readable_table(tiny_server, layers):
    url, _ = tiny_server
    served = get_json(f"{url}/api/v1/health")["model"]
    feedback = RecordingFeedback()
    out = processing.run("harma_search:train_adapter", _params(url, layers, RUN="qgis1"), feedback=feedback)
    assert out["STATE"] == "done" and out["RUN_DIR"].endswith("runs/qgis1") and out["REINDEXED_INTO"] == ""
    report = out["REPORT"]
    assert "Validation 'polygons'" in report and "before → after" in report, report
    for label in ("class P@10", "top-1 accuracy", "val score"):
        row = next(line for line in report.splitlines() if line.strip().startswith(label))
        assert "→" in row and "{" not in row, report
    assert feedback.values and max(feedback.values) == 100
    steps = [t for t in feedback.texts if t.startswith("running: step")]
    assert not steps or "measuring speed" in steps[0]  # no images/s from the first steps
    assert get_json(f"{url}/api/v1/health")["model"] == served  # no collection given: the model stays


def test_reindex_with_the_new_model_follows_the_job(tiny_server, layers):
    url, data = tiny_server
    _post(f"{url}/api/v1/collections", {"name": "base", "tile_size": 32})  # many small tiles: a job of a few polls
    job = _post(f"{url}/api/v1/collections/base/rasters", {"paths": [str(data / "mosaic.tif")]})["job_id"]
    wait_until(lambda: get_json(f"{url}/api/v1/jobs/{job}")["state"] == "done", "base indexed")
    feedback = RecordingFeedback()
    out = processing.run("harma_search:train_adapter", _params(url, layers, RUN="qgis1", REINDEX_COLLECTION="base"),
                         feedback=feedback)
    assert out["STATE"] == "done" and out["REINDEXED_INTO"] == "base-qgis1"
    reindex = [value for text, value in feedback.pairs if text.startswith("re-index ")]
    assert any(0 < value < 100 for value in reindex), feedback.pairs
    assert reindex[-1] == 100
    listing = {c["name"]: c for c in get_json(f"{url}/api/v1/collections")["collections"]}
    assert listing["base-qgis1"]["model"]["source"].endswith("runs/qgis1")
    assert not listing["base"]["model"]["source"].endswith("runs/qgis1")  # the old collection stays as it was
    assert get_json(f"{url}/api/v1/collections/base-qgis1")["tiles"] == get_json(f"{url}/api/v1/collections/base")["tiles"]

    out = processing.run("harma_search:train_adapter", _params(url, layers, RUN="qgis1", REINDEX_COLLECTION="tuned"),
                         feedback=RecordingFeedback())
    assert out["REINDEXED_INTO"] == "tuned" and get_json(f"{url}/api/v1/collections/tuned")["tiles"] == 12


def test_cancel_in_qgis_reads_as_cancelled(tiny_server, layers):
    url, _ = tiny_server
    feedback = RecordingFeedback(cancel_after=0.0)
    out = processing.run("harma_search:train_adapter", _params(url, layers, RUN="long", EPOCHS=500),
                         feedback=feedback)
    assert out["STATE"] == "cancelled" and out["REPORT"].startswith("Training cancelled; run it again")
    assert feedback.texts[-1].startswith("Training cancelled; run it again")
    assert not any("failed" in t for t in feedback.texts)
    assert get_json(f"{url}/api/v1/jobs/{out['JOB_ID']}")["state"] == "cancelled"


def test_bad_label_field_is_reported(tiny_server, layers):
    url, _ = tiny_server
    with pytest.raises(QgsProcessingException, match="failed: .*label field 'split' has one class only"):
        processing.run("harma_search:train_adapter", _params(url, layers, LABEL_FIELD="split", RUN="bad"))
