"""The Ray engine on a real two-node cluster: same collection as the local engine, and no tile lost or doubled
when an encoder worker or the driver is SIGKILLed mid-run."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from shards_testutil import ROOT, assert_same_collection, index_cli

from server.cli import run_index
from server.store.store import Store

RASTERS = ("aerial_colorado_0p15m_rgb.tif", "landsat7_bahamas_rgb.tif", "landsat8_grenada_rgb.tif")  # path order


@pytest.fixture(scope="module")
def reference(model: Any, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A store with 'loc', built by the plain local engine from three real rasters."""
    root = tmp_path_factory.mktemp("ray")
    paths = [str(shared_data / "geotiff" / r) for r in RASTERS]
    run_index(str(root), "loc", paths, model, {}, batch_size=16, quiet=True, out=io.StringIO())
    return root, paths


def _ray(address: str, *args: str) -> list[str]:
    return ["--engine", "ray", "--ray-address", address, "--batch-size", "16", "--quiet", *args]


def test_cluster_has_two_nodes(ray_address: str) -> None:
    code = (f"import ray; ray.init(address={ray_address!r}, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()), ray.cluster_resources().get('CPU'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split()[-2:] == ["2", "2.0"], out.stdout  # two nodes of one CPU each


def test_ray_engine_matches_local_engine(ray_address: str, reference: tuple[Path, list[str]], model: Any) -> None:
    root, paths = reference
    p = index_cli("--store", str(root), "ray", *paths, *_ray(ray_address))
    assert "engine ray:" in p.stdout and "tiles/s" in p.stdout.splitlines()[-1], p.stdout
    assert_same_collection(Store(root), "loc", "ray", model)


def _encoder_pids() -> list[int]:
    """Processes of Ray Data encoder actors (their title names the Encoder stage)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::") and "MapBatches(Encoder)" in cmd:
                pids.append(int(d.name))
    return pids


def _start(root: Path, name: str, paths: list[str], address: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "tools" / "index.py"), "--store", str(root), name, *paths,
                             *_ray(address, "--shard-tiles", "12")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_shards(folder: Path, n: int, proc: subprocess.Popen, timeout: float = 600) -> list[Path]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        shards = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        if len(shards) >= n:
            return shards
        assert proc.poll() is None, f"the run ended before {n} shards were written: {proc.communicate()}"
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} shards in {folder} after {timeout} s")


def test_sigkill_of_an_encoder_worker_loses_and_doubles_nothing(
        ray_address: str, reference: tuple[Path, list[str]], model: Any) -> None:
    root, paths = reference
    proc = _start(root, "killw", paths, ray_address)
    try:
        done = _wait_for_shards(root / "killw" / "shards", 2, proc)
        victims = _encoder_pids()
        assert victims, "no encoder actor process found"
        os.kill(victims[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    total = len(list((root / "killw" / "shards").glob("*.parquet")))
    assert len(done) < total, "the worker was killed only after the last shard"
    assert_same_collection(Store(root), "loc", "killw", model)


def test_killed_driver_resumes_from_its_shards(ray_address: str, reference: tuple[Path, list[str]], model: Any) -> None:
    root, paths = reference
    folder = root / "killd" / "shards"
    proc = _start(root, "killd", paths, ray_address)
    try:
        _wait_for_shards(folder, 3, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}
    p = index_cli("--store", str(root), "killd", *paths, *_ray(ray_address, "--shard-tiles", "12"))
    reused = int(p.stdout.split(" reused")[0].rsplit(",", 1)[1].split()[0])
    assert reused >= len(kept) >= 3, p.stdout
    assert all(folder.joinpath(n).stat().st_mtime_ns == m for n, m in kept.items()), "a finished shard was redone"
    assert_same_collection(Store(root), "loc", "killd", model)
