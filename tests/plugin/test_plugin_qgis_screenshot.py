"""The screenshot tool renders the docks at 1366x768 after three real searches beside the map zoomed to the best
hit of the last one (issue 27: one result shown, the others hidden in the history)."""
import subprocess
import sys

from harma_search.logic.styles import RAMP
from harma_search.snapshot import DOCK_WIDTH
from plugin_testing import COLLECTION, REPO
from qgis.PyQt.QtGui import QColor, QImage


def test_screenshot_tool_shows_the_dock_and_the_best_hit_at_laptop_size(indexed, live_server, tmp_path):
    out = tmp_path / "shot.png"
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "plugin_screenshot.py"), "--server", live_server,
         "--collection", COLLECTION, "--query", "beach", "--query", "forest", "--query", "ocean", "--k", "6",
         str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(str(out))
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1366, 768)
    assert out.stat().st_size < 3_000_000
    dock_colors = {image.pixel(x, y) for x in range(0, DOCK_WIDTH, 7) for y in range(0, image.height(), 7)}
    assert len(dock_colors) > 20  # text, buttons and the result list were painted
    # zoomed to the hit: its outline, in the colour of a strong match (the ramp's darkest, #7a0040),
    # is drawn in the middle third of the map, and imagery (not the white background) fills much of the map
    # around it. (Matching "orange to red" instead passed only while lower-ranked hits lay in the middle.)
    best = QColor(RAMP[-1])
    w, h = image.width() - DOCK_WIDTH, image.height()
    strong = white = samples = 0
    for x in range(DOCK_WIDTH, image.width(), 3):
        for y in range(0, h, 3):
            color = image.pixelColor(x, y)
            samples += 1
            white += color.red() > 250 and color.green() > 250 and color.blue() > 250
            middle = DOCK_WIDTH + w / 3 <= x <= DOCK_WIDTH + 2 * w / 3 and h / 3 <= y <= 2 * h / 3
            near = max(abs(color.red() - best.red()), abs(color.green() - best.green()),
                       abs(color.blue() - best.blue())) <= 24
            strong += middle and near
    assert strong > 50, strong
    assert samples - white > samples * 0.25, (white, samples)  # the hit may lie at a raster corner
