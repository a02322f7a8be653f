"""A local Ray started by an indexing run does not outlive the run, and a Ray failure mid-run ends in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shards_testutil import ROOT

RASTER = "landsat8_grenada_rgb.tif"


def _session_pids(marker: str) -> list[int]:
    """Processes whose command line names `marker` (the run's private Ray temp folder)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def _start_local_run(tmp_path: Path, shared_data: Path) -> tuple[subprocess.Popen, str]:
    """tools/index.py --engine ray without an address (it starts its own Ray), with Ray's files under tmp_path."""
    ray_tmp = tempfile.mkdtemp(prefix="hr-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "HARMA_READ_WORKERS": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "index.py"), "--store", str(tmp_path / "s"), "c",
                             str(shared_data / "geotiff" / RASTER), "--engine", "ray", "--views", "8", "--quiet",
                             "--batch-size", "4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not any("raylet" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                  for p in _session_pids(ray_tmp) if Path(f"/proc/{p}").exists()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run's local Ray did not start"
        time.sleep(0.5)
    time.sleep(5)  # let the pipeline get going
    return proc, ray_tmp


def test_a_killed_driver_leaves_no_local_ray_behind(tmp_path: Path, shared_data: Path) -> None:
    proc, marker = _start_local_run(tmp_path, shared_data)
    assert proc.poll() is None, "the run ended before it could be killed; give it more tiles"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 45
    while _session_pids(marker) and time.monotonic() < deadline:
        time.sleep(1)
    assert _session_pids(marker) == [], "Ray processes of the killed run are still alive"


def test_a_killed_raylet_ends_the_run_with_one_clear_line(tmp_path: Path, shared_data: Path) -> None:
    proc, marker = _start_local_run(tmp_path, shared_data)
    raylets = [p for p in _session_pids(marker) if "raylet/raylet" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
               or Path(f"/proc/{p}/comm").read_text().strip() == "raylet"]
    assert raylets, "no raylet found"
    os.kill(raylets[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-3000:]
    # ours is one line; Ray's own threads (C++ core worker, Ray Data's executor) may still log around it
    ours = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(ours) == 1 and "run the same command again" in ours[0], err[-3000:]
    deadline = time.monotonic() + 45
    while _session_pids(marker) and time.monotonic() < deadline:
        time.sleep(1)
    assert _session_pids(marker) == []
