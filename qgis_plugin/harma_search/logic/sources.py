"""Raster file paths from QGIS layer sources and folders, for an indexing request."""
from __future__ import annotations

from pathlib import Path

from .errors import InputError

RASTER_SUFFIXES = (".tif", ".tiff")


def path_from_source(source: str) -> str | None:
    """The file path of a GDAL layer source ('path|option=..'), or None when it is not a local file."""
    path = source.split("|", 1)[0].strip()
    if not path or path.startswith(("/vsi", "http://", "https://")):
        return None
    return str(Path(path).resolve()) if Path(path).is_file() else None


def rasters_in_folder(folder: str, recursive: bool = False) -> list[str]:
    """Sorted absolute paths of the GeoTIFFs in folder (and its subfolders when recursive)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"Folder {folder!r} does not exist: choose a folder that holds GeoTIFFs")
    pattern = "**/*" if recursive else "*"
    found = sorted(str(p.resolve()) for p in root.glob(pattern) if p.suffix.lower() in RASTER_SUFFIXES)
    if not found:
        raise InputError(f"Folder {folder!r} holds no .tif/.tiff files: choose another folder")
    return found


def unique_paths(paths: list[str]) -> tuple[str, ...]:
    """Paths in first-seen order without duplicates."""
    return tuple(dict.fromkeys(paths))


def _root_of(path: str, roots: tuple[str, ...] | list[str]) -> Path | None:
    target = Path(path)
    for root in roots:
        try:
            target.relative_to(Path(root))
        except ValueError:
            continue
        return Path(root)
    return None


def inside_roots(path: str, roots: tuple[str, ...] | list[str]) -> bool:
    """True when path lies in one of the server's allowed folders (compared as given, no file access)."""
    return _root_of(path, roots) is not None


def relative_to_roots(path: str, roots: tuple[str, ...] | list[str]) -> str:
    """path relative to the allowed folder holding it ('sub/scene.tif'); the file name alone when none does,
    so an exported file never carries the server's absolute paths."""
    root = _root_of(path, roots)
    if root is None:
        return path.replace("\\", "/").rsplit("/", 1)[-1]
    return Path(path).relative_to(root).as_posix()
