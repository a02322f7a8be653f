"""harma_core.calibration: the isotonic fit, the file round trip, and the shipped calibration of harma-lite."""

from __future__ import annotations

import numpy as np
import pytest

from harma_core.calibration import CALIBRATION_FILE, Calibration, CalibrationError, Curve, isotonic
from harma_core.querybank import QueryBank
from harma_core.serving import SHIPPED_DIR


def test_isotonic_is_monotone_and_matches_block_means():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    kx, ky = isotonic(x, y)
    assert np.all(np.diff(ky) >= 0) and np.all(np.diff(kx) > 0)
    assert ky[0] == 0.0 and ky[1] == pytest.approx(0.5) and ky[-1] == 1.0  # (1, 0) pooled into 0.5


def test_round_trip_and_refusal_of_another_model(tmp_path):
    cal = Calibration("m:1", "abc", {k: Curve((0.0, 1.0), (0.1, 0.9)) for k in ("keyword", "sentence")})
    cal.save(tmp_path)
    back = Calibration.find(tmp_path, "m:1", "abc")
    assert back is not None and back.probability(np.array([0.5]), keyword=True)[0] == pytest.approx(0.5)
    with pytest.raises(CalibrationError, match="tools/calibrate.py"):
        Calibration.find(tmp_path, "m:2", "abc")
    (tmp_path / CALIBRATION_FILE).write_text("{}")
    with pytest.raises(CalibrationError):
        Calibration.read(tmp_path)


def test_shipped_calibration_belongs_to_the_shipped_bank():
    folder = SHIPPED_DIR / "harma-lite"
    bank = QueryBank.read(folder)
    cal = Calibration.find(folder, bank.identity, bank.digest)
    assert cal is not None and cal.report["split"] == "val"
    for curve in cal.curves.values():
        assert np.all(np.diff(curve.y) >= 0) and 0 <= curve.y[0] <= curve.y[-1] <= 1
