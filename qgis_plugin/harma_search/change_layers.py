"""The change between two dates as layers: the cells graduated by `change` (the top cells outlined and labelled
by rank) and, optionally, `change` as a one-pixel-per-cell GeoTIFF in the grid's CRS with the heat ramp."""
from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsProperty,
    QgsRasterBlock,
    QgsRasterFileWriter,
    QgsRectangle,
    QgsRendererRange,
    QgsSymbolLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from .logic.change import CHANGE_FIELDS, NODATA, TOP_CELLS, ChangeAnswer, change_breaks, heat_grid
from .logic.errors import PluginError
from .map_layers import heat_ramp, style_pseudocolor, typed_fields
from .results import label_settings, tile_symbol

CELL_FILL_ALPHA = 110  # of 255: the cell is coloured, the imagery under it still shows
TOP_OUTLINE_MM = 1.0
OTHER_OUTLINE_MM = 0.2
TOP_OUTLINE = "#111111"


def change_fields():  # noqa: ANN201 - QgsFields
    """The typed fields of a change layer."""
    return typed_fields(CHANGE_FIELDS)


def build_change_layer(answer: ChangeAnswer, name: str, top: int = TOP_CELLS) -> QgsVectorLayer:
    """A memory layer (EPSG:4326 polygons) with one feature per cell, most change first, styled."""
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", name, "memory")
    layer.dataProvider().addAttributes(change_fields().toList())
    layer.updateFields()
    features = []
    for cell in answer.cells:
        feature = QgsFeature(layer.fields())
        feature.setAttributes(list(cell.values))
        feature.setGeometry(QgsGeometry.fromWkt(cell.wkt))
        features.append(feature)
    if not layer.dataProvider().addFeatures(features):
        raise PluginError(f"Could not add {len(features)} cells to the change layer {name!r}")
    layer.updateExtents()
    style_change_layer(layer, top)
    return layer


def _cell_symbol(color: QColor, top: int):  # noqa: ANN202 - QgsFillSymbol
    """A filled cell whose outline is thick and dark for the top cells (data-defined on rank)."""
    symbol = tile_symbol(color.name(), fill_alpha=CELL_FILL_ALPHA, width_mm=OTHER_OUTLINE_MM)
    main = symbol.symbolLayer(symbol.symbolLayerCount() - 1)
    main.setDataDefinedProperty(QgsSymbolLayer.Property.PropertyStrokeWidth, QgsProperty.fromExpression(
        f'CASE WHEN "rank" <= {int(top)} THEN {TOP_OUTLINE_MM} ELSE {OTHER_OUTLINE_MM} END'))
    main.setDataDefinedProperty(QgsSymbolLayer.Property.PropertyStrokeColor, QgsProperty.fromExpression(
        f"CASE WHEN \"rank\" <= {int(top)} THEN '{TOP_OUTLINE}' ELSE '{color.name()}' END"))
    halo = symbol.symbolLayer(0)  # the white halo only around the top cells
    halo.setDataDefinedProperty(QgsSymbolLayer.Property.PropertyStrokeWidth, QgsProperty.fromExpression(
        f'CASE WHEN "rank" <= {int(top)} THEN {TOP_OUTLINE_MM + 0.8} ELSE 0 END'))
    return symbol


def style_change_layer(layer: QgsVectorLayer, top: int = TOP_CELLS) -> None:
    """Graduated by `change` (equal intervals, heat ramp, see-through fill); the `top` cells of most change
    outlined dark and labelled '#rank'."""
    values = [f["change"] for f in layer.getFeatures()]
    ramp = heat_ramp()
    breaks = change_breaks([float(v) for v in values if v is not None])
    ranges = []
    for i, (low, high) in enumerate(breaks):
        color = ramp.color(i / max(len(breaks) - 1, 1))
        ranges.append(QgsRendererRange(low, high, _cell_symbol(color, top), f"change {low:.2f} – {high:.2f}"))
    renderer = QgsGraduatedSymbolRenderer("change", ranges)
    renderer.setSourceColorRamp(ramp)
    layer.setRenderer(renderer)
    layer.setLabeling(label_settings(f"CASE WHEN \"rank\" <= {int(top)} THEN '#' || \"rank\" END"))
    layer.setLabelsEnabled(True)
    layer.triggerRepaint()


def write_change_heatmap(answer: ChangeAnswer, path: str) -> str:
    """`change` as a float32 GeoTIFF at path: one pixel per cell in the grid's CRS, NODATA where no cell."""
    grid = heat_grid(answer)
    crs = QgsCoordinateReferenceSystem(answer.grid_crs)
    if not crs.isValid():
        raise PluginError(f"The change grid's CRS {answer.grid_crs!r} is unknown to QGIS: update QGIS's PROJ data")
    writer = QgsRasterFileWriter(path)
    writer.setOutputFormat("GTiff")
    provider = writer.createOneBandRaster(Qgis.DataType.Float32, grid.width, grid.height,
                                          QgsRectangle(*grid.bounds), crs)
    if provider is None or not provider.isValid():
        raise PluginError(f"Could not create {path!r}: choose a writable .tif path")
    provider.setNoDataValue(1, NODATA)
    block = QgsRasterBlock(Qgis.DataType.Float32, grid.width, grid.height)
    block.setNoDataValue(NODATA)
    for row in range(grid.height):
        for col in range(grid.width):
            block.setValue(row, col, grid.pixels.get((row, col), NODATA))
    provider.setEditable(True)
    ok = provider.writeBlock(block, 1, 0, 0)
    provider.setEditable(False)
    del provider  # closes the file
    if not ok:
        raise PluginError(f"Could not write the change heatmap to {path!r}")
    return path


def style_change_heatmap(layer) -> None:  # noqa: ANN001 - QgsRasterLayer
    """The change heatmap with the heat ramp from the lowest to the highest cell."""
    stats = layer.dataProvider().bandStatistics(1)
    style_pseudocolor(layer, stats.minimumValue, max(stats.maximumValue, stats.minimumValue + 1e-6))
