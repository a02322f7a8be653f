"""Styling Processing outputs as the dock styles its results, once QGIS loads them (a layer post-processor)."""
from __future__ import annotations

from qgis.core import (
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsVectorLayer,
)

from ..results import style_results_layer


class ResultsStyler(QgsProcessingLayerPostProcessorInterface):
    """Outlines by relevance in words and rank labels on a loaded search output."""

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802 - QGIS API
                         feedback: QgsProcessingFeedback) -> None:
        """Called by QGIS on the main thread after the output layer was loaded."""
        if isinstance(layer, QgsVectorLayer) and layer.fields().indexOf("match") >= 0:
            style_results_layer(layer)


# QGIS does not own post-processors: keep each alive until the next run of the same output replaces it.
_STYLERS: dict[str, QgsProcessingLayerPostProcessorInterface] = {}


def style_on_load(context: QgsProcessingContext, destination: str) -> None:
    """Style destination with the results style when QGIS loads it at the end of the run."""
    if context.willLoadLayerOnCompletion(destination):
        styler = _STYLERS[destination] = ResultsStyler()
        context.layerToLoadOnCompletionDetails(destination).setPostProcessor(styler)


class CallStyler(QgsProcessingLayerPostProcessorInterface):
    """Applies style(layer) to a loaded output (change cells, heatmaps, class maps)."""

    def __init__(self, style) -> None:  # noqa: ANN001 - a callable taking the loaded layer
        super().__init__()
        self.style = style

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802 - QGIS API
                         feedback: QgsProcessingFeedback) -> None:
        """Called by QGIS on the main thread after the output layer was loaded."""
        self.style(layer)


def style_with_on_load(context: QgsProcessingContext, destination: str, style) -> None:  # noqa: ANN001
    """Call style(layer) on destination when QGIS loads it at the end of the run."""
    if context.willLoadLayerOnCompletion(destination):
        styler = _STYLERS[destination] = CallStyler(style)
        context.layerToLoadOnCompletionDetails(destination).setPostProcessor(styler)
