"""The plugin's own server, without QGIS: command line, free port, child process, restart policy, diagnostics.

Everything here is the standard library only, so it runs (and is tested) outside QGIS. Commands are argument
lists (never a shell); the server binds 127.0.0.1 and gets its token through HARMA_TOKEN, not its command line.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import PluginError

LOOPBACK = "127.0.0.1"
READY_MARK = "serving on http://"
# QGIS's own Python, GDAL and PROJ settings would point the environment's Python and rasterio at the wrong files.
DROPPED_ENV = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "VIRTUAL_ENV", "CONDA_PREFIX",
               "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA", "QGIS_PREFIX_PATH")
NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # Windows: no console window pops up per child


class SetupError(PluginError):
    """Setting up or starting the local server failed; the message names the fix."""


def is_windows() -> bool:
    """True on Windows (venv layout and process handling differ there)."""
    return os.name == "nt"


def env_python(env_dir: Path) -> Path:
    """The Python of a virtual environment: Scripts\\python.exe on Windows, bin/python elsewhere."""
    return env_dir / "Scripts" / "python.exe" if is_windows() else env_dir / "bin" / "python"


def child_env(token: str = "") -> dict[str, str]:
    """The environment for child processes: QGIS's Python/GDAL/PROJ variables removed, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in DROPPED_ENV}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1")
    if token:
        env["HARMA_TOKEN"] = token
    return env


def server_command(env_dir: Path, store: Path, port: int, roots: Iterable[str]) -> list[str]:
    """`python -m server` on loopback at port with store and one --allowed-root per root."""
    command = [str(env_python(env_dir)), "-m", "server", "--store", str(store), "--host", LOOPBACK, "--port", str(port)]
    for root in roots:
        command += ["--allowed-root", root]
    return command


def free_port() -> int:
    """A port that is free on the loopback interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def new_token() -> str:
    """A random token for the server (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def roots_for(files: Iterable[str], roots: Iterable[str] = ()) -> tuple[str, ...]:
    """roots plus the folders of files, without folders that lie inside another one (sorted)."""
    folders = sorted({str(Path(r).resolve()) for r in roots} | {str(Path(f).resolve().parent) for f in files})
    kept: list[str] = []
    for folder in folders:
        if not any(Path(folder).is_relative_to(root) for root in kept):
            kept.append(folder)
    return tuple(kept)


def covered(paths: Iterable[str], roots: Iterable[str]) -> bool:
    """True when every path lies under one of roots."""
    roots = [Path(r) for r in roots]
    return all(any(Path(p).resolve().is_relative_to(r) for r in roots) for p in paths)


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """terminate(), then kill() after timeout_s (on Windows terminate already ends it through its handle)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


class LogBuffer:
    """The last lines of a child's output, appended from a reader thread, also written to a log file."""

    def __init__(self, path: Path | None = None, size: int = 2000) -> None:
        self.lines: deque[str] = deque(maxlen=size)
        self.path = path
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        """Keep line (and append it to the file)."""
        with self._lock:
            self.lines.append(line)
            if self.path is not None:
                with open(self.path, "a", encoding="utf-8") as log:
                    log.write(line + "\n")

    def tail(self, count: int = 40) -> list[str]:
        """The last count lines."""
        with self._lock:
            return list(self.lines)[-count:]


class ServerProcess:
    """One `python -m server` child: output drained into a LogBuffer; ready once it printed its URL."""

    def __init__(self, command: list[str], token: str, log: LogBuffer, cwd: Path) -> None:
        self.command = command
        self.log = log
        self.url = ""
        self.stopping = False
        log.add(f"$ {' '.join(command)}")
        try:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         encoding="utf-8", errors="replace", cwd=str(cwd), env=child_env(token),
                                         stdin=subprocess.DEVNULL, creationflags=NO_WINDOW)
        except OSError as exc:
            raise SetupError(f"Could not start {command[0]}: {exc}; run 'Set up local server' again") from exc
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip()
            self.log.add(line)
            if not self.url and READY_MARK in line:
                self.url = line.split("serving on ", 1)[1].split()[0].removesuffix("/api/v1")

    def running(self) -> bool:
        """True while the process lives."""
        return self.proc.poll() is None

    def exit_code(self) -> int | None:
        """Its exit code, None while it runs."""
        return self.proc.poll()

    def wait_ready(self, timeout_s: float, cancelled: Callable[[], bool] = lambda: False) -> str:
        """Block until the server printed its URL; raises SetupError when it exits, times out or is cancelled."""
        deadline = time.monotonic() + timeout_s
        while not self.url:
            if not self.running():
                self.reader.join(timeout=5)  # its last lines say why
                raise SetupError(f"The server exited with code {self.exit_code()}: "
                                 + " | ".join(self.log.tail(5)))
            if cancelled() or time.monotonic() > deadline:
                self.stop()
                raise SetupError("The server did not start in time" if not cancelled() else "Cancelled")
            time.sleep(0.1)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it (terminate, then kill after timeout_s)."""
        self.stopping = True
        stop_process(self.proc, timeout_s)


@dataclass
class RestartPolicy:
    """Restart a server that died by itself once per start; a second death is reported, not retried."""

    restarts_left: int = 1

    def reset(self) -> None:
        """A start the analyst asked for: one automatic restart is allowed again."""
        self.restarts_left = 1

    def should_restart(self) -> bool:
        """Use up the restart if one is left."""
        if self.restarts_left > 0:
            self.restarts_left -= 1
            return True
        return False


def pid_alive(pid: int) -> bool:
    """True when a process with pid exists (POSIX: signal 0; Windows: OpenProcess and its exit code)."""
    if is_windows():
        try:
            import ctypes

            handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
            if not handle:
                return False
            code = ctypes.c_ulong()
            ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            ctypes.windll.kernel32.CloseHandle(handle)
            return code.value == 259  # STILL_ACTIVE
        except (OSError, AttributeError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def diagnostics_text(facts: dict[str, object], log_lines: Iterable[str]) -> str:
    """A plain-text report to paste into an issue: one 'key: value' line per fact, then the last log lines."""
    lines = ["HarMA Search local server diagnostics"]
    lines += [f"{key}: {value}" for key, value in facts.items()]
    lines += ["", "last log lines:"]
    lines += [f"  {line}" for line in log_lines]
    return "\n".join(lines)
