"""The Processing algorithms through processing.run against the live server (progress, sink, cancel)."""
import processing
import pytest
from plugin_testing import COLLECTION, GEOTIFF, RASTER, get_json
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer, QgsVectorLayer


class RecordingFeedback(QgsProcessingFeedback):
    """Feedback that records progress and can cancel itself at the first progress report."""

    def __init__(self, cancel_on_progress: bool = False) -> None:
        super().__init__()
        self.values: list[float] = []
        self.cancel_on_progress = cancel_on_progress
        self.progressChanged.connect(self._record)

    def _record(self, value: float) -> None:
        self.values.append(value)
        if self.cancel_on_progress:
            self.cancel()


@pytest.fixture(scope="module", autouse=True)
def algorithms(qgis_processing, plugin):
    """Processing initialised and the plugin's provider registered."""
    return plugin


def test_search_algorithm_writes_hits_to_the_sink(indexed, live_server):
    out = processing.run("harma_search:search_text", {
        "COLLECTION": COLLECTION, "QUERY": "clouds over the sea", "K": 4, "SERVER_URL": live_server,
        "OUTPUT": "memory:hits"})
    layer = out["OUTPUT"]
    assert isinstance(layer, QgsVectorLayer), layer  # processing.run hands memory outputs back as layers
    assert layer.featureCount() == 4
    assert [f["rank"] for f in layer.getFeatures()] == [1, 2, 3, 4]
    assert all(f.geometry().isGeosValid() for f in layer.getFeatures())
    assert layer.crs().authid() == "EPSG:4326"


def test_search_algorithm_reports_a_bad_collection(indexed, live_server):
    with pytest.raises(QgsProcessingException, match="no-such"):
        processing.run("harma_search:search_text", {
            "COLLECTION": "no-such", "QUERY": "x", "K": 3, "SERVER_URL": live_server, "OUTPUT": "memory:"})


def test_index_algorithm_reports_progress_through_feedback(live_server):
    feedback = RecordingFeedback()
    layer = QgsRasterLayer(str(RASTER), "grenada", "gdal")
    out = processing.run("harma_search:index_rasters", {
        "INPUT": [layer], "COLLECTION": "processing", "TILE_SIZE": 160, "SERVER_URL": live_server},
        feedback=feedback)
    assert out["STATE"] == "done" and out["TILES"] > 0 and out["JOB_ID"]
    assert feedback.values and feedback.values[-1] == 100
    assert get_json(f"{live_server}/api/v1/jobs/{out['JOB_ID']}")["state"] == "done"
    assert "processing" in get_json(f"{live_server}/api/v1/health")["collections"]


def test_cancelling_the_index_algorithm_cancels_the_server_job(live_server):
    feedback = RecordingFeedback(cancel_on_progress=True)
    with pytest.raises(QgsProcessingException, match="cancelled") as info:
        processing.run("harma_search:index_rasters", {
            "FOLDER": str(GEOTIFF), "COLLECTION": "processing-cancel", "TILE_SIZE": 32,
            "SERVER_URL": live_server}, feedback=feedback)
    job_id = str(info.value).split("server job ", 1)[1].split()[0]
    job = get_json(f"{live_server}/api/v1/jobs/{job_id}")
    assert job["state"] == "cancelled" and (job["done"] < job["total"] or job["total"] == 0)


def test_search_algorithm_works_inside_a_model(indexed, live_server):
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterString,
    )

    model = QgsProcessingModelAlgorithm("HarMA model", "tests")
    model.addModelParameter(QgsProcessingParameterString("query", "Query"), QgsProcessingModelParameter("query"))
    child = QgsProcessingModelChildAlgorithm("harma_search:search_text")
    child.setChildId("search")
    child.addParameterSources("QUERY", [QgsProcessingModelChildParameterSource.fromModelParameter("query")])
    for name, value in (("COLLECTION", COLLECTION), ("K", 2), ("SERVER_URL", live_server)):
        child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    output = QgsProcessingModelOutput("hits")
    output.setChildId("search")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"hits": output})
    model.addChildAlgorithm(child)
    ok, errors = model.validate()
    assert ok, errors
    out = processing.run(model, {"query": "green fields", "search:hits": "memory:"})
    layer = out["search:hits"]
    assert isinstance(layer, QgsVectorLayer), layer
    assert [f["query"] for f in layer.getFeatures()] == ["green fields", "green fields"]


def test_search_algorithm_reports_progress_and_styles_its_loaded_output(indexed, live_server):
    from qgis.core import QgsCategorizedSymbolRenderer, QgsProject

    feedback = RecordingFeedback()
    out = processing.runAndLoadResults("harma_search:search_text", {
        "COLLECTION": COLLECTION, "QUERY": "a beach", "K": 5, "SERVER_URL": live_server,
        "OUTPUT": "TEMPORARY_OUTPUT"}, feedback=feedback)
    assert feedback.values and feedback.values[-1] == 100
    assert any(0 < v < 100 for v in feedback.values)
    layer = QgsProject.instance().mapLayer(out["OUTPUT"])
    try:
        assert isinstance(layer, QgsVectorLayer) and layer.featureCount() == 5
        assert isinstance(layer.renderer(), QgsCategorizedSymbolRenderer)  # by relevance in words (issue 27)
        assert layer.renderer().classAttribute() == "match"
        assert layer.labelsEnabled() and "rank" in layer.labeling().settings().fieldName
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
