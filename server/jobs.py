"""Background jobs run one at a time on a worker thread: queued -> running -> done | failed | cancelled."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.errors import NotFound, ServerError
from server.indexing.pipeline import Progress

log = logging.getLogger(__name__)
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
JobFn = Callable[[Callable[[Progress], None], threading.Event], dict[str, Any]]


@dataclass
class Job:
    """One background job and its live progress."""

    id: str
    kind: str
    collection: str | None
    fn: JobFn
    state: str = QUEUED
    done: int = 0
    total: int = 0
    tiles_per_s: float = 0.0
    eta_s: float | None = None
    errors: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready status."""
        return {"job_id": self.id, "kind": self.kind, "collection": self.collection, "state": self.state,
                "done": self.done, "total": self.total, "tiles_per_s": round(self.tiles_per_s, 3),
                "eta_s": None if self.eta_s is None else round(self.eta_s, 1), "errors": list(self.errors),
                "result": self.result, "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at}


class JobManager:
    """Queue of jobs served by one daemon worker (the model is shared, so jobs never run side by side)."""

    def __init__(self, keep_finished: int = 200) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._keep = keep_finished
        self._worker = threading.Thread(target=self._run, name="job-worker", daemon=True)
        self._worker.start()

    def submit(self, kind: str, collection: str | None, fn: JobFn) -> Job:
        """Queue a job; fn(progress_callback, cancel_event) returns a result dict."""
        job = Job(id=uuid.uuid4().hex[:12], kind=kind, collection=collection, fn=fn)
        with self._lock:
            self._jobs[job.id] = job
            self._trim()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job:
        """A job by id."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}; it never existed or is too old to be kept")
        return job

    def list(self) -> list[Job]:
        """All kept jobs, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def busy(self, collection: str) -> bool:
        """True while a queued or running job targets the collection."""
        with self._lock:
            return any(j.collection == collection and j.state not in FINISHED for j in self._jobs.values())

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop: a queued job is cancelled at once, a running one at its next batch."""
        job = self.get(job_id)
        with self._lock:
            if job.state == QUEUED:
                job.state, job.finished_at = CANCELLED, time.time()
            job.cancel_event.set()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until a job finishes (for tests and scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get(job_id)
        while job.state not in FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return job

    def shutdown(self) -> None:
        """Cancel everything and stop the worker."""
        for job in self.list():
            job.cancel_event.set()
        self._queue.put(None)
        self._worker.join(timeout=30)

    def _trim(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.state in FINISHED]
        for job_id in finished[:max(0, len(finished) - self._keep)]:
            del self._jobs[job_id]

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.state != QUEUED:
                    continue
                job.state, job.started_at = RUNNING, time.time()

            def on_progress(p: Progress, job: Job = job) -> None:
                job.done, job.total, job.tiles_per_s, job.eta_s = p.done, p.total, p.tiles_per_s, p.eta_s

            try:
                result = job.fn(on_progress, job.cancel_event)
                job.result = result
                job.errors.extend(f"{s['raster']}: {s['reason']}" for s in result.get("skipped", []))
                job.state = CANCELLED if result.get("cancelled") else DONE
            except ServerError as e:
                job.errors.append(e.detail)
                job.state = FAILED
            except Exception as e:  # a job must end in a state, never take the worker down
                log.exception("job %s failed", job.id)
                job.errors.append(f"internal error ({type(e).__name__}: {e}); see the server log")
                job.state = FAILED
            job.finished_at = time.time()
