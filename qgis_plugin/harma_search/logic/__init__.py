"""Plugin logic with no QGIS or Qt import, so it can be tested with plain pytest."""
