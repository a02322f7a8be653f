"""Helpers shared by the QGIS plugin tests: paths, a live server subprocess, waiting on tasks."""
import json
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GEOTIFF = (REPO / ".." / "shared" / "data" / "geotiff").resolve()
RASTER = GEOTIFF / "landsat8_grenada_rgb.tif"
COLLECTION = "grenada"
SERVER_PYTHON = REPO / ".venv" / "bin" / "python"
WAIT_LIMIT_S = 600  # a guard against hangs, not a speed requirement


def wait_until(condition, what: str, limit_s: float = WAIT_LIMIT_S) -> None:
    """Process Qt events until condition() holds (tasks report through the event loop)."""
    from qgis.core import QgsApplication

    deadline = time.monotonic() + limit_s
    while not condition():
        QgsApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {limit_s} s")


def wait_task(task):
    """Wait until a plugin task has handed its outcome to the plugin; return that TaskResult."""
    wait_until(lambda: task.result is not None, f"task '{task.description()}'")
    return task.result


def get_json(url: str):
    """GET url with the standard library (an independent look at the server's state)."""
    with urllib.request.urlopen(url, timeout=60) as reply:  # noqa: S310 - loopback test server
        return json.loads(reply.read())


class LiveServer:
    """A `python -m server` subprocess; its output is drained by a thread into .lines."""

    def __init__(self, store: Path, roots: tuple[Path, ...] = (GEOTIFF,)) -> None:
        self.store = store
        env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
        env.pop("QT_QPA_PLATFORM", None)
        self.proc = subprocess.Popen(
            [str(SERVER_PYTHON), "-m", "server", "--store", str(store), "--host", "127.0.0.1", "--port", "0",
             *[arg for root in roots for arg in ("--allowed-root", str(root))]],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.url = ""
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if not self.url and "serving on http://" in line:
                self.url = line.split("serving on ", 1)[1].split()[0].removesuffix("/api/v1")

    def wait_ready(self) -> str:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not self.url:
            if self.proc.poll() is not None:
                pytest.fail("server exited early:\n" + "\n".join(self.lines[-30:]))
            if time.monotonic() > deadline:
                pytest.fail("server did not start:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.2)
        return self.url

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def post_json(url: str, body: dict):
    """POST a JSON body with the standard library and return the decoded answer."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310 - loopback test server
        return json.loads(reply.read())


def index_directly(server_url: str, collection: str, raster: Path, tile_size: int) -> dict:
    """Index one raster through the HTTP API (not the plugin) and wait for its job; returns the final job."""
    api = f"{server_url}/api/v1"
    if collection not in get_json(f"{api}/health")["collections"]:
        post_json(f"{api}/collections", {"name": collection, "tile_size": tile_size})
    job = post_json(f"{api}/collections/{collection}/rasters", {"paths": [str(raster)]})
    deadline = time.monotonic() + WAIT_LIMIT_S
    while job["state"] not in ("done", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.3)
        job = get_json(f"{api}/jobs/{job['job_id']}")
    assert job["state"] == "done", job
    return job
