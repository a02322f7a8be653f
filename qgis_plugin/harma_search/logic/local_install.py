"""Setting up the private server environment without QGIS: find a Python, create the env, pip/uv install.

Commands are argument lists run without a shell; output is streamed line by line so a caller can show
progress, keep a log and cancel (the running command is stopped at once).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .local_server import NO_WINDOW, SetupError, child_env, env_python, is_windows, stop_process

DEFAULT_SOURCE = "harma-search"
MIN_PYTHON = (3, 10)
INSTALL_TIMEOUT_S = 3600


def python_version(python: str) -> tuple[int, int] | None:
    """(major, minor) of the Python at python, or None when it does not run."""
    try:
        done = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                              text=True, timeout=30, env=child_env(), creationflags=NO_WINDOW)
        major, minor = done.stdout.split()[:2]
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def python_candidates() -> list[str]:
    """Pythons worth trying, best first: QGIS's own interpreter, then versioned and plain names on PATH."""
    prefix = Path(sys.base_prefix)
    own = [prefix / "python3.exe", prefix / "python.exe"] if is_windows() else [prefix / "bin" / "python3"]
    if Path(sys.executable).name.lower().startswith("python"):  # in QGIS Desktop it is the qgis binary
        own.insert(0, Path(sys.executable))
    found = [str(p) for p in own if p.is_file()]
    for name in ("python3.12", "python3.11", "python3.10", "python3.13", "python3", "python"):
        path = shutil.which(name)
        if path:
            found.append(path)
    return list(dict.fromkeys(found))


def find_python(chosen: str = "", candidates: Iterable[str] | None = None) -> str:
    """chosen when given and recent enough, else the first candidate that is Python >= 3.10; raises SetupError."""
    wanted = ".".join(map(str, MIN_PYTHON))
    if chosen:
        version = python_version(chosen)
        if version is None or version < MIN_PYTHON:
            raise SetupError(f"{chosen} is not a Python >= {wanted} ({version or 'it does not run'}): pick another")
        return chosen
    for path in python_candidates() if candidates is None else candidates:
        version = python_version(path)
        if version is not None and version >= MIN_PYTHON:
            return path
    raise SetupError(f"No Python >= {wanted} found: install one (python.org) or uv, or pick its python "
                     "executable under 'Python to use'")


def normalise_source(source: str) -> str:
    """A package source for pip: an existing wheel/folder as an absolute path, else the text (a PyPI name)."""
    text = source.strip() or DEFAULT_SOURCE
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def create_env_command(env_dir: Path, python: str, uv: str | None) -> list[str]:
    """The command that creates the private environment (uv when available, else python -m venv)."""
    if uv:
        return [uv, "venv", "--python", python or ">=3.10", str(env_dir)]
    return [python, "-m", "venv", str(env_dir)]


def install_command(env_dir: Path, source: str, uv: str | None) -> list[str]:
    """The command that installs the serving package from source into the environment."""
    if uv:
        return [uv, "pip", "install", "--python", str(env_python(env_dir)), source]
    return [str(env_python(env_dir)), "-m", "pip", "install", "--progress-bar", "off",
            "--disable-pip-version-check", source]


def check_command(env_dir: Path) -> list[str]:
    """A command that fails unless the environment can run the server; it prints whether torch got loaded."""
    return [str(env_python(env_dir)), "-c", "import sys, server.app, harma_core.serving; "
            "print('server imports ok; python', sys.version.split()[0], '; torch loaded:', 'torch' in sys.modules)"]


@dataclass
class InstallProgress:
    """Turns pip/uv output lines into a rising percentage (capped per phase) and a short text."""

    percent: float = 0.0
    text: str = ""

    STEPS = ((r"(Collecting|Processing|Downloading|Using cached|Obtaining) ", 1.5, 70.0),
             (r"(Resolved|Prepared) \d+ package", 30.0, 80.0), (r"Building wheel", 5.0, 80.0),
             (r"Installing collected packages", 10.0, 90.0),
             (r"(Successfully installed|Installed \d+ package)", 100.0, 100.0))

    def update(self, line: str) -> bool:
        """Read one output line; True when it moved the progress."""
        text = line.strip()
        for pattern, step, cap in self.STEPS:
            if re.match(pattern, text):
                self.percent = max(self.percent, min(cap, self.percent + step))
                self.text = text[:100]
                return True
        return False


def run_streaming(command: list[str], on_line: Callable[[str], None], cancelled: Callable[[], bool],
                  timeout_s: float = INSTALL_TIMEOUT_S) -> int:
    """Run command, handing each output line to on_line; stop it when cancelled() turns true (returns -1)."""
    on_line("$ " + " ".join(command))
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8", errors="replace", env=child_env(), stdin=subprocess.DEVNULL,
                                creationflags=NO_WINDOW)
    except OSError as exc:
        raise SetupError(f"Could not run {command[0]}: {exc}") from exc
    lines: deque[str] = deque()
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None or reader.is_alive() or lines:
        while lines:
            on_line(lines.popleft())
        if proc.poll() is None and (cancelled() or time.monotonic() > deadline):
            stop_process(proc)
            return -1
        time.sleep(0.1)
    return int(proc.returncode)


def run_setup(env_dir: Path, source: str, python: str, on_line: Callable[[str], None],
              on_progress: Callable[[float, str], None], cancelled: Callable[[], bool]) -> str:
    """Create env_dir (if needed) and install source into it; returns the environment's Python.

    Raises SetupError with the fix when a step fails; a cancel stops the running step and raises too.
    """
    uv = shutil.which("uv")
    progress = InstallProgress()

    def step(command: list[str], what: str, fix: str) -> None:
        def line(text: str) -> None:
            on_line(text)
            if progress.update(text):
                on_progress(10 + 0.85 * progress.percent, progress.text)

        code = run_streaming(command, line, cancelled)
        if cancelled():
            raise SetupError(f"Cancelled while {what}")
        if code != 0:
            raise SetupError(f"{what[0].upper()}{what[1:]} failed (exit code {code}): {fix}; details under Show log")

    if not env_python(env_dir).is_file():
        chosen = python if uv and not python else find_python(python)
        on_progress(2, f"Creating the environment in {env_dir}" + (" with uv" if uv else f" with {chosen}"))
        try:
            step(create_env_command(env_dir, chosen, uv), "creating the environment",
                 "pick another Python under 'Python to use'")
        except SetupError:
            shutil.rmtree(env_dir, ignore_errors=True)  # a half-made environment would pass for a set-up one
            raise
    target = normalise_source(source)
    on_progress(10, f"Installing {target}")
    step(install_command(env_dir, target, uv), f"installing {target}",
         "check the package source (a PyPI name, a wheel or a folder) and the network or package index")
    on_progress(96, "Checking the installation")
    step(check_command(env_dir), "checking the installed server", "install the serving package again")
    on_progress(100, "Installed")
    return str(env_python(env_dir))
