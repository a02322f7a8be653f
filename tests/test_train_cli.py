"""The command-line contract of polygon training: tools/train.py --raster --labels --label-field, then the run
folder as --model for tools/index.py and tools/search.py; bad input is one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tools.mosaic import build_mosaic

ROOT = Path(__file__).resolve().parents[1]


def tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_train_then_index_and_search_with_the_run_folder(tmp_path, shared_data):
    m = build_mosaic(shared_data / "captions" / "ucm_captions", "train", tmp_path / "m", per_class=2,
                     classes=["beach", "forest", "freeway", "harbor", "parkinglot", "river"])
    run, store = tmp_path / "run", tmp_path / "store"
    bad = tool("tools/train.py", "--raster", str(m.tif), "--labels", str(m.gpkg), "--label-field", "split",
               "--model", "harma-tiny", "--out", str(run))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ") and "one class only" in bad.stderr
    assert not run.exists()  # nothing half-written

    done = tool("tools/train.py", "--raster", str(m.tif), "--labels", str(m.gpkg), "--label-field", "label",
                "--model", "harma-tiny", "--out", str(run), "--epochs", "1", "--batch-size", "4", "--workers", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert "polygons" in summary["init_val"] and summary["best_epoch"] == 1

    indexed = tool("tools/index.py", "--store", str(store), "tuned", str(m.tif), "--model", str(run),
                   "--tile-size", "256", "--runtime", "torch", "--quiet")
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    hits = tool("tools/search.py", "--store", str(store), "tuned", "a beach", "--model", str(run), "--json")
    assert hits.returncode == 0, hits.stderr[-2000:]
    assert len(json.loads(hits.stdout.strip().splitlines()[-1])["features"]) == 10
    refused = tool("tools/search.py", "--store", str(store), "tuned", "a beach", "--model", "harma-tiny")
    assert refused.returncode == 2 and "re-index" in refused.stderr and "Traceback" not in refused.stderr
