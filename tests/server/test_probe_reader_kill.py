"""Issue 28: a SIGKILLed `tools/index.py` takes its tile-reader worker processes with it (a real process tree)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from server_testutil import PAN, REPO


def _children() -> dict[int, list[int]]:
    """ppid -> pids of every live, non-zombie process, from /proc."""
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            out.setdefault(int(fields[1]), []).append(int(d.name))
    return out


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    live = {p for kids in _children().values() for p in kids}
    return pids & live


def test_sigkilled_indexer_leaves_no_tile_readers(tmp_path: Path) -> None:
    env = {**os.environ, "HARMA_READ_WORKERS": "2"}
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "index.py"), "--store", str(tmp_path / "store"),
                             "big", str(PAN), "--tile-size", "32", "--quiet", "--runtime", "onnx"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    workers: set[int] = set()
    while len(workers) < 3:  # the forkserver and its two workers
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no tile-reader processes appeared"
        time.sleep(0.2)
        workers = _descendants(proc.pid)
    time.sleep(1.0)
    workers = _descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _alive(workers)
    for pid in left:  # clean up what this test started before failing
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} tile-reader process(es) outlived the SIGKILLed indexer"
