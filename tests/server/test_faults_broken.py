"""One broken collection (each kind of damaged file) never takes down listing, other searches or the process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faults_testutil import call, live_app
from server_testutil import REPO, SMALL


def _garbage_manifest(folder: Path) -> None:
    (folder / "manifest.json").write_bytes(b"\x00{not json")


def _manifest_without_model(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["model"]
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _garbage_tiles(folder: Path) -> None:
    (folder / "tiles.gpkg").write_bytes(b"this is not a GeoPackage at all" * 100)


def _truncated_index(folder: Path) -> None:
    index = folder / "index.bin"
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])


def _other_dimension(folder: Path) -> None:  # hnswlib corrupts the heap if it loads this file
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model"]["dim"] = 384
    (folder / "manifest.json").write_text(json.dumps(manifest))


BREAKS = {"garbage manifest.json": (_garbage_manifest, "manifest.json"),
          "manifest.json without model": (_manifest_without_model, "manifest.json"),
          "garbage tiles.gpkg": (_garbage_tiles, "tiles.gpkg"),
          "truncated index.bin": (_truncated_index, "index.bin"),
          "dimension disagreeing with index.bin": (_other_dimension, "index.bin")}


@pytest.fixture()
def two(indexed: Path, tmp_path: Path) -> Path:
    """A store with collections 'good' and 'bad', copies of the indexed 'base'."""
    store = tmp_path / "store"
    for name in ("good", "bad"):
        shutil.copytree(indexed / "base", store / name)
        manifest = json.loads((store / name / "manifest.json").read_text())
        manifest["name"] = name
        (store / name / "manifest.json").write_text(json.dumps(manifest))
    return store


@pytest.mark.parametrize("kind", list(BREAKS))
def test_a_broken_collection_is_listed_as_broken_and_the_rest_keeps_working(two, model, kind):
    damage, file_name = BREAKS[kind]
    damage(two / "bad")
    with live_app(two, model) as base:
        status, listing = call(base, "GET", "/collections")
        assert status == 200, listing
        by_name = {c["name"]: c for c in listing["collections"]}
        assert by_name["good"]["tiles"] == 22 and by_name["good"]["state"] == "ok"
        bad = by_name["bad"]
        assert bad["state"] == "broken" and file_name in bad["reason"] and bad["fix"], bad
        status, one = call(base, "GET", "/collections/bad")
        assert status == 200 and one["state"] == "broken" and one["reason"] == bad["reason"], one

        status, fc = call(base, "POST", "/search", {"text": "a river", "k": 3})
        assert status == 200 and len(fc["features"]) == 3, fc
        assert {f["properties"]["collection"] for f in fc["features"]} == {"good"}
        skipped = {s["collection"]: s["reason"] for s in fc["skipped_collections"]}
        assert file_name in skipped["bad"], fc
        status, err = call(base, "POST", "/search", {"text": "a river", "collections": ["bad"]})
        assert status == 409 and file_name in err["detail"], err
        status, err = call(base, "POST", "/collections/bad/rasters", {"paths": [str(SMALL)]})
        assert status == 409 and file_name in err["detail"], err
        assert call(base, "GET", "/health")[0] == 200
        assert call(base, "DELETE", "/collections/bad")[0] == 200  # the fix may be to delete it
        assert [c["name"] for c in call(base, "GET", "/collections")[1]["collections"]] == ["good"]


@pytest.mark.parametrize("kind", ["garbage tiles.gpkg", "dimension disagreeing with index.bin"])
def test_the_cli_prints_one_line_for_a_broken_collection(two, kind):
    damage, file_name = BREAKS[kind]
    damage(two / "bad")
    for cmd in (["tools/search.py", "--store", str(two), "bad", "a river"],
                ["tools/index.py", "--store", str(two), "bad", str(SMALL), "--quiet"]):
        done = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=600)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: collection 'bad'") and file_name in lines[0], lines


def test_a_collection_damaged_while_open_turns_broken_without_harm(two, model):
    with live_app(two, model) as base:
        assert call(base, "POST", "/search", {"text": "a river", "k": 3})[0] == 200
        _truncated_index(two / "bad")  # another process (or a disk fault) truncates the file under us
        status, fc = call(base, "POST", "/search", {"text": "a river", "k": 3})
        assert status == 200 and {f["properties"]["collection"] for f in fc["features"]} == {"good"}, fc
        listing = {c["name"]: c for c in call(base, "GET", "/collections")[1]["collections"]}
        assert listing["bad"]["state"] == "broken" and listing["good"]["state"] == "ok"
