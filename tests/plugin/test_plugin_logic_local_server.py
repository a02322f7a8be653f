"""The local server's QGIS-free logic: commands, roots, install progress, streaming with cancel, the child process."""
import sys
import time
from pathlib import Path

import pytest
from harma_search.logic import local_install, local_server
from harma_search.logic.local_install import InstallProgress, find_python, run_streaming
from harma_search.logic.local_server import LogBuffer, RestartPolicy, ServerProcess, SetupError, roots_for


def test_env_python_follows_the_platform(monkeypatch):
    monkeypatch.setattr(local_server, "is_windows", lambda: True)
    assert local_server.env_python(Path("env")) == Path("env") / "Scripts" / "python.exe"
    monkeypatch.setattr(local_server, "is_windows", lambda: False)
    assert local_server.env_python(Path("env")) == Path("env") / "bin" / "python"


def test_commands_are_argument_lists_on_loopback():
    env = Path("/p/env")
    assert local_install.create_env_command(env, "/usr/bin/python3", None) == ["/usr/bin/python3", "-m", "venv", "/p/env"]
    assert local_install.create_env_command(env, "", "/bin/uv")[:3] == ["/bin/uv", "venv", "--python"]
    assert local_install.install_command(env, "harma-search", "/bin/uv") == [
        "/bin/uv", "pip", "install", "--python", "/p/env/bin/python", "harma-search"]
    assert local_install.install_command(env, "/w/x.whl", None)[:4] == ["/p/env/bin/python", "-m", "pip", "install"]
    command = local_server.server_command(env, Path("/p/store"), 5000, ["/a", "/b"])
    assert command[1:3] == ["-m", "server"] and command[command.index("--host") + 1] == "127.0.0.1"
    assert command[-4:] == ["--allowed-root", "/a", "--allowed-root", "/b"]


def test_child_env_drops_qgis_python_and_gdal_settings(monkeypatch):
    monkeypatch.setenv("PYTHONHOME", "/qgis/python")
    monkeypatch.setenv("PROJ_LIB", "/qgis/proj")
    env = local_server.child_env("t0k")
    assert "PYTHONHOME" not in env and "PROJ_LIB" not in env
    assert env["HARMA_TOKEN"] == "t0k" and env["PYTHONUNBUFFERED"] == "1"


def test_roots_keep_outer_folders_only(tmp_path):
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    roots = roots_for([str(inner / "x.tif"), str(tmp_path / "c" / "y.tif")], [str(tmp_path / "a")])
    assert roots == (str(tmp_path / "a"), str(tmp_path / "c"))
    assert local_server.covered([str(inner / "z.tif")], roots)
    assert not local_server.covered([str(tmp_path / "d" / "z.tif")], roots)


def test_source_is_a_path_when_it_exists_else_a_name(tmp_path):
    assert local_install.normalise_source(str(tmp_path)) == str(tmp_path.resolve())
    assert local_install.normalise_source("harma-search==0.1") == "harma-search==0.1"
    assert local_install.normalise_source("  ") == "harma-search"


def test_install_progress_rises_and_ends_at_100():
    progress = InstallProgress()
    seen = []
    for line in ["Processing /w", "Collecting numpy", "  Downloading numpy.whl (7 MB)", "  Building wheel for x",
                 "Installing collected packages: numpy", "Successfully installed numpy-2"]:
        progress.update(line)
        seen.append(progress.percent)
    assert seen == sorted(seen) and seen[-1] == 100 and progress.text.startswith("Successfully")
    assert not progress.update("WARNING: something")


def test_find_python_accepts_this_one_and_refuses_a_bad_choice(tmp_path):
    assert find_python(sys.executable) == sys.executable
    assert find_python("", [str(tmp_path / "nope"), sys.executable]) == sys.executable
    with pytest.raises(SetupError, match="pick another"):
        find_python(str(tmp_path / "nope"))


def test_run_streaming_hands_lines_over_and_stops_on_cancel():
    lines = []
    code = run_streaming([sys.executable, "-c", "print('a'); print('b')"], lines.append, lambda: False)
    assert code == 0 and lines[1:] == ["a", "b"]
    started = time.monotonic()
    code = run_streaming([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(60)"],
                         lines.append, lambda: time.monotonic() - started > 1)
    assert code == -1 and time.monotonic() - started < 20


def test_server_process_reports_its_url_and_stops(tmp_path):
    script = "import time; print('HarMA Search serving on http://127.0.0.1:1234/api/v1 (x)', flush=True); time.sleep(60)"
    log = LogBuffer(tmp_path / "log.txt")
    process = ServerProcess([sys.executable, "-c", script], "tok", log, tmp_path)
    assert process.wait_ready(30) == "http://127.0.0.1:1234"
    assert local_server.pid_alive(process.pid)
    process.stop(timeout_s=5)
    assert not process.running() and not local_server.pid_alive(process.pid)
    assert "serving on" in (tmp_path / "log.txt").read_text(encoding="utf-8")


def test_server_process_that_exits_early_says_why(tmp_path):
    process = ServerProcess([sys.executable, "-c", "print('error: store in use by PID 7'); raise SystemExit(2)"],
                            "", LogBuffer(), tmp_path)
    with pytest.raises(SetupError, match="store in use"):
        process.wait_ready(30)


def test_restart_policy_allows_one_restart_per_start():
    policy = RestartPolicy()
    assert policy.should_restart() and not policy.should_restart()
    policy.reset()
    assert policy.should_restart()


def test_diagnostics_list_facts_then_the_log_tail():
    text = local_server.diagnostics_text({"QGIS": "3.22", "store": "/s"}, ["one", "two"])
    assert text.splitlines()[1:3] == ["QGIS: 3.22", "store: /s"] and text.endswith("  two")
