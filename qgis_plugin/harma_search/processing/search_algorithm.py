"""Processing algorithm 'Search imagery by text': top-k tile footprints as a feature sink."""
from __future__ import annotations

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from ..logic.errors import PluginError
from ..logic.operations import run_search
from ..logic.params import MAX_K, Scope, SearchParams
from ..results import result_fields, wgs84
from ..settings import load_settings
from .common import add_server_parameter, client_for
from .styling import style_on_load


class SearchByTextAlgorithm(QgsProcessingAlgorithm):
    """Natural-language search over an indexed collection."""

    COLLECTION, QUERY, K, EXTENT, MIN_SCORE, OUTPUT = "COLLECTION", "QUERY", "K", "EXTENT", "MIN_SCORE", "OUTPUT"

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "search_text"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        """Name shown in the toolbox."""
        return "Search imagery by text"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API name
        """Help shown beside the dialog."""
        return ("Finds the tiles of an indexed collection that best match a text query, using a running "
                "HarMA Search server. Output: tile footprints (EPSG:4326) with rank, score, tile id, raster.")

    def createInstance(self) -> SearchByTextAlgorithm:  # noqa: N802 - QGIS API name
        """A fresh copy (Processing runs copies)."""
        return SearchByTextAlgorithm()

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API name
        """Declare the parameters."""
        self.addParameter(QgsProcessingParameterString(self.COLLECTION, "Collection"))
        self.addParameter(QgsProcessingParameterString(self.QUERY, "Text query"))
        self.addParameter(QgsProcessingParameterNumber(
            self.K, "Number of results (k)", QgsProcessingParameterNumber.Type.Integer,
            load_settings(with_token=False).default_k, False, 1, MAX_K))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Only within extent", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_SCORE, "Minimum relevance (0-1)", QgsProcessingParameterNumber.Type.Double, None, True,
            0.0, 1.0))
        add_server_parameter(self)
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Matching tiles", QgsProcessing.SourceType.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802, ANN001 - QGIS API
        """Search, then write one feature per hit."""
        bbox = None
        if parameters.get(self.EXTENT) is not None:
            rect = self.parameterAsExtent(parameters, self.EXTENT, context, wgs84())
            if not rect.isNull() and not rect.isEmpty():
                bbox = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        min_score = parameters.get(self.MIN_SCORE)
        try:
            params = SearchParams(
                collection=self.parameterAsString(parameters, self.COLLECTION, context),
                query=self.parameterAsString(parameters, self.QUERY, context),
                k=self.parameterAsInt(parameters, self.K, context),
                scope=Scope.EXTENT if bbox else Scope.WHOLE, bbox=bbox,
                min_score=None if min_score is None else self.parameterAsDouble(parameters, self.MIN_SCORE, context),
            )
            feedback.setProgressText(f"Asking the server for '{params.label}'")
            feedback.setProgress(5)
            hits = run_search(client_for(self, parameters, context, feedback), params)
        except PluginError as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.setProgress(50)
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, result_fields(),
                                          QgsWkbTypes.Type.Polygon, wgs84())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for number, hit in enumerate(hits, start=1):
            if feedback.isCanceled():
                break
            feature = QgsFeature(result_fields())
            feature.setAttributes(hit.values())
            feature.setGeometry(QgsGeometry.fromWkt(hit.wkt()))
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
            feedback.setProgress(50 + 50 * number / len(hits))
        feedback.setProgress(100)
        feedback.pushInfo(f"{len(hits)} tiles matched '{params.label}'")
        style_on_load(context, dest)
        return {self.OUTPUT: dest}
