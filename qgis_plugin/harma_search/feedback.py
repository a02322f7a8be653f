"""Relevance feedback in the dock: marks from the list and the map, Refine and Find all as searches."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from qgis.core import QgsProject, QgsVectorLayer
from qgis.PyQt import sip

from .logic.errors import InputError
from .logic.feedback import FeedbackParams, Marks
from .logic.hits import Hit
from .marking import MarkTool, saved_marks, show_marks
from .results import alive

if TYPE_CHECKING:
    from .tasks import ServerTask


class SearchHost(Protocol):
    """What the feedback needs of the dock's controller (a protocol, so the two modules import one way)."""

    dock: Any
    iface: Any

    @property
    def layer(self) -> QgsVectorLayer | None: ...

    def search(self, params: Any, previews: bool = True,
               on_layer: Callable[[QgsVectorLayer], None] | None = None) -> ServerTask: ...

    def ask_export_path(self) -> str | None: ...

    def export(self, path: str | None = None, layer: QgsVectorLayer | None = None) -> str | None: ...


class FeedbackController:
    """Keeps the marks (across refine rounds), their map layer and the mark tool; starts refined searches."""

    def __init__(self, controller: SearchHost) -> None:
        self.controller = controller
        self.marks = Marks()
        self.layer: QgsVectorLayer | None = None
        self.tool: MarkTool | None = None
        dock = controller.dock
        dock.markRequested.connect(self.mark_hits)
        dock.clearMarksRequested.connect(self.clear)
        dock.markOnMapRequested.connect(self.mark_on_map)
        dock.refineRequested.connect(self.refine)
        dock.findAllRequested.connect(self.find_all)

    def _say(self, text: str) -> None:
        self.controller.dock.results.marks_label.setText(text)

    def _refresh(self) -> None:
        if self.marks.labels or alive(self.layer):
            self.layer = show_marks(QgsProject.instance(), self.layer, self.marks)
        self.controller.dock.results.show_marks(self.marks)

    def mark_hits(self, hits: list[Hit], label: str) -> None:
        """Toggle label on each hit (a second Good on a good tile unmarks it)."""
        try:
            for hit in hits:
                self.marks.toggle(hit, label)
        except InputError as exc:
            self._say(str(exc))
            return
        self._refresh()

    def mark_tile(self, tile_id: int, label: str) -> None:
        """Mark a tile clicked on the map (it must be one of the listed or marked hits)."""
        known = {h.tile_id: h for h in self.controller.dock.hits} | self.marks.hits
        if tile_id in known:
            self.mark_hits([known[tile_id]], label)

    def clear(self) -> None:
        """Forget every mark."""
        self.marks.clear()
        self._refresh()

    def mark_on_map(self) -> MarkTool | None:
        """Let the analyst click result tiles: left good, right bad."""
        layer = self.controller.layer
        if layer is None:
            self._say("Run a search first, then click its tiles on the map")
            return None
        canvas = self.controller.iface.mapCanvas()
        self.tool = MarkTool(canvas, layer)
        self.tool.tileClicked.connect(self.mark_tile)
        canvas.setMapTool(self.tool)
        self._say("Click tiles on the map: left button good, right button bad; again to unmark")
        return self.tool

    def results_changed(self, layer: QgsVectorLayer) -> None:
        """A new results layer: the mark tool follows it and the marks layer stays on top."""
        if self.tool is not None and not sip.isdeleted(self.tool):
            self.tool.layer = layer
        if self.marks.labels:
            self._refresh()

    def restore(self) -> None:
        """Take up the marks of a (re)opened project, or forget them when it has none."""
        self.layer, self.marks = saved_marks(QgsProject.instance())
        self.controller.dock.results.show_marks(self.marks)

    def params(self, find_all: bool) -> FeedbackParams:
        """The refined search the marks and widgets describe; raises InputError."""
        dock = self.controller.dock
        panel = dock.results
        text = dock.query_edit.text() if panel.use_text_check.isChecked() else ""
        return FeedbackParams(
            collection=self.marks.collection or dock.collection_combo.currentText().strip(),
            positive=self.marks.positive, negative=self.marks.negative, text=text, k=dock.k_spin.value(),
            find_all=find_all, min_score=panel.find_all_score_spin.value() if find_all else None,
        )

    def refine(self) -> ServerTask | None:
        """A new results layer ranked by the marks."""
        try:
            params = self.params(find_all=False)
        except InputError as exc:
            self._say(str(exc))
            return None
        return self.controller.search(params)

    def find_all(self, path: str | None = None) -> ServerTask | None:
        """Every tile of the collection scoring at least the threshold, as a layer exported to path."""
        try:
            params = self.params(find_all=True)
        except InputError as exc:
            self._say(str(exc))
            return None
        path = path or self.controller.ask_export_path()
        if not path:
            return None
        return self.controller.search(params, previews=False,
                                      on_layer=lambda layer: self.controller.export(path, layer))

    def shutdown(self) -> None:
        """Release the map tool."""
        if self.tool is not None and not sip.isdeleted(self.tool):
            self.controller.iface.mapCanvas().unsetMapTool(self.tool)
        self.tool = None
