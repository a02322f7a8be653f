"""The plugin's import boundaries: logic modules import no QGIS/Qt; nothing imports torch or runs a shell; only
the local-server modules (which make an environment and run `python -m server` as a child) start processes."""
import ast
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "qgis_plugin" / "harma_search"
STDLIB_AND_OWN = {"__future__", "collections", "dataclasses", "enum", "json", "math", "pathlib", "time",
                  "typing", "urllib", "traceback", "contextlib", "uuid", "secrets", "re", "threading", "shutil",
                  "sys", "platform", "atexit", "socket"}
# process management lives here and only here: venv + pip, the server child process, its liveness on Windows
PROCESS_MODULES = {"local_install.py", "local_server.py"}
PROCESS_ROOTS = {"subprocess", "os", "ctypes"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_logic_modules_import_only_the_standard_library():
    modules = sorted((PLUGIN / "logic").glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        allowed = STDLIB_AND_OWN | (PROCESS_ROOTS if path.name in PROCESS_MODULES else set())
        assert imported_roots(path) <= allowed, (path.name, imported_roots(path) - allowed)


def test_plugin_imports_only_qgis_qt_and_the_standard_library():
    files = sorted(PLUGIN.rglob("*.py"))
    assert len(files) >= 15
    for path in files:
        allowed = STDLIB_AND_OWN | {"qgis"} | (PROCESS_ROOTS if path.name in PROCESS_MODULES else set())
        assert imported_roots(path) <= allowed, (path.name, imported_roots(path) - allowed)


def test_no_shell_eval_or_pickle_anywhere_in_the_plugin():
    for path in PLUGIN.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec"), path.name
            if isinstance(node, ast.keyword) and node.arg == "shell":
                raise AssertionError(f"shell= in {path.name}")
        assert "pickle" not in imported_roots(path), path.name
        if path.name not in PROCESS_MODULES:
            assert PROCESS_ROOTS.isdisjoint(imported_roots(path)), path.name
