"""Raster paths: allowed-root checks (symlinks resolved, no traversal) and folder expansion."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from server.errors import InvalidRequest, NotFound, PathNotAllowed

RASTER_SUFFIXES = (".tif", ".tiff")


def resolve_allowed(path: str, roots: Sequence[Path]) -> Path:
    """Resolve a user-given path (symlinks and '..' included) and require it to lie under an allowed root."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise InvalidRequest(f"raster path {path!r} is not a usable path string")
    p = Path(path).expanduser()
    if not p.is_absolute():
        raise InvalidRequest(f"raster path {path!r} is relative; give an absolute path")
    real = p.resolve()
    if not any(real == root or real.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "none configured"
        raise PathNotAllowed(f"{path} is outside the allowed roots ({allowed}); start the server with "
                             "--allowed-root for its folder")
    if not real.exists():
        raise NotFound(f"{path} does not exist")
    return real


def find_rasters(paths: Iterable[str | Path]) -> list[str]:
    """Expand folders recursively to their .tif/.tiff files; files are kept as given; order is stable."""
    out: list[str] = []
    for given in paths:
        p = Path(given).expanduser().resolve()
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES)
        elif p.is_file():
            out.append(str(p))
        else:
            raise NotFound(f"{given} does not exist; give GeoTIFF files or folders holding them")
    return list(dict.fromkeys(out))
