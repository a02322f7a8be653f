"""The server conversations (search, index with polling and cancel, previews) over any client object.

The client is the plugin's QGIS network client in production; these functions only sequence requests,
so the Processing algorithms and the dock's tasks share them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from . import api
from .errors import CancelledError, InputError, PluginError, ServerResponseError
from .feedback import FeedbackParams
from .hits import Hit, SearchAnswer, filter_min_score, parse_answer, threshold_value
from .params import IndexParams, SearchParams
from .status import JobStatus, ServerStatus, parse_health, parse_job

POLL_SECONDS = 0.5
CANCEL_WAIT_SECONDS = 30.0


class Client(Protocol):
    """What the operations need from a network client."""

    def call(self, request: api.ApiRequest) -> Any:
        """Send request, return the decoded JSON body; raise PluginError subclasses."""

    def download(self, request: api.ApiRequest, dest: str) -> str:
        """Send request, write the body to dest, return dest."""

    def detached(self) -> Client:
        """A client that ignores cancellation (to send the cancel itself)."""


MAX_DESCRIBED = 20  # collections whose raster lists are fetched with the status


def fetch_status(client: Client) -> ServerStatus:
    """GET /health, /collections and each collection's rasters as one ServerStatus."""
    status = parse_health(client.call(api.health()))
    try:
        listing = client.call(api.list_collections())
        rasters = {name: client.call(api.collection(name)) for name in status.collections[:MAX_DESCRIBED]}
    except ServerResponseError:  # an older server, or a broken collection: the health alone still answers
        return status
    return status.with_collections(listing, rasters)


def search_answer(client: Client, params: SearchParams | FeedbackParams) -> SearchAnswer:
    """POST /search (text, example tile or marked tiles): the hits (min relevance applied) and no_match."""
    feedback = isinstance(params, FeedbackParams)
    body = client.call(api.feedback_search(params) if feedback else api.search(params))
    answer = parse_answer(body, params.label)
    return replace(answer, hits=filter_min_score(answer.hits, params.min_score))


def run_search(client: Client, params: SearchParams | FeedbackParams) -> list[Hit]:
    """POST /search and return the hits (min relevance applied)."""
    return search_answer(client, params).hits


def best_score(client: Client, params: SearchParams | FeedbackParams) -> float | None:
    """The best relevance the same search reaches without a minimum (to say how far to lower it)."""
    extra = {"find_all": False} if isinstance(params, FeedbackParams) else {}
    hits = run_search(client, replace(params, min_score=None, k=1, **extra))
    return threshold_value(hits[0]) if hits else None


def no_match_message(params: SearchParams | FeedbackParams, best: float | None) -> str:
    """What to change when a search found nothing."""
    label, min_score = params.label, params.min_score
    if min_score is not None and best is not None:
        if isinstance(params, FeedbackParams):
            return f"No tile reaches relevance {min_score:.3f} (best here: {best:.3f}): lower the value next to Find all"
        return (f"No tile reaches relevance {min_score:.2f} (best here: {best:.2f}): lower Min relevance or set "
                "it to 'any'")
    return f"No tiles for '{label}' in this scope: search the whole collection or index rasters covering this area"


def _tiling(summary: dict[str, Any]) -> str:
    tiling = summary.get("tiling") or {}
    if tiling.get("tile_size_m"):
        return f"{tiling['tile_size_m']} m tiles"
    return f"{tiling['tile_size']} px tiles" if tiling.get("tile_size") else "automatic tile size"


def ensure_collection(client: Client, params: IndexParams) -> bool:
    """Create the collection unless it exists; True when it was created.

    An existing collection with another tile size is refused here: the server would skip rasters already in
    it and the new size would be silently ignored.
    """
    body = client.call(api.list_collections())
    items = body.get("collections", []) if isinstance(body, dict) else body
    summaries = {str(c.get("name")): c for c in items or () if isinstance(c, dict)}
    summaries.update({str(c): {} for c in items or () if isinstance(c, str)})
    if params.collection in summaries:
        tiling = summaries[params.collection].get("tiling") or {}
        if params.tile_size is not None and tiling and tiling.get("tile_size") != params.tile_size:
            raise InputError(
                f"Collection '{params.collection}' already uses {_tiling(summaries[params.collection])}, not "
                f"{params.tile_size} px: index into a new collection name, or set Tile size to 'server default'")
        return False
    try:
        client.call(api.create_collection(params.collection, params.tile_size, params.overlap))
    except ServerResponseError as exc:
        if exc.status != 409:  # created meanwhile by someone else: fine
            raise
        return False
    return True


def run_index(
    client: Client,
    params: IndexParams,
    on_progress: Callable[[JobStatus], None],
    is_cancelled: Callable[[], bool],
    on_job: Callable[[str], None] = lambda job_id: None,
    poll_seconds: float = POLL_SECONDS,
) -> JobStatus:
    """Start an indexing job and poll it to the end; on cancel, cancel the server job and raise CancelledError."""
    created = ensure_collection(client, params)
    try:
        # Sent without the cancel feedback so the job id always comes back and the job can be cancelled.
        started = client.detached().call(api.add_rasters(params.collection, params.paths))
    except PluginError:
        if created:  # a refused request must not leave an empty collection behind
            client.detached().call(api.delete_collection(params.collection))
        raise
    job_id = str(started.get("job_id", "")) if isinstance(started, dict) else ""
    if not job_id:
        raise ServerResponseError(f"the server started no job for {params.collection!r}: got {started!r}")
    on_job(job_id)
    return follow_job(client, job_id, on_progress, is_cancelled, poll_seconds)


def run_reindex(
    client: Client,
    collection: str,
    model: str,
    into: str,
    on_progress: Callable[[JobStatus], None],
    is_cancelled: Callable[[], bool],
    on_job: Callable[[str], None] = lambda job_id: None,
) -> JobStatus:
    """POST /collections/<name>/reindex (a new collection `into` with model) and follow its index job."""
    started = client.detached().call(api.reindex_collection(collection, model, into))
    job_id = str(started.get("job_id", "")) if isinstance(started, dict) else ""
    if not job_id:
        raise ServerResponseError(f"the server started no re-index job for {collection!r}: got {started!r}")
    on_job(job_id)
    return follow_job(client, job_id, on_progress, is_cancelled)


def follow_job(
    client: Client,
    job_id: str,
    on_progress: Callable[[JobStatus], None],
    is_cancelled: Callable[[], bool],
    poll_seconds: float = POLL_SECONDS,
) -> JobStatus:
    """Poll an index job to its end; on cancel, cancel the server job and raise CancelledError."""
    try:
        while not is_cancelled():
            status = parse_job(client.call(api.job_status(job_id)), job_id)
            on_progress(status)
            if status.finished:
                return _final(status)
            time.sleep(poll_seconds)
    except CancelledError:
        pass  # a poll aborted by the cancel: cancel the server job below
    final = cancel_job(client.detached(), job_id)
    on_progress(final)
    raise CancelledError(f"Indexing cancelled by the user; server job {job_id} is {final.describe()}")


def _final(status: JobStatus) -> JobStatus:
    if status.state == "failed":
        raise ServerResponseError(f"Indexing job {status.job_id} failed: {'; '.join(status.errors) or 'no detail'}")
    if status.state == "cancelled":
        raise CancelledError(f"Indexing job {status.job_id} was cancelled on the server")
    return status


def cancel_job(client: Client, job_id: str, wait_seconds: float = CANCEL_WAIT_SECONDS) -> JobStatus:
    """DELETE /jobs/<id> and wait until the server reports the job finished (normally 'cancelled')."""
    try:
        client.call(api.cancel_job(job_id))
    except ServerResponseError as exc:
        if exc.status != 409:  # 409: it finished before the cancel arrived; report its final state
            raise
    deadline = time.monotonic() + wait_seconds
    while True:
        status = parse_job(client.call(api.job_status(job_id)), job_id)
        if status.finished or time.monotonic() > deadline:
            return status
        time.sleep(POLL_SECONDS)


def download_previews(client: Client, hits: list[Hit], folder: str, count: int) -> list[tuple[Hit, str]]:
    """Download the georeferenced crops of the top count hits into folder; return (hit, path) pairs."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    saved = []
    for hit in hits[:count]:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{hit.collection}_{hit.tile_id}")
        dest = str(Path(folder) / f"{safe}.tif")
        saved.append((hit, client.download(api.tile_raster(hit.collection, hit.tile_id), dest)))
    return saved
