"""The screenshot tool renders the dock and a styled results layer offscreen into a PNG."""
import subprocess
import sys

from harma_search.logic.styles import RAMP
from plugin_testing import COLLECTION, REPO
from qgis.PyQt.QtGui import QImage


def test_screenshot_tool_shows_dock_and_scored_footprints(indexed, live_server, tmp_path):
    out = tmp_path / "shot.png"
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "plugin_screenshot.py"), "--server", live_server,
         "--collection", COLLECTION, "--query", "a town by the sea", "--k", "6", str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(str(out))
    image = QImage(str(out))
    assert image.width() > 1000 and image.height() >= 800
    assert out.stat().st_size < 2_000_000
    dock_colors = {image.pixel(x, y) for x in range(0, 440, 7) for y in range(0, image.height(), 7)}
    assert len(dock_colors) > 20  # text, buttons and the result list were painted
    # the map half shows the graduated fill: pixels of the score ramp blended over the raster
    reddish = 0
    samples = 0
    for x in range(448, image.width(), 5):
        for y in range(0, image.height(), 5):
            color = image.pixelColor(x, y)
            samples += 1
            if color.red() > color.green() + 40 and color.red() > color.blue() + 40:
                reddish += 1
    assert reddish > samples * 0.02, (reddish, samples, RAMP)
