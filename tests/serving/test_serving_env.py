"""A torch-free install serves for real: `python -m server` from .venv-serve indexes the shared GeoTIFFs and
answers searches and previews over HTTP (run by tests/serving/run.sh, which makes the environment)."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GEOTIFF = (ROOT / ".." / "shared" / "data" / "geotiff").resolve()
RASTERS = ["landsat8_grenada_rgb.tif", "landsat_pucallpa_peru_2020.tif", "aerial_colorado_0p15m_rgb.tif"]


def _call(base: str, method: str, path: str, body: Any = None, raw: bool = False) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            payload = r.read()
            return r.status, payload if raw else json.loads(payload)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.fixture()
def server(tmp_path: Path):
    port = _free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "server", "--store", str(tmp_path / "store"), "--port", str(port),
                             "--allowed-root", str(GEOTIFF)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        while True:
            try:
                if _call(base, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() - t0 < 120, "the server did not answer within 120 s"
            time.sleep(0.2)
        yield base, proc, t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_this_environment_has_no_torch() -> None:
    for name in ("torch", "torchvision", "open_clip", "transformers", "timm"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed in the serving environment"


def test_a_torch_free_server_indexes_and_searches_real_rasters(server) -> None:
    base, proc, t0 = server
    status, text = _call(base, "POST", "/search", {"text": "a river winding through forest", "k": 3})
    first_answer_s = time.monotonic() - t0
    assert status == 200 and text["features"] == []
    status, health = _call(base, "GET", "/health")
    assert health["runtime"] == "onnx", health
    idle_mb = _rss_mb(proc.pid)
    assert _call(base, "POST", "/collections", {"name": "real", "views": 1})[0] in (200, 201)
    status, job = _call(base, "POST", "/collections/real/rasters", {"paths": [str(GEOTIFF / r) for r in RASTERS]})
    assert status == 202, job
    t1 = time.monotonic()
    while True:
        status, state = _call(base, "GET", f"/jobs/{job['job_id']}")
        if state["state"] not in ("queued", "running"):
            break
        assert time.monotonic() - t1 < 600
        time.sleep(0.5)
    assert state["state"] == "done", state
    tiles = state["done"]
    index_s = time.monotonic() - t1
    status, hits = _call(base, "POST", "/search", {"text": "a river winding through forest", "k": 5})
    assert status == 200 and len(hits["features"]) == 5
    assert {f["properties"]["collection"] for f in hits["features"]} == {"real"}
    status, png = _call(base, "GET", f"/tiles/real/{hits['features'][0]['properties']['tile_id']}.png", raw=True)
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    status, err = _call(base, "POST", "/train", {"data": str(GEOTIFF)})
    assert status == 409 and "[train]" in err["detail"], err
    print(f"\nserving env: cold start to first answer {first_answer_s:.1f} s, idle RSS {idle_mb:.0f} MB, "
          f"indexed {tiles} tiles (1 view) in {index_s:.1f} s")
