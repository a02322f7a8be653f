"""Helpers of the fault-injection tests: real mounts (tmpfs, read-only bind), a live HTTP app, job polling."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_testutil import call
from werkzeug.serving import make_server


def _can_mount() -> str | None:
    """None when this process may mount filesystems, else why not."""
    if os.name != "posix" or os.geteuid() != 0:
        return "mount-based fault tests need root (CI runs as root)"
    if not shutil.which("mount"):
        return "no mount command"
    return None


requires_mounts = pytest.mark.skipif(_can_mount() is not None, reason=str(_can_mount()))


def _run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at path for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _run("umount", "-l", str(path))


@contextlib.contextmanager
def read_only_view(src: Path, dst: Path) -> Iterator[Path]:
    """src bind-mounted read-only at dst."""
    dst.mkdir(parents=True, exist_ok=True)
    _run("mount", "--bind", str(src), str(dst))
    try:
        _run("mount", "-o", "remount,ro,bind", str(dst))
        yield dst
    finally:
        _run("umount", "-l", str(dst))


def fill(folder: Path, keep: int = 0, name: str = "filler.bin") -> Path:
    """Write a file taking all free space of folder's filesystem but about `keep` bytes."""
    path = folder / name
    chunk = b"\xff" * (1 << 16)
    with open(path, "ab") as f:
        while True:
            free = shutil.disk_usage(folder).free
            if free <= keep:
                break
            try:
                f.write(chunk[:max(1, min(len(chunk), free - keep))])
                f.flush()
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    return path




@contextlib.contextmanager
def live_app(store: Path, model: Any, **config: Any) -> Iterator[str]:
    """The real app served over HTTP on a free loopback port, in this process (sharing the model)."""
    from server.app import create_app

    cfg = {"STORE": str(store), "LOADED_MODEL": model, "BATCH_SIZE": 8, **config}
    app = create_app(cfg)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/api/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
        services = app.extensions["harma"]
        close = getattr(services, "close", None)
        close() if close else services.jobs.shutdown()


def wait_job(base: str, job_id: str, timeout: float = 600) -> dict[str, Any]:
    """Poll a job until it finishes."""
    deadline = time.monotonic() + timeout
    while True:
        status, job = call(base, "GET", f"/jobs/{job_id}")
        assert status == 200, job
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout} s"
        time.sleep(0.1)
