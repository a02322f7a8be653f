"""Just enough of the OGC GeoPackage format, over sqlite3, for a transactional tile table QGIS can open."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence

import numpy as np
import shapely
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

APPLICATION_ID = 0x47504B47  # "GPKG"
USER_VERSION = 10300  # GeoPackage 1.3: GDAL < 3.7 (QGIS LTRs) warns on 1.4
_FLAGS_LE_XY_ENVELOPE = 0b00000011  # little-endian, envelope [minx, maxx, miny, maxy]
_EMPTY_FLAG = 0b00010000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE IF NOT EXISTS gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
  description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE,
  srs_id INTEGER, CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
"""


def init_geopackage(conn: sqlite3.Connection) -> None:
    """Stamp a fresh sqlite database as a GeoPackage with the mandatory tables and CRS rows."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {USER_VERSION}")
    conn.executescript(_SCHEMA)
    rows = [
        ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian coordinate reference system"),
        ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
        ("WGS 84 geodetic", 4326, "EPSG", 4326, CRS.from_epsg(4326).to_wkt(), "longitude/latitude on WGS 84"),
    ]
    conn.executemany("INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", rows)


def register_features(conn: sqlite3.Connection, table: str, column: str, geometry_type: str,
                      srs_id: int, description: str = "") -> None:
    """Declare `table` a feature table whose `column` holds geometries of one type."""
    conn.execute("INSERT OR REPLACE INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) "
                 "VALUES (?, 'features', ?, ?, ?)", (table, table, description, srs_id))
    conn.execute("INSERT OR REPLACE INTO gpkg_geometry_columns VALUES (?, ?, ?, ?, 0, 0)",
                 (table, column, geometry_type, srs_id))


def register_attributes(conn: sqlite3.Connection, table: str, description: str = "") -> None:
    """Declare `table` a plain attribute table, so GIS software lists it."""
    conn.execute("INSERT OR REPLACE INTO gpkg_contents (table_name, data_type, identifier, description) "
                 "VALUES (?, 'attributes', ?, ?)", (table, table, description))


def set_extent(conn: sqlite3.Connection, table: str, bounds: tuple[float, float, float, float] | None) -> None:
    """Record a feature table's extent (used by QGIS to zoom to the layer) and touch last_change."""
    values = bounds if bounds else (None, None, None, None)
    conn.execute("UPDATE gpkg_contents SET min_x=?, min_y=?, max_x=?, max_y=?, "
                 "last_change=strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE table_name=?", (*values, table))


def encode_geometry(geom: BaseGeometry | None, srs_id: int) -> bytes | None:
    """GeoPackage binary: 'GP' header with an XY envelope, then little-endian ISO WKB."""
    if geom is None:
        return None
    if geom.is_empty:
        return b"GP\x00" + bytes([_FLAGS_LE_XY_ENVELOPE & 0b1 | _EMPTY_FLAG]) + struct.pack("<i", srs_id) + \
            shapely.to_wkb(geom, byte_order=1)
    minx, miny, maxx, maxy = geom.bounds
    header = b"GP\x00" + bytes([_FLAGS_LE_XY_ENVELOPE]) + struct.pack("<i4d", srs_id, minx, maxx, miny, maxy)
    return header + shapely.to_wkb(geom, byte_order=1)


def _wkb_start(blob: bytes) -> int:
    """Offset of the WKB after a GeoPackage blob's header (its length depends on the envelope kind)."""
    if blob[:2] != b"GP":
        raise ValueError("not a GeoPackage geometry blob (missing 'GP' magic)")
    return 8 + {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(blob[3] >> 1) & 0b111]


def decode_geometry(blob: bytes | None) -> BaseGeometry | None:
    """Inverse of encode_geometry for any envelope kind."""
    if blob is None:
        return None
    return shapely.from_wkb(blob[_wkb_start(blob):])


def decode_geometries(blobs: Sequence[bytes | None]) -> np.ndarray:
    """decode_geometry over many blobs with one vectorised shapely call: an object array, None stays None."""
    wkbs = np.empty(len(blobs), dtype=object)
    wkbs[:] = [None if b is None else b[_wkb_start(b):] for b in blobs]
    return shapely.from_wkb(wkbs)
