"""A live `python -m server` driven over loopback HTTP for the benches: start, request, latency and load."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, RSICD_DIR, UCM_DIR, percentile

URL_RE = re.compile(r"serving on http://([\d.]+):(\d+)/api/v1")


class Server:
    """A `python -m server` child on a free loopback port, stopped on exit."""

    def __init__(self, store: Path, model: str, log_path: Path, threads: int | None = None,
                 runtime: str = "auto") -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
        if threads:  # torch and BLAS read these at start-up
            env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--store", str(store), "--host", "127.0.0.1", "--port", "0",
             "--model", model, "--runtime", runtime], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.port = 0

    def wait(self, timeout: float = 300.0) -> None:
        """Block until the server prints its address."""
        assert self.proc.stdout is not None
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            if m := URL_RE.search(line):
                self.port = int(m.group(2))
                return
        self.stop()
        raise RuntimeError(f"server did not start; see {self.log.name}:\n{Path(self.log.name).read_text()[-2000:]}")

    def request(self, method: str, path: str, body: Any = None, timeout: float = 120.0) -> tuple[float, Any]:
        """(seconds, decoded JSON) of one HTTP request on a new connection, as clients make them."""
        data = None if body is None else json.dumps(body).encode()
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, f"/api/v1{path}", body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        secs = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"{method} {path} -> {resp.status}: {raw[:500]!r}")
        return secs, json.loads(raw)

    def stop(self) -> None:
        """Terminate the child and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def query_texts(n: int) -> list[str]:
    """n distinct real captions (UCM and RSICD validation), so every text query misses the cache."""
    from harma_core.data import flatten_captions, load_dataset, normalize_caption

    seen: dict[str, None] = {}
    for d in (UCM_DIR, RSICD_DIR):
        for c in flatten_captions(load_dataset(d, "val").items)[0]:
            seen.setdefault(normalize_caption(c), None)
            if len(seen) >= n:
                return list(seen)
    return list(seen)


def stats(secs: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean in milliseconds."""
    ms = [s * 1e3 for s in secs]
    return {"p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "p99_ms": percentile(ms, 99),
            "mean_ms": float(np.mean(ms)), "n": len(ms)}


def timed(server: Server, bodies: list[dict[str, Any]]) -> list[float]:
    """Seconds of each search, sequentially; every answer must hold hits."""
    out = []
    for b in bodies:
        secs, fc = server.request("POST", "/search", b)
        if not fc["features"]:
            raise RuntimeError(f"search {b} returned no hits")
        out.append(secs)
    return out


def concurrent(server: Server, bodies: list[dict[str, Any]], clients: int, total: int) -> float:
    """Queries per second with `clients` threads sharing `total` requests (bounded, loopback only)."""
    per = max(1, total // clients)
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def worker(w: int) -> None:
        barrier.wait()
        try:
            for i in range(per):
                server.request("POST", "/search", bodies[(w * per + i) % len(bodies)])
        except BaseException as e:  # noqa: BLE001 - reported after the join
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]}")
    return per * clients / (time.perf_counter() - t0)


def ab_latency(servers: dict[str, Server], bodies: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Latency of the same queries on several servers, alternating server order query by query."""
    secs: dict[str, list[float]] = {name: [] for name in servers}
    items = list(servers.items())
    for i, b in enumerate(bodies):
        for name, srv in items[i % 2:] + items[:i % 2]:
            secs[name].append(srv.request("POST", "/search", b)[0])
    return {name: stats(v) for name, v in secs.items()}
