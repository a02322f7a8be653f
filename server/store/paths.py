"""User-given paths: the one place that checks them against the allowed roots (symlinks resolved, no traversal,
no GDAL virtual paths, no VRT reaching outside), and folder expansion.

Every endpoint and tool that opens a file or folder a user named goes through here: indexing, tile previews,
POST /train (raster, labels, data, init), POST /model and the command-line tools.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

from server.errors import InvalidRequest, NotFound, PathNotAllowed

RASTER_SUFFIXES = (".tif", ".tiff")
# drivers that read the one file a user named (plus its side-cars); VRT only while its sources stay inside
PLAIN_DRIVERS = frozenset({"GTiff", "COG", "PNG", "JPEG", "JP2OpenJPEG", "HFA", "ENVI", "EHdr", "BMP", "GIF",
                           "NITF", "AAIGrid", "VRT"})
_XML_HEADS = (b"<VRTDataset", b"<OGRVRTDataSource", b"<GDAL_WMS", b"<WMS_Capabilities", b"<GDAL_WCS")
_MAX_DEPTH = 8  # nested VRTs followed


def is_virtual(path: str) -> bool:
    """True for GDAL virtual file systems (/vsicurl/, /vsizip/, ...), URLs and driver connection strings."""
    s = str(path).strip()
    return s.lower().startswith("/vsi") or "://" in s or s.upper().startswith(("VRT:", "GTI:", "GDAL_WMS"))


def refuse_virtual(path: str, what: str = "path") -> None:
    """Refuse a GDAL virtual path or URL: only plain files are meant."""
    if is_virtual(path):
        raise InvalidRequest(f"{what} {path!r} is a GDAL virtual path or URL (/vsi..., scheme://); give a plain "
                             "file path on this machine")


def is_under(real: Path, roots: Sequence[Path]) -> bool:
    """True when a resolved path is one of roots or lies inside one."""
    return any(real == root or real.is_relative_to(root) for root in roots)


def _allowed_text(roots: Sequence[Path]) -> str:
    return ", ".join(str(r) for r in roots) or "none configured"


def resolve_allowed(path: str, roots: Sequence[Path], what: str = "raster path") -> Path:
    """Resolve a user-given path (symlinks and '..' included) and require it to lie under an allowed root."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise InvalidRequest(f"{what} {path!r} is not a usable path string")
    refuse_virtual(path, what)
    p = Path(path).expanduser()
    if not p.is_absolute():
        raise InvalidRequest(f"{what} {path!r} is relative; give an absolute path")
    real = p.resolve()
    if not is_under(real, roots):
        raise PathNotAllowed(f"{what} {path} is outside the allowed roots ({_allowed_text(roots)}); start the server with "
                             "--allowed-root for its folder")
    if not real.exists():
        raise NotFound(f"{what} {path} does not exist")
    return real


def resolve_allowed_or(path: str, roots: Sequence[Path], refusal: str) -> Path:
    """resolve_allowed, but every refusal (virtual, relative, outside, missing) is the same 403 with `refusal`, so
    the answer never tells whether a file outside the roots exists."""
    try:
        return resolve_allowed(path, roots)
    except (InvalidRequest, PathNotAllowed, NotFound):
        raise PathNotAllowed(refusal) from None


def _xml_head(path: Path) -> bytes:
    """The first bytes of a file, without leading whitespace ('' when unreadable)."""
    try:
        with open(path, "rb") as f:
            return f.read(256).lstrip()
    except OSError:
        return b""


def check_raster_files(path: str | Path, roots: Sequence[Path]) -> None:
    """Refuse a raster for which GDAL would read a file outside `roots` (a VRT pointing elsewhere, nested or not),
    a virtual path or URL, or a driver other than the plain file ones; with no roots, the raster's own folder
    bounds it. An unreadable raster passes: the indexer reports it with its own message."""
    given = Path(path)
    _check_files(given, list(roots) or [given.resolve().parent], 0, str(path))


def _check_files(path: Path, bounds: list[Path], depth: int, given: str) -> None:
    try:
        with rasterio.open(path) as ds:
            files, driver = list(ds.files or []), ds.driver
    except RasterioIOError:
        return
    if driver not in PLAIN_DRIVERS:
        raise PathNotAllowed(f"{given} opens with GDAL's {driver} driver, which reads more than the file named; "
                             "give a GeoTIFF (or another plain raster file)")
    me = path.resolve()
    for f in files:
        if is_virtual(f):
            raise PathNotAllowed(f"{given} is a {driver} that reads {f}, a virtual path or URL; give a GeoTIFF")
        real = Path(f).resolve()
        if not is_under(real, bounds):
            raise PathNotAllowed(f"{given} is a {driver} that reads {f}, outside the allowed roots "
                                 f"({_allowed_text(bounds)}); give the source raster itself, under an allowed root")
        if real != me and _xml_head(real).startswith(_XML_HEADS):
            if depth >= _MAX_DEPTH:
                raise PathNotAllowed(f"{given} nests VRTs more than {_MAX_DEPTH} deep; give the source raster")
            _check_files(real, bounds, depth + 1, given)


def check_vector_file(path: Path, what: str = "labels") -> None:
    """Refuse a vector file that is really an OGR VRT or service description (it would read elsewhere)."""
    if _xml_head(path).startswith(_XML_HEADS):
        raise PathNotAllowed(f"{what} {path} is a GDAL/OGR XML description that reads other files or services; "
                             "give the GeoPackage, GeoJSON or Shapefile itself")


def find_rasters(paths: Iterable[str | Path]) -> list[str]:
    """Expand folders recursively to their .tif/.tiff files; files are kept as given; order is stable."""
    out: list[str] = []
    for given in paths:
        refuse_virtual(str(given))
        p = Path(given).expanduser().resolve()
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES)
        elif p.is_file():
            out.append(str(p))
        else:
            raise NotFound(f"{given} does not exist; give GeoTIFF files or folders holding them")
    return list(dict.fromkeys(out))
