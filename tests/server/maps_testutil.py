"""Helpers of the heatmap and map tests: run a tool, start a live server on a store, fetch raw bytes."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from server_testutil import REPO


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run tools/<name>.py with arguments; its completed process (text output)."""
    return subprocess.run([sys.executable, str(REPO / "tools" / f"{name}.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)


def ok(proc: subprocess.CompletedProcess) -> str:
    """stdout of a tool that must have succeeded."""
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


@contextmanager
def live_server(store: Path, root: Path) -> Iterator[str]:
    """A live `python -m server` on `store` reading rasters under `root`; yields its API base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "server", "--store", str(store), "--host", "127.0.0.1",
                             "--port", "0", "--allowed-root", str(root)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base, seen = None, []
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            m = re.search(r"serving on (http://127\.0\.0\.1:\d+/api/v1)", line)
            if m:
                base = m.group(1)
                break
        assert base, "server did not start:\n" + "".join(seen)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def fetch(base: str, path: str) -> tuple[int, bytes, str]:
    """(status, body, content type) of a GET of `path` (a URL path starting with /api/v1) on the server."""
    host = base[: base.index("/api/v1")]
    try:
        with urllib.request.urlopen(host + path, timeout=120) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")
