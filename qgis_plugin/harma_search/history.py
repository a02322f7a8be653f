"""The project's search results, one shown at a time: each result is a layer-tree group (its layer and
previews) in the 'HarMA results' group; a new or chosen result is shown, the others hidden (not deleted)."""
from __future__ import annotations

import json
from typing import Any

from qgis.core import (
    QgsCoordinateTransform,
    QgsLayerTreeGroup,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMapCanvas

from .logic import api
from .logic.feedback import FeedbackParams
from .logic.params import SearchParams
from .result_store import MARKS, RESULT, kept_layers
from .results import results_group

SEQ, LABEL, NO_MATCH, REASON = "harma/seq", "harma/label", "harma/no_match", "harma/reason"
REQUEST = "harma/request"  # the search body that made a result (asked again "as": "heatmap")
CONTEXT = 0.5  # zoom out by half the hits' extent (at least one tile) on each side, to see around them


def results(project: QgsProject | None = None) -> list[QgsVectorLayer]:
    """The project's results layers, newest first."""
    layers = kept_layers(project or QgsProject.instance(), RESULT)
    return sorted(layers, key=lambda layer: -int(layer.customProperty(SEQ) or 0))


def label_of(layer: QgsVectorLayer) -> str:
    """The search a results layer answers (e.g. the query text)."""
    return str(layer.customProperty(LABEL) or layer.name().removeprefix("HarMA: "))


def no_match_of(layer: QgsVectorLayer) -> tuple[bool, str]:
    """(no_match, reason) the server said for this result."""
    return str(layer.customProperty(NO_MATCH)) in ("1", "true", "True"), str(layer.customProperty(REASON) or "")


def remember_request(layer: QgsVectorLayer, params: SearchParams | FeedbackParams) -> None:
    """Keep the search body that made layer with it (saved in the project), to ask it again as a heatmap."""
    request = api.feedback_search(params) if isinstance(params, FeedbackParams) else api.search(params)
    layer.setCustomProperty(REQUEST, json.dumps(request.body))


def request_of(layer: QgsVectorLayer) -> dict[str, Any]:
    """The search body that made layer; for a result saved before bodies were kept, its text query."""
    try:
        body = json.loads(str(layer.customProperty(REQUEST) or ""))
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    collections = sorted({str(f["collection"]) for f in layer.getFeatures()})
    return {"text": label_of(layer), "collections": collections}


def result_group(layer: QgsVectorLayer) -> QgsLayerTreeGroup | None:
    """The layer-tree group of one result (its layer and previews)."""
    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    parent = node.parent() if node is not None else None
    return parent if isinstance(parent, QgsLayerTreeGroup) and parent.customProperty(SEQ) is not None else None


def add_result(project: QgsProject, layer: QgsVectorLayer, label: str, no_match: bool = False,
               reason: str = "") -> QgsLayerTreeGroup:
    """Add a results layer in its own group at the top of the results (below the marks layer)."""
    seq = max((int(x.customProperty(SEQ) or 0) for x in results(project)), default=0) + 1
    for key, value in ((SEQ, seq), (LABEL, label), (NO_MATCH, "1" if no_match else "0"), (REASON, reason)):
        layer.setCustomProperty(key, value)
    parent = results_group(project)
    children = parent.children()
    first_is_marks = bool(children) and getattr(children[0], "layer", lambda: None)() is not None and \
        children[0].layer().customProperty("harma/kind") == MARKS
    group = parent.insertGroup(1 if first_is_marks else 0, label)
    group.setCustomProperty(SEQ, seq)
    project.addMapLayer(layer, False)
    group.insertLayer(0, layer)
    return group


def show_only(layer: QgsVectorLayer) -> None:
    """Show layer's result group (expanded) and hide the other results with their previews (collapsed)."""
    for other in results():
        group = result_group(other)
        if group is None:
            continue
        shown = other.id() == layer.id()
        group.setItemVisibilityChecked(shown)
        group.setExpanded(shown)
        for node in group.findLayers():
            if node.layer() is not other:
                node.setExpanded(False)


def shown_result(project: QgsProject | None = None) -> QgsVectorLayer | None:
    """The result whose group is visible (the newest such), else the newest result."""
    layers = results(project)
    for layer in layers:
        group = result_group(layer)
        if group is not None and group.isVisible():
            return layer
    return layers[0] if layers else None


def zoom_with_context(canvas: QgsMapCanvas, layer: QgsVectorLayer) -> QgsRectangle | None:
    """Pan and zoom the map to layer's tiles with some imagery around them; returns the new extent."""
    if layer.featureCount() == 0:
        return None
    transform = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    extent = transform.transformBoundingBox(layer.extent())
    tile = transform.transformBoundingBox(next(layer.getFeatures()).geometry().boundingBox())
    margin = max(CONTEXT * max(extent.width(), extent.height()), tile.width(), tile.height())
    extent.grow(margin)
    canvas.setExtent(extent)
    canvas.refresh()
    return extent
