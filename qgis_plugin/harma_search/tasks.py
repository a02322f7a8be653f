"""QgsTasks that run server calls off the main thread and report a Success/Failed/Cancelled outcome."""
from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from qgis.core import Qgis, QgsFeedback, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .logic.errors import CancelledError, PluginError, ServerUnavailableError
from .logic.operations import run_index
from .logic.params import IndexParams
from .logic.status import JobStatus
from .network import LOG_TAG, ServerClient
from .settings import PluginSettings


class Outcome(Enum):
    """How a task ended."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class TaskResult:
    """What finished() hands to the plugin on the main thread."""

    outcome: Outcome
    value: Any = None
    error: str = ""
    unavailable: bool = False  # the server could not be reached at all


Work = Callable[[ServerClient, "ServerTask"], Any]


class ServerTask(QgsTask):
    """Runs work(client, task) in run(); never touches the GUI there; calls on_done from finished()."""

    def __init__(self, description: str, settings: PluginSettings, work: Work,
                 on_done: Callable[[TaskResult], None]) -> None:
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.settings = settings
        self.work = work
        self.on_done = on_done
        self.feedback = QgsFeedback()
        self.value: Any = None
        self.error = ""
        self.cancelled_by_server = False
        self.unavailable = False
        self.result: TaskResult | None = None  # set on the main thread once finished() ran

    def run(self) -> bool:
        """Worker thread: do the work, keep the value or the error message.

        A cancel returns True: QGIS reports a task that returns False as "Task failed", and a cancelled
        one did what was asked; finished() still hands over a Cancelled outcome.
        """
        try:
            client = ServerClient(self.settings.server_url, self.settings.token, self.feedback)
            self.value = self.work(client, self)
            return True
        except CancelledError as exc:
            self.error = str(exc)
            self.cancelled_by_server = True
            return True
        except ServerUnavailableError as exc:
            self.error = str(exc)
            self.unavailable = True
            return self.isCanceled()
        except PluginError as exc:
            self.error = str(exc)
            return self.isCanceled()
        except Exception as exc:  # a bug, not a user error: log the traceback, show one line
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.MessageLevel.Critical)
            self.error = f"Unexpected error in '{self.description()}': {exc} (details in the log panel)"
            return self.isCanceled()

    def cancel(self) -> None:
        """Abort the running request as well as the task."""
        self.feedback.cancel()
        super().cancel()

    def finished(self, result: bool) -> None:
        """Main thread: hand the outcome over."""
        if self.isCanceled() or self.cancelled_by_server:
            outcome = TaskResult(Outcome.CANCELLED, self.value, self.error or "Cancelled")
        elif result:
            outcome = TaskResult(Outcome.SUCCESS, self.value)
        else:
            outcome = TaskResult(Outcome.FAILED, self.value, self.error, self.unavailable)
        self.result = outcome
        self.on_done(outcome)


class IndexTask(ServerTask):
    """Indexing job: progress goes to the task manager, each job status to statusChanged (queued to main)."""

    statusChanged = pyqtSignal(object)  # JobStatus

    def __init__(self, settings: PluginSettings, params: IndexParams,
                 on_done: Callable[[TaskResult], None]) -> None:
        super().__init__(f"HarMA: index {len(params.paths)} raster(s) into '{params.collection}'",
                         settings, self._index, on_done)
        self.params = params
        self.job_id = ""
        self.last_status: JobStatus | None = None

    def _index(self, client: ServerClient, task: ServerTask) -> JobStatus:
        return run_index(client, self.params, self._progress, self.isCanceled, self._job)

    def _job(self, job_id: str) -> None:
        self.job_id = job_id

    def _progress(self, status: JobStatus) -> None:
        self.last_status = status
        self.setProgress(status.percent)
        self.statusChanged.emit(status)
