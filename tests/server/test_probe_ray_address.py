"""Issue 28: `tools/index.py --engine ray --ray-address HOST:PORT` with nothing there fails in seconds with one
line and exit 2, and leaves no empty collection behind. No Ray process is started (the address is checked first)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from server_testutil import SMALL
from shards_testutil import index_cli

from server.store.store import Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_bad_ray_address_fails_fast_and_creates_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for address in (f"127.0.0.1:{_free_port()}", "no-port-here"):
        t0 = time.monotonic()
        p = index_cli("--store", str(store), "rayed", str(SMALL), "--engine", "ray", "--ray-address", address,
                      check=False)
        took = time.monotonic() - t0
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-2000:]
        assert address in lines[0] and took < 60, (took, lines)
        assert "rayed" not in Store(store).names()


def test_run_sharded_checks_the_cluster_before_creating_the_collection(tmp_path: Path) -> None:
    import pytest

    from server.errors import ServerError
    from server.indexing.shard_run import run_sharded

    class Model:
        identity, name, dim = "m", "m", 4

    with pytest.raises(ServerError, match="nothing answers"):
        run_sharded(str(tmp_path / "store"), "rayed", [str(SMALL)], Model(), {}, engine="ray",
                    ray_address=f"127.0.0.1:{_free_port()}", quiet=True)
    assert "rayed" not in Store(tmp_path / "store").names()
