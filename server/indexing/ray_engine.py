"""The Ray Data executor of the shard plan (server/indexing/shard_plan.py): read blocks -> CPU read tasks -> an actor
pool of encoders (one GPU each where the cluster has GPUs) -> rows streamed back to the driver's collector.

Ray retries a read task or restarts an encoder actor whose worker died; the collector keys rows by (chunk,
window), so a retried task's rows count once and a shard is written only when all its windows are in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from server.errors import RasterError, ServerError
from server.indexing.shard_plan import Chunk, Encoder, ShardCollector, read_block
from server.indexing.tiling import inspect_raster
from server.store.records import RasterInfo, TilingParams

READ_CPUS = 0.25  # CPU share reserved per read task: reading is light next to encoding
ACTOR_CPUS = 0.75  # per CPU encoder: one actor per core, so a read task still fits on a 1-CPU node
MAX_INPUT_BLOCKS = 4096  # read tasks per run at most; past it a task reads several read blocks in turn


def connect(address: str | None) -> None:
    """Join a cluster (`auto` or HOST:PORT) or, without an address, start a local Ray for this run."""
    import ray

    if ray.is_initialized():
        return
    if address and address != "auto":
        check_reachable(address)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")  # our own bar shows tiles/s and ETA
    try:
        ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ServerError(f"cannot join the Ray cluster at {address!r} ({e}); start one with `ray start --head`, "
                          "give its HOST:PORT, and set RAY_AUTH_MODE=token if it uses token auth") from e
    if not address:  # our own local cluster: end it if this process dies without ray.shutdown()
        session = _session_dir()
        if session:
            from server.indexing.ray_reaper import watch

            watch(session, os.getpid())


def _session_dir() -> str | None:
    """The folder of the local Ray session this driver started (Ray's node API; None if it moved)."""
    try:
        from ray._private import worker

        return str(worker.global_worker.node.get_session_dir_path())
    except (ImportError, AttributeError):
        return None


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, naming the address, when nothing answers at HOST:PORT (ray.init retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServerError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379) or 'auto'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise ServerError(f"cannot join the Ray cluster at {address!r}: nothing answers there ({e}); start one "
                          "with `ray start --head` and give its HOST:PORT (the GCS port, 6379 by default)") from None


def _inspect(path: str, params: TilingParams) -> tuple[RasterInfo | None, str | None]:
    """inspect_raster with its refusal returned as text (cheaper to ship back than an exception)."""
    try:
        return inspect_raster(path, params), None
    except (RasterError, OSError) as e:
        return None, getattr(e, "detail", str(e))


def inspect_all(paths: Sequence[str], params: TilingParams) -> list[tuple[str, RasterInfo | None, str | None]]:
    """Inspect rasters as Ray tasks (stretch percentiles read the whole raster, so this spreads too)."""
    import ray

    task = ray.remote(num_cpus=READ_CPUS, max_retries=3)(_inspect)
    results = ray.get([task.remote(p, params) for p in paths])
    return [(p, info, err) for p, (info, err) in zip(paths, results)]


def _encoder_resources() -> tuple[int, dict[str, Any]]:
    """Actor pool size and per-actor resources: one actor per GPU, else one per CPU core."""
    import ray

    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return max(1, int(res.get("CPU", 1))), {"num_cpus": ACTOR_CPUS}


def run_ray(chunks: list[Chunk], todo: list[int], collector: ShardCollector, model: str, *, device: str,
            batch_size: int, out_side: int | None, progress: Callable[[int], None] | None = None,
            actors: int | None = None, runtime: str = "auto", views: int = 1) -> None:
    """Run the read and encode stages of the pending chunks on the cluster, feeding the collector."""
    import ray.data

    if not todo:
        return
    size, resources = _encoder_resources()
    device = "cuda" if resources.get("num_gpus") and device == "auto" else ("cpu" if device == "auto" else device)
    items = [block for cid in todo for block in chunks[cid].blocks(cid)]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_INPUT_BLOCKS))
    ds = ds.flat_map(read_block, fn_kwargs={"out_side": out_side}, num_cpus=READ_CPUS)
    threads = None if resources.get("num_gpus") else 1  # one core per CPU actor, as Ray's OMP_NUM_THREADS says
    kwargs = {"model": model, "device": device, "batch_size": batch_size, "runtime": runtime, "threads": threads,
              "views": views}
    ds = ds.map_batches(Encoder, fn_constructor_kwargs=kwargs,
                        batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=actors or size), **resources)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        n = collector.add(batch)
        if progress:
            progress(n)
    collector.check_done()


def run_or_explain(chunks: Sequence[Chunk], todo: Sequence[int], collector: ShardCollector, model_spec: str, *,
                   shards_dir: Any, **kwargs: Any) -> None:
    """run_ray, and when the cluster itself fails mid-run (a raylet or node killed, the GCS gone) one error
    that says what is kept and how to resume, instead of Ray's internals."""
    import ray

    try:
        run_ray(chunks, todo, collector, model_spec, **kwargs)
    except ServerError:
        raise
    except (ray.exceptions.RayError, ConnectionError, RuntimeError, OSError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        written = sum(1 for c in todo if c not in collector.rows)
        logging.getLogger("ray").disabled = True  # the run is over: Ray Data's threads would log it again
        with contextlib.suppress(Exception):  # stop the core worker now: its recovery chatter would follow our line
            ray.shutdown()
        raise ServerError(f"the Ray cluster failed during the run ({type(e).__name__}: {reason}); the "
                          f"{written} shard(s) finished are kept in {shards_dir}: restart the cluster "
                          "(or drop --ray-address for a local one) and run the same command again to resume") from e
