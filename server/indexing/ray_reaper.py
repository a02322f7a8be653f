"""Stops the local Ray that an indexing run started when that run dies without stopping it (SIGKILL, OOM).

`ray.init()` without an address starts a private cluster (GCS, raylet, agents) for the driver. A killed driver
never calls `ray.shutdown()`, and its agents then live on for minutes. `watch(session)` starts a small detached
process that waits for the driver to end and then ends every process of that Ray session (found by the
session's folder, which each of them carries on its command line). Run as `python -m server.indexing.ray_reaper
DRIVER_PID SESSION_DIR`.
"""

from __future__ import annotations

import subprocess
import sys
import time

POLL_S = 0.5
GRACE_S = 3.0  # after the driver: time for Ray's own shutdown before the leftovers are ended


def session_processes(session_dir: str) -> list:
    """psutil processes whose command line names the session folder (the cluster's own processes)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(session_dir in arg for arg in (p.info["cmdline"] or [])):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def reap(driver_pid: int, session_dir: str) -> int:
    """Wait for the driver to end, then terminate (and if need be kill) what is left of its Ray session."""
    import psutil

    while psutil.pid_exists(driver_pid):
        time.sleep(POLL_S)
    time.sleep(GRACE_S)
    left = session_processes(session_dir)
    for p in left:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(left, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    return len(left)


def watch(session_dir: str, driver_pid: int) -> subprocess.Popen:
    """Start the reaper for a local Ray session, detached from the driver's process group."""
    kwargs: dict = {"start_new_session": True} if sys.platform != "win32" else {
        "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}  # type: ignore[attr-defined]
    return subprocess.Popen([sys.executable, "-m", "server.indexing.ray_reaper", str(driver_pid), session_dir],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)


if __name__ == "__main__":
    raise SystemExit(0 if reap(int(sys.argv[1]), sys.argv[2]) >= 0 else 1)
