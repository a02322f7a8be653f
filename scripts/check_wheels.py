#!/usr/bin/env python3
"""Checks that the serving dependencies (pyproject's [project] dependencies, no extras) install from wheels
alone on Windows, macOS (arm64, x86_64) and Linux for Python 3.10-3.12: `pip install --dry-run --only-binary=:all:`
resolves each platform's full dependency tree without building anything. Exit 1 naming what does not resolve."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = {  # pip tries each tag given; newer macOS tags first, as wheels of newer releases need them
    "win_amd64": ["win_amd64"],
    "macos_arm64": ["macosx_14_0_arm64", "macosx_13_0_arm64", "macosx_12_0_arm64", "macosx_11_0_arm64"],
    "macos_x86_64": ["macosx_14_0_x86_64", "macosx_13_0_x86_64", "macosx_12_0_x86_64", "macosx_11_0_x86_64",
                     "macosx_10_15_x86_64", "macosx_10_9_x86_64"],
    "manylinux_x86_64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
}
PYTHONS = ("3.10", "3.11", "3.12")


def serving_requirements() -> list[str]:
    """The package's own dependencies: what `pip install harma-search` installs."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def resolve(tags: list[str], python: str, reqs: list[str]) -> tuple[bool, str]:
    """Resolve `reqs` from wheels only for one platform; (ok, versions or pip's last error line)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
               "--only-binary=:all:", "--python-version", python, "--target", str(Path(tmp) / "t"),
               "--report", str(report), *[a for t in tags for a in ("--platform", t)], *reqs]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            errors = [ln for ln in out.stderr.splitlines() if ln.startswith("ERROR") and "Ignored" not in ln]
            return False, (errors or out.stderr.splitlines() or ["pip failed"])[-1]
        got = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    keys = ("onnxruntime", "chroma-hnswlib", "rasterio", "numpy", "tokenizers")
    return True, ", ".join(f"{k} {got[k]}" for k in keys if k in got)


def main() -> int:
    reqs = serving_requirements()
    failed = 0
    for python in PYTHONS:
        for name, tags in PLATFORMS.items():
            ok, detail = resolve(tags, python, reqs)
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} python {python} {name:<17} {detail}", flush=True)
    print(f"wheels: {failed} of {len(PYTHONS) * len(PLATFORMS)} platform/Python pairs do not resolve from wheels")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
