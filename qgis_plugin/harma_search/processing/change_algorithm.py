"""Processing algorithm 'Compare two dates': the cells of most change between two dates' rasters as a feature
sink (styled by `change`) and, optionally, `change` as a heatmap GeoTIFF."""
from __future__ import annotations

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from ..change_layers import change_fields, style_change_heatmap, style_change_layer, write_change_heatmap
from ..logic.change import DEFAULT_TILE_M, DIRECTIONS, MAX_TILE_M, ChangeParams
from ..logic.errors import PluginError
from ..logic.maps import fetch_change
from ..logic.sources import path_from_source, unique_paths
from ..results import wgs84
from .common import add_server_parameter, client_for
from .styling import style_with_on_load


class CompareDatesAlgorithm(QgsProcessingAlgorithm):
    """Change between two dates on a ground-aligned grid, through a running HarMA Search server."""

    BEFORE, AFTER, TILE_SIZE_M, TEXT, DIRECTION = "BEFORE", "AFTER", "TILE_SIZE_M", "TEXT", "DIRECTION"
    OUTPUT, HEATMAP, CELLS = "OUTPUT", "HEATMAP", "CELLS"

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "compare_dates"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        """Name shown in the toolbox."""
        return "Compare two dates"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API name
        """Help shown beside the dialog."""
        return ("Compares two dates of one place cell by cell (square cells of the given size on the ground; the "
                "dates may have different CRSs and grids; several layers of a date make a mosaic). Output: every "
                "cell covered by both dates (EPSG:4326) with `change` (a robust z-score, higher = more change), "
                "`distance`, pixel baselines and both dates, most change first; optionally `change` as a "
                "GeoTIFF, one pixel per cell. With a text, `change` ranks how much more (appear) or less "
                "(disappear) each cell looks like it. The files must lie under the server's allowed folders.")

    def createInstance(self) -> CompareDatesAlgorithm:  # noqa: N802 - QGIS API name
        """A fresh copy (Processing runs copies)."""
        return CompareDatesAlgorithm()

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API name
        """Declare parameters and outputs."""
        for key, label in ((self.BEFORE, "Before: raster layer(s) or file(s)"),
                           (self.AFTER, "After: raster layer(s) or file(s)")):
            self.addParameter(QgsProcessingParameterMultipleLayers(key, label, QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE_M, "Cell size in metres", QgsProcessingParameterNumber.Type.Double, DEFAULT_TILE_M,
            False, 1.0, MAX_TILE_M))
        self.addParameter(QgsProcessingParameterString(self.TEXT, "Text (what appears or disappears)", optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.DIRECTION, "Direction (with a text)", list(DIRECTIONS),
                                                     defaultValue=0))
        add_server_parameter(self)
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Changed cells", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.HEATMAP, "Change heatmap", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.CELLS, "Cells compared"))

    def _paths(self, parameters, key: str, context) -> tuple[str, ...]:  # noqa: ANN001 - QGIS API objects
        paths = []
        for layer in self.parameterAsLayerList(parameters, key, context):
            path = path_from_source(layer.source())
            if path is None:
                raise QgsProcessingException(f"Layer {layer.name()!r} is not a local raster file: save it first")
            paths.append(path)
        return unique_paths(paths)

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802, ANN001 - QGIS API
        """Ask the server for the cells, write them (and the heatmap), style them when loaded."""
        try:
            params = ChangeParams(
                before=self._paths(parameters, self.BEFORE, context),
                after=self._paths(parameters, self.AFTER, context),
                tile_size_m=self.parameterAsDouble(parameters, self.TILE_SIZE_M, context),
                text=self.parameterAsString(parameters, self.TEXT, context),
                direction=DIRECTIONS[self.parameterAsEnum(parameters, self.DIRECTION, context)])
            feedback.setProgressText(f"Comparing {params.label} on the server")
            feedback.setProgress(5)
            answer = fetch_change(client_for(self, parameters, context, feedback), params)
        except PluginError as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.setProgress(60)
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, change_fields(),
                                          QgsWkbTypes.Type.Polygon, wgs84())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for number, cell in enumerate(answer.cells, start=1):
            if feedback.isCanceled():
                break
            feature = QgsFeature(change_fields())
            feature.setAttributes(list(cell.values))
            feature.setGeometry(QgsGeometry.fromWkt(cell.wkt))
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
            feedback.setProgress(60 + 30 * number / len(answer.cells))
        out = {self.OUTPUT: dest, self.CELLS: len(answer.cells)}
        heat = self.parameterAsOutputLayer(parameters, self.HEATMAP, context)
        if heat and answer.cells and not feedback.isCanceled():
            try:
                out[self.HEATMAP] = write_change_heatmap(answer, heat)
            except PluginError as exc:
                raise QgsProcessingException(str(exc)) from exc
            style_with_on_load(context, heat, style_change_heatmap)
        before, after = answer.dates
        feedback.pushInfo(f"{len(answer.cells)} cells of {answer.cell_size:g} m in {answer.grid_crs} covered by both "
                          f"dates ({before} → {after})")
        feedback.setProgress(100)
        style_with_on_load(context, dest, style_change_layer)
        return out
