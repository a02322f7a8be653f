"""The dock's indexing: a job as a QgsTask with progress, cancel, and what a dead server left behind."""
from __future__ import annotations

from typing import Any

from .logic.params import IndexParams
from .logic.status import JobStatus
from .tasks import IndexTask, Outcome, TaskResult


def interrupted_message(params: IndexParams, last: JobStatus | None) -> str:
    """What an indexing job cut off by a dead server kept, and how to resume it."""
    where = f" at {last.done}/{last.total or '?'} tiles" if last is not None else ""
    return (f"The server stopped while indexing '{params.collection}'{where}. The tiles it had saved are kept in "
            "the collection. Start the server again (Server tab) and press Index with the same rasters to "
            "resume: saved tiles are skipped.")


class IndexingMixin:
    """Indexing methods of the Controller (its dock, settings, tasks and failure display)."""

    dock: Any
    settings: Any
    closed: bool
    index_task: IndexTask | None
    last_job: JobStatus | None

    # ----- indexing -----
    def index(self, params: IndexParams) -> IndexTask | None:
        """Start an indexing job as a task (progress in the dock and the task manager)."""
        if self.index_task is not None and self.index_task.result is None:
            self.dock.set_index_message("An indexing job is already running: cancel it or wait")
            return None
        task = IndexTask(self.settings, params, self._index_done)
        task.statusChanged.connect(self._index_progress)
        self.index_task = task
        self.last_job = None
        self.dock.set_indexing(True)
        self.dock.set_index_message(f"Starting to index {len(params.paths)} raster(s)…")
        return self._start(task)

    def _index_progress(self, status: JobStatus) -> None:
        self.last_job = status
        if not self.closed:
            self.dock.show_job(status)

    def cancel_index(self) -> None:
        """Cancel the running indexing task; it cancels the server job."""
        if self.index_task is not None:
            self.index_task.cancel()

    def _index_done(self, result: TaskResult) -> None:
        if self.closed:
            return
        self.dock.set_indexing(False)
        if result.outcome is Outcome.SUCCESS:
            self.dock.show_job(result.value)
            name = self.index_task.params.collection
            combo = self.dock.collection_combo
            if not combo.currentText().strip():
                combo.setCurrentText(name)
            elif combo.currentText() != name:  # never switch what the analyst is searching
                self.dock.set_index_message(f"{result.value.describe()} · choose '{name}' under Collection to search it")
            self.check_server()
        elif result.outcome is Outcome.CANCELLED:
            self.dock.set_index_message(result.error)
        elif result.unavailable:  # the server died mid-job: the status line says so, this line what is left
            self._failed(result, self.dock.set_index_message)
            self.dock.set_index_message(interrupted_message(self.index_task.params, self.last_job))
        else:
            self._failed(result, self.dock.set_index_message)
