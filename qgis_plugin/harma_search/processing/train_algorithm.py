"""Processing algorithm 'Train HarMA adapter from labelled polygons': a server training job (POST /train).

Progress, ETA and cancel mirror the server job (GET/DELETE /jobs/<id>). When the run is done, the algorithm
offers the re-index: give a collection name and it asks the server to serve the new model (POST /model)
and indexes the same rasters into that collection with it; empty, it only reports the run folder.
"""
from __future__ import annotations

import time

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterField,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsProviderRegistry,
)

from ..logic import api
from ..logic.errors import CancelledError, PluginError, ServerResponseError
from ..logic.operations import POLL_SECONDS, cancel_job, run_index
from ..logic.params import IndexParams
from ..logic.sources import path_from_source, unique_paths
from ..logic.status import JobStatus, format_duration, parse_job
from .common import add_server_parameter, client_for


def describe_training(status: JobStatus) -> str:
    """One line: steps, images per second and ETA (the job API counts training steps as 'done')."""
    if not status.total:
        return f"{status.state}: reading labelled tiles and caching features"
    text = f"{status.state}: step {status.done}/{status.total}"
    if status.tiles_per_s:
        text += f" · {status.tiles_per_s:.1f} images/s"
    if not status.finished:
        text += f" · ETA {format_duration(status.eta_s)}"
    return text


class TrainAdapterAlgorithm(QgsProcessingAlgorithm):
    """Runs a server training job on raster layers and a labelled polygon layer."""

    RASTERS, POLYGONS, FIELD, TEMPLATE, EPOCHS = "RASTERS", "POLYGONS", "LABEL_FIELD", "TEMPLATE", "EPOCHS"
    TILE_SIZE, BATCH_SIZE, RUN, REINDEX = "TILE_SIZE", "BATCH_SIZE", "RUN", "REINDEX_COLLECTION"
    JOB_ID, STATE, RUN_DIR, REPORT = "JOB_ID", "STATE", "RUN_DIR", "REPORT"

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "train_adapter"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        """Name shown in the toolbox."""
        return "Train HarMA adapter from labelled polygons"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API name
        """Help shown beside the dialog."""
        return ("Fine-tunes the server's model on tiles of the raster layers labelled by the polygons' class "
                "field (a tile takes a label its polygons cover at least 30 % of; validation uses held-out "
                "blocks of tiles). Runs as a server job with progress, ETA and cancel. The server keeps its "
                "model until asked: give a collection to re-index into, and when training is done the server "
                "switches to the new model and indexes the rasters there. Files must lie under the server's "
                "allowed roots.")

    def createInstance(self) -> TrainAdapterAlgorithm:  # noqa: N802 - QGIS API name
        """A fresh copy (Processing runs copies)."""
        return TrainAdapterAlgorithm()

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API name
        """Declare parameters and outputs."""
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.RASTERS, "Raster layers", QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.POLYGONS, "Labelled polygons", [QgsProcessing.SourceType.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField(self.FIELD, "Label field", parentLayerParameterName=self.POLYGONS))
        self.addParameter(QgsProcessingParameterString(
            self.TEMPLATE, "Caption template", "an aerial image of {label}"))
        self.addParameter(QgsProcessingParameterNumber(
            self.EPOCHS, "Epochs", QgsProcessingParameterNumber.Type.Integer, 3, False, 1, 1000))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size in pixels (index with the same)", QgsProcessingParameterNumber.Type.Integer,
            256, False, 16, 8192))
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, "Batch size", QgsProcessingParameterNumber.Type.Integer, 64, False, 2, 4096))
        self.addParameter(QgsProcessingParameterString(self.RUN, "Run name (empty: dated)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.REINDEX, "When done, re-index the rasters with the new model into collection (empty: no)",
            optional=True))
        add_server_parameter(self)
        for key, label in ((self.JOB_ID, "Server job id"), (self.STATE, "Final job state"),
                           (self.RUN_DIR, "Run folder (a model for --model / POST /model)"),
                           (self.REPORT, "Validation before and after")):
            self.addOutput(QgsProcessingOutputString(key, label))

    def _body(self, parameters, context) -> dict:  # noqa: ANN001 - QGIS API objects
        rasters = []
        for layer in self.parameterAsLayerList(parameters, self.RASTERS, context):
            path = path_from_source(layer.source())
            if path is None:
                raise QgsProcessingException(f"Layer {layer.name()!r} is not a local raster file: export it first")
            rasters.append(path)
        polygons = self.parameterAsVectorLayer(parameters, self.POLYGONS, context)
        parts = QgsProviderRegistry.instance().decodeUri(polygons.providerType(), polygons.source())
        if polygons.providerType() != "ogr" or not parts.get("path"):
            raise QgsProcessingException(f"Layer {polygons.name()!r} is not a local vector file: save it as a "
                                         "GeoPackage first")
        body = {"raster": list(unique_paths(rasters)), "labels": parts["path"],
                "label_field": self.parameterAsString(parameters, self.FIELD, context),
                "caption_template": self.parameterAsString(parameters, self.TEMPLATE, context),
                "epochs": self.parameterAsInt(parameters, self.EPOCHS, context),
                "tile_size": self.parameterAsInt(parameters, self.TILE_SIZE, context),
                "batch_size": self.parameterAsInt(parameters, self.BATCH_SIZE, context)}
        if parts.get("layerName"):
            body["layer"] = parts["layerName"]
        if run := self.parameterAsString(parameters, self.RUN, context).strip():
            body["run"] = run
        return body

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802, ANN001 - QGIS API
        """Start the training job, poll it into the feedback, then optionally switch model and re-index."""
        body = self._body(parameters, context)
        reindex = self.parameterAsString(parameters, self.REINDEX, context).strip()
        client = client_for(self, parameters, context, feedback)
        try:
            started = client.detached().call(api.ApiRequest("POST", "/train", body))
            job_id = str(started.get("job_id", "")) if isinstance(started, dict) else ""
            if not job_id:
                raise ServerResponseError(f"the server started no training job: got {started!r}")
            feedback.pushInfo(f"Server job {job_id} started")
            status = self._poll(client, job_id, feedback)
            if status.state != "done":
                raise ServerResponseError(f"Training job {job_id} {status.state}: "
                                          f"{'; '.join(status.errors) or 'no detail'}")
            result = client.call(api.job_status(job_id)).get("result") or {}
            run_dir = str(result.get("run", ""))
            report = f"validation before: {result.get('init_val')}; best: {result.get('best_val')}"
            feedback.pushInfo(f"Trained {run_dir} ({report})")
            if reindex:
                switched = client.call(api.ApiRequest("POST", "/model", {"model": run_dir}))
                feedback.pushInfo(f"The server now runs {switched.get('model')}; re-indexing into {reindex!r}")
                index = run_index(client, IndexParams(collection=reindex, paths=tuple(body["raster"]),
                                                      tile_size=body["tile_size"]),
                                  lambda s: feedback.setProgressText(f"re-index {s.describe()}"), feedback.isCanceled)
                feedback.pushInfo(f"Re-indexed into {reindex!r}: {index.describe()}")
            else:
                feedback.pushInfo(f"To search with it, re-index: run this again with a collection to re-index "
                                  f"into, or start the server with --model {run_dir}")
        except PluginError as exc:
            raise QgsProcessingException(str(exc)) from exc
        return {self.JOB_ID: job_id, self.STATE: status.state, self.RUN_DIR: run_dir, self.REPORT: report}

    def _poll(self, client, job_id: str, feedback) -> JobStatus:  # noqa: ANN001 - QGIS API objects
        """Poll the job to its end; a cancel in QGIS cancels the server job (its last epoch is kept)."""
        try:
            while not feedback.isCanceled():
                status = parse_job(client.call(api.job_status(job_id)), job_id)
                feedback.setProgress(status.percent)
                feedback.setProgressText(describe_training(status))
                if status.finished:
                    return status
                time.sleep(POLL_SECONDS)
        except CancelledError:
            pass  # a poll aborted by the cancel: cancel the server job below
        final = cancel_job(client.detached(), job_id)
        raise CancelledError(f"Training cancelled by the user; server job {job_id} is {final.state} "
                             "(run again with the same run name to resume from the last finished epoch)")
