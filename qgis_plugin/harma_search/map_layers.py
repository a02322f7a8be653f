"""Layers of answers drawn as rasters: score heatmaps (singleband pseudocolour), class maps (paletted, class
names in the legend) with their class polygons, and the groups that hold them over the imagery."""
from __future__ import annotations

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsLayerTreeGroup,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor

from .logic.errors import PluginError
from .logic.maps import HeatmapFile, LegendEntry, MapAnswer
from .results import tile_symbol

# Low to high: dark blue through teal and yellow to red (readable over imagery; high = hot).
HEAT_STOPS = ("#2c1e78", "#1f78b4", "#33b39a", "#f2e33a", "#f28c28", "#c81e1e")
HEAT_OPACITY = 0.65  # the imagery stays visible under a heatmap
CLASS_OPACITY = 0.6
_QVARIANT = {"integer": QVariant.Int, "double": QVariant.Double, "string": QVariant.String}


def typed_fields(spec: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> QgsFields:
    """QgsFields from (name, 'integer' | 'double' | 'string') pairs."""
    fields = QgsFields()
    for name, kind in spec:
        fields.append(QgsField(name, _QVARIANT[kind]))
    return fields


def heat_ramp() -> QgsGradientColorRamp:
    """The heatmap colour ramp (HEAT_STOPS, evenly spaced)."""
    first, *middle, last = HEAT_STOPS
    stops = [QgsGradientStop(i / (len(HEAT_STOPS) - 1), QColor(c)) for i, c in enumerate(middle, start=1)]
    return QgsGradientColorRamp(QColor(first), QColor(last), False, stops)


def style_pseudocolor(layer: QgsRasterLayer, low: float, high: float, classes: int = 10,
                      unit: str = "") -> None:
    """Band 1 as singleband pseudocolour over [low, high] with the heat ramp, interpolated, half see-through."""
    ramp = heat_ramp()
    function = QgsColorRampShader(low, high)
    function.setColorRampType(QgsColorRampShader.Type.Interpolated)
    function.setSourceColorRamp(ramp.clone())
    items = []
    for i in range(classes + 1):
        value = low + (high - low) * i / classes
        items.append(QgsColorRampShader.ColorRampItem(value, ramp.color(i / classes), f"{value:.2f}{unit}"))
    function.setColorRampItemList(items)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(function)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    layer.setRenderer(renderer)
    layer.renderer().setOpacity(HEAT_OPACITY)
    layer.triggerRepaint()


def heatmap_layer(item: HeatmapFile, name: str) -> QgsRasterLayer:
    """A downloaded heatmap GeoTIFF as a raster layer with the heat ramp over its range."""
    layer = QgsRasterLayer(item.path, name, "gdal")
    if not layer.isValid():
        raise PluginError(f"Heatmap {item.path!r} is not a readable GeoTIFF: run the search again")
    style_pseudocolor(layer, item.low, item.high)
    return layer


def style_classes(layer: QgsRasterLayer, legend: list[LegendEntry]) -> None:
    """Band 1 as a paletted map: each legend value in its colour, with its class name in the legend."""
    classes = [QgsPalettedRasterRenderer.Class(e.value, QColor(e.color), e.label) for e in legend]
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)
    renderer.setOpacity(CLASS_OPACITY)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def class_raster_layer(path: str, name: str, legend: list[LegendEntry]) -> QgsRasterLayer:
    """A downloaded class GeoTIFF as a paletted raster layer named by its classes."""
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        raise PluginError(f"Class map {path!r} is not a readable GeoTIFF: run the map again")
    style_classes(layer, legend)
    return layer


CLASS_FIELDS = (("value", "integer"), ("label", "string"), ("prompt", "string"), ("color", "string"),
                ("tiles", "integer"))


def class_polygons_layer(answer: MapAnswer, name: str) -> QgsVectorLayer:
    """The dissolved class polygons (EPSG:4326), outlined in their class colours."""
    layer = QgsVectorLayer("MultiPolygon?crs=EPSG:4326", name, "memory")
    fields = typed_fields(CLASS_FIELDS)
    layer.dataProvider().addAttributes(fields.toList())
    layer.updateFields()
    features = []
    for props, wkt in answer.polygons:
        feature = QgsFeature(layer.fields())
        feature.setAttributes([props.get(n) for n, _ in CLASS_FIELDS])
        geometry = QgsGeometry.fromWkt(wkt)
        geometry.convertToMultiType()
        feature.setGeometry(geometry)
        features.append(feature)
    if not layer.dataProvider().addFeatures(features):
        raise PluginError(f"Could not add {len(features)} class polygons to {name!r}")
    layer.updateExtents()
    style_class_polygons(layer, answer.legend)
    return layer


def style_class_polygons(layer: QgsVectorLayer, legend: list[LegendEntry]) -> None:
    """Categorised by class value: the class colour as outline, an almost clear fill, the class name."""
    categories = [QgsRendererCategory(e.value, tile_symbol(e.color, fill_alpha=0, width_mm=0.5), e.label)
                  for e in legend]
    layer.setRenderer(QgsCategorizedSymbolRenderer("value", categories))


def output_group(project: QgsProject, name: str) -> QgsLayerTreeGroup:
    """A new layer-tree group at the top of the tree (above the imagery)."""
    return project.layerTreeRoot().insertGroup(0, name)


def add_to_group(project: QgsProject, group: QgsLayerTreeGroup, layer, expanded: bool = True) -> None:  # noqa: ANN001
    """Add layer at the bottom of group (callers add the top layer first)."""
    project.addMapLayer(layer, False)
    group.addLayer(layer).setExpanded(expanded)
