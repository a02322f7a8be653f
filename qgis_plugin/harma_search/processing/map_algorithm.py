"""Processing algorithm 'Map land cover': class prompts or a preset → a class GeoTIFF (paletted, class names
in the legend) and the dissolved class polygons as a feature sink."""
from __future__ import annotations

import shutil
from pathlib import Path

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsWkbTypes,
)

from ..logic.errors import PluginError
from ..logic.maps import PRESETS, MapParams, class_lines, fetch_map
from ..map_layers import CLASS_FIELDS, style_class_polygons, style_classes, typed_fields
from ..results import wgs84
from .common import add_server_parameter, client_for
from .styling import style_with_on_load

PRESET_CHOICES = ("", *PRESETS)  # the first: the classes typed in CLASSES


class MapLandCoverAlgorithm(QgsProcessingAlgorithm):
    """A zero-shot class per tile of an indexed collection, through a running HarMA Search server."""

    COLLECTION, CLASSES, PRESET, FORCED = "COLLECTION", "CLASSES", "PRESET", "FORCED"
    OUTPUT_RASTER, OUTPUT, RASTERS = "OUTPUT_RASTER", "OUTPUT", "RASTERS"

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "map_land_cover"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        """Name shown in the toolbox."""
        return "Map land cover"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API name
        """Help shown beside the dialog."""
        return ("Gives every tile of an indexed collection the class whose text it matches best (classes one per "
                "line, 'name' or 'name=prompt', or a preset such as the 21 UC Merced land-use classes); 'unknown' "
                "where no class is likely unless every tile must get one. Output: the class GeoTIFF (one pixel "
                "per tile stride, colour table, class names in the legend; several rasters: OUTPUT_<n> beside "
                "it) and the class polygons (EPSG:4326).")

    def createInstance(self) -> MapLandCoverAlgorithm:  # noqa: N802 - QGIS API name
        """A fresh copy (Processing runs copies)."""
        return MapLandCoverAlgorithm()

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API name
        """Declare parameters and outputs."""
        self.addParameter(QgsProcessingParameterString(self.COLLECTION, "Collection"))
        self.addParameter(QgsProcessingParameterString(self.CLASSES, "Classes, one per line (name or name=prompt)",
                                                       multiLine=True, optional=True))
        labels = ["My classes (above)"] + [PRESETS[key] for key in PRESET_CHOICES[1:]]
        self.addParameter(QgsProcessingParameterEnum(self.PRESET, "Preset", labels, defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(self.FORCED, "Every tile gets a class (no 'unknown')",
                                                        defaultValue=False))
        add_server_parameter(self)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_RASTER, "Class map"))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Class polygons", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputString(self.RASTERS, "Class GeoTIFFs (';'-separated)"))

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802, ANN001 - QGIS API
        """Ask for the map, copy its GeoTIFF(s) (with their .qml) to the output, write the polygons."""
        preset = PRESET_CHOICES[self.parameterAsEnum(parameters, self.PRESET, context)]
        try:
            params = MapParams(collection=self.parameterAsString(parameters, self.COLLECTION, context),
                               classes=class_lines(self.parameterAsString(parameters, self.CLASSES, context)),
                               preset=preset, forced=self.parameterAsBool(parameters, self.FORCED, context))
            feedback.setProgressText(f"Mapping {params.label} on the server")
            feedback.setProgress(5)
            folder = str(Path(QgsProcessingUtils.tempFolder()) / "harma_maps")
            answer = fetch_map(client_for(self, parameters, context, feedback), params, folder,
                               progress=lambda n, total: feedback.setProgress(10 + 50 * n / total))
        except PluginError as exc:
            raise QgsProcessingException(str(exc)) from exc
        first = Path(self.parameterAsOutputLayer(parameters, self.OUTPUT_RASTER, context))
        written = []
        for number, path in enumerate(answer.paths, start=1):
            target = first if number == 1 else first.with_name(f"{first.stem}_{number}{first.suffix}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            if Path(path).with_suffix(".qml").is_file():  # QGIS applies it whenever the file is opened
                shutil.copyfile(Path(path).with_suffix(".qml"), target.with_suffix(".qml"))
            written.append(str(target))
        self._style_rasters(context, written, answer.legend, params.label)
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, typed_fields(CLASS_FIELDS),
                                          QgsWkbTypes.Type.MultiPolygon, wgs84())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for props, wkt in answer.polygons:
            feature = QgsFeature(typed_fields(CLASS_FIELDS))
            feature.setAttributes([props.get(n) for n, _ in CLASS_FIELDS])
            geometry = QgsGeometry.fromWkt(wkt)
            geometry.convertToMultiType()
            feature.setGeometry(geometry)
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
        style_with_on_load(context, dest, lambda layer: style_class_polygons(layer, answer.legend))
        run = answer.run
        feedback.pushInfo(f"{run.get('tiles', '?')} tiles, {run.get('unknown_tiles', 0)} unknown; classes: "
                          f"{', '.join(e.label for e in answer.legend)}")
        feedback.setProgress(100)
        return {self.OUTPUT_RASTER: written[0] if written else "", self.OUTPUT: dest,
                self.RASTERS: ";".join(written)}

    def _style_rasters(self, context: QgsProcessingContext, paths: list[str], legend, label: str) -> None:  # noqa: ANN001
        """The first raster is the declared output; the others are loaded beside it; all paletted by class."""
        for number, path in enumerate(paths, start=1):
            if number > 1 and context.willLoadLayerOnCompletion(paths[0]):
                details = QgsProcessingContext.LayerDetails(f"Class map {number}: {label}", context.project(),
                                                            self.OUTPUT_RASTER)
                context.addLayerToLoadOnCompletion(path, details)
            style_with_on_load(context, path, lambda layer: style_classes(layer, legend))
