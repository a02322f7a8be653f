"""Processing algorithm 'Train HarMA adapter from labelled polygons': a server training job (POST /train).

Progress, ETA and cancel mirror the server job (GET/DELETE /jobs/<id>); a cancel is reported as cancelled (state
'cancelled', the run resumes when run again), not as an error. The result is a readable before/after validation
table. When the run is done, the algorithm offers the re-index: give a collection and the server re-indexes its
rasters with the new model into '<collection>-<run>' (POST /collections/<name>/reindex, a job followed with its
progress); a collection not on the server is created with the new model from the training rasters.
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
from ..logic.operations import POLL_SECONDS, cancel_job, run_index, run_reindex
from ..logic.params import IndexParams
from ..logic.sources import path_from_source, unique_paths
from ..logic.status import JobStatus, parse_collections, parse_job
from ..logic.training import CANCELLED_TEXT, TrainingWatch, reindex_target, report_table
from .common import add_server_parameter, client_for


class TrainAdapterAlgorithm(QgsProcessingAlgorithm):
    """Runs a server training job on raster layers and a labelled polygon layer."""

    RASTERS, POLYGONS, FIELD, TEMPLATE, EPOCHS = "RASTERS", "POLYGONS", "LABEL_FIELD", "TEMPLATE", "EPOCHS"
    TILE_SIZE, BATCH_SIZE, RUN, REINDEX = "TILE_SIZE", "BATCH_SIZE", "RUN", "REINDEX_COLLECTION"
    JOB_ID, STATE, RUN_DIR, REPORT, INTO = "JOB_ID", "STATE", "RUN_DIR", "REPORT", "REINDEXED_INTO"

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
                "model for every existing collection: give a collection to re-index, and when training is done "
                "its rasters are indexed with the new model into '<collection>-<run>' (a collection not on the "
                "server is created with the new model from the training rasters). Cancel keeps the last "
                "finished epoch: run again with the same run name to resume. Files must lie under the "
                "server's allowed roots.")

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
            self.REINDEX, "When done, re-index this collection with the new model into '<collection>-<run>' "
            "(empty: no)",
            optional=True))
        add_server_parameter(self)
        for key, label in ((self.JOB_ID, "Server job id"), (self.STATE, "Final job state"),
                           (self.RUN_DIR, "Run folder (a model for --model / POST /model)"),
                           (self.REPORT, "Validation before and after"),
                           (self.INTO, "Collection re-indexed with the new model")):
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
        """Start the training job, poll it into the feedback, report before/after, then optionally re-index."""
        body = self._body(parameters, context)
        reindex = self.parameterAsString(parameters, self.REINDEX, context).strip()
        client = client_for(self, parameters, context, feedback)
        out = {self.JOB_ID: "", self.STATE: "", self.RUN_DIR: "", self.REPORT: "", self.INTO: ""}
        try:
            started = client.detached().call(api.ApiRequest("POST", "/train", body))
            out[self.JOB_ID] = job_id = str(started.get("job_id", "")) if isinstance(started, dict) else ""
            if not job_id:
                raise ServerResponseError(f"the server started no training job: got {started!r}")
            feedback.pushInfo(f"Server job {job_id} started")
            status = self._poll(client, job_id, feedback)
            out[self.STATE] = status.state
            if status.state == "cancelled":
                feedback.pushWarning(f"{CANCELLED_TEXT} (server job {job_id} is cancelled)")
                return {**out, self.REPORT: CANCELLED_TEXT}
            if status.state != "done":
                raise ServerResponseError(f"Training job {job_id} {status.state}: "
                                          f"{'; '.join(status.errors) or 'no detail'}")
            result = client.detached().call(api.job_status(job_id)).get("result") or {}
            out[self.RUN_DIR] = run_dir = str(result.get("run", ""))
            out[self.REPORT] = report_table(result)
            feedback.pushInfo(f"Trained {run_dir}\n{out[self.REPORT]}")
            if reindex:
                out[self.INTO] = self._reindex(client, reindex, run_dir, body, feedback)
            else:
                feedback.pushInfo("To search with it, re-index: run this again with a collection to re-index "
                                  f"(same run name: nothing is retrained), or POST /collections/NAME/reindex "
                                  f'{{"model": "{run_dir}", "into": "NEW"}}')
        except CancelledError as exc:
            feedback.pushWarning(f"Re-index cancelled: {exc}")
        except PluginError as exc:
            raise QgsProcessingException(str(exc)) from exc
        return out

    def _reindex(self, client, collection: str, run_dir: str, body: dict, feedback) -> str:  # noqa: ANN001
        """Re-index collection (or, new, the training rasters) with the new model; the collection made."""
        def progress(status: JobStatus) -> None:
            feedback.setProgressText(f"re-index {status.describe()}")
            feedback.setProgress(status.percent)

        existing = set(parse_collections(client.call(api.list_collections())))
        if collection in existing:
            into = reindex_target(collection, run_dir)
            feedback.pushInfo(f"Re-indexing {collection!r} with the new model into {into!r}")
            final = run_reindex(client, collection, run_dir, into, progress, feedback.isCanceled,
                                lambda job: feedback.pushInfo(f"Re-index job {job} started"))
        else:
            into = collection
            feedback.pushInfo(f"Indexing the training rasters with the new model into the new collection {into!r}")
            client.call(api.ApiRequest("POST", "/collections", {"name": into, "model": run_dir,
                                                                "tile_size": body["tile_size"]}))
            final = run_index(client, IndexParams(collection=into, paths=tuple(body["raster"]),
                                                  tile_size=body["tile_size"]), progress, feedback.isCanceled)
        feedback.pushInfo(f"Re-indexed into {into!r}: {final.describe()}; search it to use the new model")
        return into

    def _poll(self, client, job_id: str, feedback) -> JobStatus:  # noqa: ANN001 - QGIS API objects
        """Poll the job to its end; a cancel in QGIS cancels the server job (its last epoch is kept)."""
        watch = TrainingWatch()
        try:
            while not feedback.isCanceled():
                status = parse_job(client.call(api.job_status(job_id)), job_id)
                feedback.setProgressText(watch.describe(status))
                feedback.setProgress(status.percent)
                if status.finished:
                    return status
                time.sleep(POLL_SECONDS)
        except CancelledError:
            pass  # a poll aborted by the cancel: cancel the server job below
        final = cancel_job(client.detached(), job_id)
        feedback.setProgressText(watch.describe(final))
        return final
