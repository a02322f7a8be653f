"""Shared helpers of the benchmarks: repo on sys.path, machine description, timing, tables, the JSON line."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared" / "data"
GEOTIFF_DIR = SHARED / "geotiff"
UCM_DIR = SHARED / "captions" / "ucm_captions"
RSICD_DIR = SHARED / "captions" / "rsicd"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as `python bench/<name>.py` from a checkout


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform), for the machine description."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """nproc, CPU, RAM, torch version, load average and GPU (if any) of this run."""
    import torch

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info = {"nproc": os.cpu_count(), "cpu": cpu_model(), "ram_gib": round(ram, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "loadavg": list(os.getloadavg())}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident set size in MiB of this process, or of `pid` (VmHWM from /proc)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def rss_mb(pid: int | None = None, field: str = "VmRSS") -> float:
    """Current resident set size in MiB: VmRSS, or RssAnon (private memory, without mapped file pages)."""
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc status")


def time_calls(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `repeat` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def interleaved(cases: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of each case, run round-robin so that machine-load drift hits every case alike."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return out


def median(xs: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(xs))


def percentile(xs: Sequence[float], q: float) -> float:
    """q-th percentile (0-100) by linear interpolation, as numpy does."""
    import numpy as np

    return float(np.percentile(np.asarray(xs, dtype=np.float64), q))


def table(rows: list[dict[str, Any]], cols: list[str] | None = None, title: str | None = None) -> str:
    """A plain aligned text table of dict rows (floats with 3 significant decimals)."""
    if not rows:
        return f"{title}\n(no rows)" if title else "(no rows)"
    cols = cols or list(rows[0])

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [title] if title else []
    lines.append("  ".join(c.rjust(w) for c, w in zip(cols, width)))
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, width)) for row in cells]
    return "\n".join(lines)


def emit(result: dict[str, Any]) -> None:
    """End stdout with the one JSON line scripts read."""
    sys.stdout.flush()
    print(json.dumps(result, allow_nan=False), flush=True)


def run_json(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child command and parse the JSON object on the last line of its stdout."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def quiet_logs() -> None:
    """Silence library warnings that would clutter the tables (the untrained-heads warning is reported)."""
    import logging
    import warnings

    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
