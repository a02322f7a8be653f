"""Tile previews: the server's georeferenced crop as a raster layer, shown with the encoder's bands and stretch."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    Qgis,
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsProject,
    QgsRaster,
    QgsRasterDataProvider,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleBandGrayRenderer,
    QgsVectorLayer,
)

from .logic.errors import PluginError
from .results import add_below

# The encoder's per-raster stretch (harma_core.raster_pixels): 2nd and 98th percentiles mapped to 0 and 255.
STRETCH_CUT = (0.02, 0.98)
SAMPLE_PIXELS = 1024 * 1024  # the encoder samples a decimated read with a 1024-pixel long side


def encoder_bands(provider: QgsRasterDataProvider) -> tuple[int, int, int]:
    """The bands the encoder shows as RGB: red/green/blue by colour interpretation, else 1-2-3, else 1 thrice."""
    count = provider.bandCount()
    interp = [provider.colorInterpretation(b) for b in range(1, count + 1)]
    rgb = (QgsRaster.ColorInterpretation.RedBand, QgsRaster.ColorInterpretation.GreenBand,
           QgsRaster.ColorInterpretation.BlueBand)
    if all(c in interp for c in rgb):
        return tuple(interp.index(c) + 1 for c in rgb)  # type: ignore[return-value]
    return (1, 2, 3) if count >= 3 else (1, 1, 1)


def _enhancement(layer: QgsRasterLayer, band: int, source: QgsRasterLayer | None) -> QgsContrastEnhancement:
    provider = layer.dataProvider()
    enhancement = QgsContrastEnhancement(provider.dataType(band))
    if provider.dataType(band) == Qgis.DataType.Byte:  # 8-bit data reaches the encoder as it is
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.ContrastEnhancementAlgorithm.NoEnhancement)
        return enhancement
    # Percentiles of the whole source raster, as the encoder computed them; the crop's own when it is not here.
    stats_from = source.dataProvider() if source is not None else provider
    low, high = stats_from.cumulativeCut(band, STRETCH_CUT[0], STRETCH_CUT[1], QgsRectangle(), SAMPLE_PIXELS)
    enhancement.setContrastEnhancementAlgorithm(
        QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
    enhancement.setMinimumValue(low)
    enhancement.setMaximumValue(high if high > low else low + 1)
    return enhancement


def style_preview(layer: QgsRasterLayer, source_path: str = "") -> None:
    """Show a crop with the encoder's band choice and stretch (16-bit data would look black otherwise)."""
    provider = layer.dataProvider()
    source = None
    if source_path and Path(source_path).is_file():
        candidate = QgsRasterLayer(source_path, "source", "gdal")
        if candidate.isValid() and candidate.bandCount() == layer.bandCount():
            source = candidate
    red, green, blue = encoder_bands(provider)
    if red == green == blue:
        renderer = QgsSingleBandGrayRenderer(provider, red)
        renderer.setContrastEnhancement(_enhancement(layer, red, source))
    else:
        renderer = QgsMultiBandColorRenderer(provider, red, green, blue)
        renderer.setRedContrastEnhancement(_enhancement(layer, red, source))
        renderer.setGreenContrastEnhancement(_enhancement(layer, green, source))
        renderer.setBlueContrastEnhancement(_enhancement(layer, blue, source))
    layer.setRenderer(renderer)


def add_preview(project: QgsProject, path: str, name: str, results: QgsVectorLayer,
                source_path: str = "") -> QgsRasterLayer:
    """Add a downloaded tile crop below its results layer, stretched like the encoder saw it."""
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        raise PluginError(f"Preview {path!r} is not a readable GeoTIFF: check the server's /tiles endpoint")
    style_preview(layer, source_path)
    add_below(project, layer, results)
    return layer
