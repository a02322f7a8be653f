"""POST /train and POST /model on a live `python -m server` over real HTTP (harma-tiny keeps it short)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
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
    # keep reading its log: loading a run exports ONNX graphs with pages of INFO lines, and a full pipe blocks it
    threading.Thread(target=proc.stdout.read, daemon=True).start()
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
    assert "polygons" in result["init_val"] and "/reindex" in result["next"]
    tuned = result["model_identity"]
    assert result["registered"] and tuned != served
    health = call(base, "GET", "/health")[1]
    assert health["model"] == served  # trained, not swapped: the run is an available model
    assert {m["identity"]: m["source"] for m in health["models"]}[tuned] == result["run"]

    # the old collection still answers; re-indexing makes a new collection with the tuned model (a job)
    status, hits = call(base, "POST", "/search", {"text": "a beach", "collections": ["before"], "k": 3})
    assert status == 200 and len(hits["features"]) == 3 and hits["model"] == served
    status, job = call(base, "POST", "/collections/before/reindex", {"model": result["run"], "into": "after"})
    assert status == 202 and job["kind"] == "index" and job["collection"] == "after"
    done = wait(base, job["job_id"])[0]
    assert done["state"] == "done" and done["done"] == done["total"] > 0
    listed = {c["name"]: c["model"] for c in call(base, "GET", "/collections")[1]["collections"]}
    assert listed["before"]["identity"] == served and listed["after"]["identity"] == tuned
    assert listed["after"]["source"] == result["run"] and listed["after"]["state"] == "loaded"
    # all collections, both models (dedupe off: the two collections tile the same raster alike)
    status, hits = call(base, "POST", "/search", {"text": "a beach", "k": 40, "dedupe": False})
    assert status == 200 and not hits["skipped_collections"]
    assert {m["identity"] for m in hits["models"]} == {served, tuned}
    assert {f["properties"]["collection"] for f in hits["features"]} == {"before", "after"}

    # POST /model makes the run the default for new collections only; "before" keeps its model
    status, switched = call(base, "POST", "/model", {"model": result["run"]})
    assert status == 200 and switched["previous"] == served and switched["model"] == tuned
    assert call(base, "GET", "/health")[1]["model"] == tuned
    assert call(base, "POST", "/search", {"text": "a beach", "collections": ["before"], "k": 3})[0] == 200
    assert call(base, "POST", "/collections", {"name": "later", "tile_size": 256})[0] == 201
    assert call(base, "GET", "/collections/later")[1]["model"]["identity"] == tuned
    assert call(base, "POST", "/model", {"model": "harma-tiny"})[0] == 200  # back, for the other tests
    assert call(base, "GET", "/health")[1]["model"] == served  # the name is its source, not the run's name


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
