"""POST /train and POST /model on a live `python -m server` over real HTTP (harma-tiny keeps it short)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_testutil import REPO, call

UCM = REPO / ".." / "shared" / "data" / "captions" / "ucm_captions"
CLASSES = ["beach", "forest", "freeway", "harbor", "parkinglot", "river"]




def wait(base: str, job_id: str, until=lambda j: j["state"] in ("done", "failed", "cancelled"),
         timeout: float = 600) -> tuple[dict, list[dict]]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = call(base, "GET", f"/jobs/{job_id}")[1]
        seen.append(job)
        if until(job):
            return job, seen
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {seen[-1]['state']} after {timeout} s")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """(base URL, data folder with a labelled UCM mosaic, store) of a harma-tiny server."""
    from tools.mosaic import build_mosaic

    data = tmp_path_factory.mktemp("train_data")
    build_mosaic(UCM, "train", data / "mosaic", per_class=2, classes=CLASSES)
    store = tmp_path_factory.mktemp("train_store")
    proc = subprocess.Popen([sys.executable, "-m", "server", "--store", str(store), "--host", "127.0.0.1",
                             "--port", "0", "--allowed-root", str(data), "--model", "harma-tiny",
                             "--runtime", "torch"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base, seen = None, []
    for line in proc.stdout:
        seen.append(line)
        if m := re.search(r"serving on (http://127\.0\.0\.1:\d+/api/v1)", line):
            base = m.group(1)
            break
    assert base, "server did not start:\n" + "".join(seen)
    yield base, data, store
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def _body(data: Path, **extra) -> dict:
    return {"raster": [str(data / "mosaic.tif")], "labels": str(data / "mosaic.gpkg"), "label_field": "label",
            "batch_size": 4, "lr": 0.002, **extra}


def test_train_job_reports_progress_and_never_swaps_the_model(live):
    base, data, store = live
    served = call(base, "GET", "/health")[1]["model"]
    assert call(base, "POST", "/collections", {"name": "before", "tile_size": 256})[0] == 201
    job = call(base, "POST", "/collections/before/rasters", {"paths": [str(data / "mosaic.tif")]})[1]
    assert wait(base, job["job_id"])[0]["state"] == "done"

    status, job = call(base, "POST", "/train", _body(data, epochs=2, run="tiny1"))
    assert status == 202 and job["kind"] == "train"
    final, seen = wait(base, job["job_id"])
    assert final["state"] == "done", final["errors"]
    training = [j for j in seen if j["total"]]
    assert training and training[-1]["total"] == final["total"] == final["done"]
    assert any(j["eta_s"] is not None and 0 < j["done"] < j["total"] for j in seen) or len(training) == 1
    result = final["result"]
    assert Path(result["run"]) == Path(store) / "runs" / "tiny1"
    assert "polygons" in result["init_val"] and "POST /api/v1/model" in result["next"]
    assert call(base, "GET", "/health")[1]["model"] == served  # trained, not swapped

    # the tuned model is loaded only on request; the old collection is then refused until re-indexed
    status, switched = call(base, "POST", "/model", {"model": result["run"]})
    assert status == 200 and switched["previous"] == served and switched["model"] != served
    status, err = call(base, "POST", "/search", {"text": "a beach", "collections": ["before"]})
    assert status == 409 and "re-index" in err["detail"]
    assert call(base, "POST", "/collections", {"name": "after", "tile_size": 256})[0] == 201
    job = call(base, "POST", "/collections/after/rasters", {"paths": [str(data / "mosaic.tif")]})[1]
    assert wait(base, job["job_id"])[0]["state"] == "done"
    status, hits = call(base, "POST", "/search", {"text": "a beach", "collections": ["after"], "k": 3})
    assert status == 200 and len(hits["features"]) == 3
    assert call(base, "POST", "/model", {"model": "harma-tiny"})[0] == 200  # back, for the other tests


def test_train_job_cancel_and_bad_requests(live):
    base, data, store = live
    status, job = call(base, "POST", "/train", _body(data, epochs=200, run="long"))
    assert status == 202
    wait(base, job["job_id"], until=lambda j: j["done"] > 0 or j["state"] != "running" and j["state"] != "queued")
    assert call(base, "DELETE", f"/jobs/{job['job_id']}")[0] == 200
    final, _ = wait(base, job["job_id"])
    assert final["state"] == "cancelled" and "resume" in final["result"]["detail"]

    assert call(base, "POST", "/train", {**_body(data), "epoch": 3})[1]["detail"].startswith("unknown training key")
    status, err = call(base, "POST", "/train", {**_body(data), "labels": "/etc/passwd"})
    assert status == 403 and "allowed roots" in err["detail"]
    status, err = call(base, "POST", "/train", {**_body(data), "epochs": "3"})
    assert status == 400 and "epochs='3' must be int" in err["detail"]
    status, job = call(base, "POST", "/train", _body(data, label_field="landuse", run="bad"))
    final, _ = wait(base, job["job_id"])
    assert final["state"] == "failed" and "no label field 'landuse'" in final["errors"][0]
    assert not (Path(store) / "runs" / "bad").exists()
    status, err = call(base, "POST", "/model", {"model": "/etc"})
    assert status == 403
