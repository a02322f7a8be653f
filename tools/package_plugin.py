"""Build the installable QGIS plugin zip (root folder harma_search/ with metadata.txt) and print its path."""
from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "harma_search"
SOURCE = REPO / "qgis_plugin" / PACKAGE
METADATA = REPO / "metadata.txt"
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


def plugin_version(metadata: Path = METADATA) -> str:
    """The version in metadata.txt's [general] section."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(metadata, encoding="utf-8")
    return parser["general"]["version"]


def build_zip(out_dir: Path) -> Path:
    """Write <out_dir>/harma_search-<version>.zip and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PACKAGE}-{plugin_version()}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(SOURCE.rglob("*")):
            rel = path.relative_to(SOURCE)
            if path.is_dir() or SKIP_DIRS & set(rel.parts) or path.suffix in SKIP_SUFFIXES:
                continue
            archive.write(path, f"{PACKAGE}/{rel.as_posix()}")
        archive.write(METADATA, f"{PACKAGE}/metadata.txt")
    return target


def main(argv: list[str] | None = None) -> int:
    """Parse --out and build the zip."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="folder for the zip (default: dist/)")
    args = parser.parse_args(argv)
    print(build_zip(args.out.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
