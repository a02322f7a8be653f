"""Processing algorithm 'Index rasters': adds raster layers or a folder's GeoTIFFs to a collection."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..logic.errors import PluginError
from ..logic.operations import run_index
from ..logic.params import IndexParams
from ..logic.sources import path_from_source, rasters_in_folder, unique_paths
from ..logic.status import JobStatus
from .common import add_server_parameter, client_for


class IndexRastersAlgorithm(QgsProcessingAlgorithm):
    """Runs a server indexing job, reporting progress and cancelling the job when cancelled."""

    INPUT, FOLDER, COLLECTION, TILE_SIZE = "INPUT", "FOLDER", "COLLECTION", "TILE_SIZE"
    JOB_ID, STATE, TILES = "JOB_ID", "STATE", "TILES"

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "index_rasters"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        """Name shown in the toolbox."""
        return "Index rasters"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API name
        """Help shown beside the dialog."""
        return ("Tiles and embeds GeoTIFFs (raster layers and/or every .tif in a folder) into a collection on "
                "the HarMA Search server. The files must lie under one of the server's allowed roots.")

    def createInstance(self) -> IndexRastersAlgorithm:  # noqa: N802 - QGIS API name
        """A fresh copy (Processing runs copies)."""
        return IndexRastersAlgorithm()

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API name
        """Declare parameters and outputs."""
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, "Raster layers", QgsProcessing.SourceType.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.FOLDER, "Folder of GeoTIFFs", QgsProcessingParameterFile.Behavior.Folder, optional=True))
        self.addParameter(QgsProcessingParameterString(self.COLLECTION, "Collection (created if new)"))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size in pixels (new collections; empty: server default)",
            QgsProcessingParameterNumber.Type.Integer, None, True, 16, 8192))
        add_server_parameter(self)
        self.addOutput(QgsProcessingOutputString(self.JOB_ID, "Server job id"))
        self.addOutput(QgsProcessingOutputString(self.STATE, "Final job state"))
        self.addOutput(QgsProcessingOutputNumber(self.TILES, "Tiles indexed"))

    def _paths(self, parameters, context) -> tuple[str, ...]:  # noqa: ANN001 - QGIS API objects
        paths = []
        for layer in self.parameterAsLayerList(parameters, self.INPUT, context):
            path = path_from_source(layer.source())
            if path is None:
                raise QgsProcessingException(f"Layer {layer.name()!r} is not a local raster file: export it first")
            paths.append(path)
        folder = self.parameterAsFile(parameters, self.FOLDER, context)
        if folder:
            paths.extend(rasters_in_folder(folder))
        return unique_paths(paths)

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802, ANN001 - QGIS API
        """Start the job and poll it, mirroring progress into the feedback."""
        def progress(status: JobStatus) -> None:
            feedback.setProgress(status.percent)
            feedback.setProgressText(status.describe())

        try:
            tile_size = parameters.get(self.TILE_SIZE)
            params = IndexParams(
                collection=self.parameterAsString(parameters, self.COLLECTION, context),
                paths=self._paths(parameters, context),
                tile_size=None if tile_size is None else self.parameterAsInt(parameters, self.TILE_SIZE, context),
            )
            status = run_index(client_for(self, parameters, context, feedback), params, progress,
                               feedback.isCanceled,
                               lambda job_id: feedback.pushInfo(f"Server job {job_id} started"))
        except PluginError as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.pushInfo(f"Job {status.job_id}: {status.describe()}")
        return {self.JOB_ID: status.job_id, self.STATE: status.state, self.TILES: status.done}
