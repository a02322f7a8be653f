"""Save a PNG of the QGIS plugin's dock beside a results layer rendered in an offscreen map (QGIS's Python).

Usage: .venv-qgis/bin/python tools/plugin_screenshot.py --server http://127.0.0.1:8765 --collection NAME \
    --query "a river" [--query "forest" ...] OUT.png
The server must be running and the collection indexed (dock, Processing or tools/index.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start a headless QGIS and write the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--server", default="http://127.0.0.1:8765", help="server URL")
    parser.add_argument("--collection", required=True, help="collection to search")
    parser.add_argument("--query", action="append", help="text query (repeat for several searches; the last "
                        "one is shown, the others are in the dock's result history)")
    parser.add_argument("--k", type=int, default=8, help="number of results")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO / "qgis_plugin"))
    from harma_search.logic.errors import PluginError
    from harma_search.snapshot import search_screenshot
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    try:
        print(search_screenshot(args.server, args.collection, args.query or ["beach"], args.k, args.out))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
