"""Results kept with the project: each results layer and the marks are tables of one GeoPackage beside the
project file (`<project>_harma.gpkg`), with their style embedded (`layer_styles`), so a reopened project shows
them. An unsaved project keeps them in the profile folder (`<profile>/harma_search/unsaved/`) until it is
saved; then they move next to it. Exports carry the style and raster paths relative to an allowed folder."""
from __future__ import annotations

import uuid
from contextlib import suppress
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsDataProvider,
    QgsFeature,
    QgsMapLayer,
    QgsMapLayerStyle,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from qgis.PyQt.QtXml import QDomDocument, QDomElement

from .logic.errors import PluginError
from .logic.sources import relative_to_roots

KIND, TABLE = "harma/kind", "harma/table"  # custom properties naming a layer the plugin keeps
RESULT, MARKS = "result", "marks"
SUFFIX = "_harma.gpkg"
EXPORT_TABLE = "harma_results"
_UNSAVED = [uuid.uuid4().hex[:12]]  # the unsaved store's name; a new one once that file was moved away


def unsaved_folder() -> Path:
    """Where an unsaved project's results live: the plugin's folder in the QGIS profile (not the plugin's
    own folder, which QGIS wipes on upgrade)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "harma_search" / "unsaved"


def store_path(project: QgsProject) -> Path:
    """The GeoPackage holding the project's results: beside the project file, else in the profile folder."""
    if project.fileName():
        file = Path(project.fileName())
        return file.with_name(file.stem + SUFFIX)
    return unsaved_folder() / f"unsaved-{_UNSAVED[0]}.gpkg"


def kept_layers(project: QgsProject, kind: str | None = None) -> list[QgsVectorLayer]:
    """The project's layers this plugin keeps (results and marks; one kind when given)."""
    return [layer for layer in project.mapLayers().values()
            if isinstance(layer, QgsVectorLayer) and layer.customProperty(KIND) in ((kind,) if kind else (RESULT, MARKS))]


def write_table(layer: QgsVectorLayer, path: Path, table: str) -> None:
    """Write layer's features as table of the GeoPackage at path (created when missing, table replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = table
    options.fileEncoding = "UTF-8"
    options.actionOnExistingFile = (QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteLayer if path.exists()
                                    else QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteFile)
    error, message, _, _ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(path), QgsProject.instance().transformContext(), options)
    if error != QgsVectorFileWriter.WriterError.NoError:
        raise PluginError(f"Could not write {path}: {message}. Choose a writable .gpkg path or project folder")


def source_of(path: Path, table: str) -> str:
    """The OGR data source of one table of a GeoPackage."""
    return f"{path}|layername={table}"


def table_path(layer: QgsMapLayer) -> Path:
    """The GeoPackage a kept layer reads."""
    return Path(layer.source().split("|", 1)[0])


def embed_style(layer: QgsVectorLayer) -> None:
    """Store layer's style in its GeoPackage (`layer_styles`) as the default, so any QGIS opening it shows it."""
    message = layer.saveStyleToDatabase("HarMA Search", "relevance outlines and rank labels", True, "")
    if message:
        raise PluginError(f"Could not store the style of {layer.name()!r} in its GeoPackage: {message}")


def copy_style(source: QgsMapLayer, target: QgsMapLayer) -> None:
    """Give target source's style (renderer, labels, everything)."""
    style = QgsMapLayerStyle()
    style.readFromLayer(source)
    style.writeToLayer(target)


def persist(layer: QgsVectorLayer, kind: str, project: QgsProject | None = None) -> QgsVectorLayer:
    """A GeoPackage-backed copy of the memory layer (same name and style) in the project's store."""
    project = project or QgsProject.instance()
    table = f"{kind}_{uuid.uuid4().hex[:8]}"
    path = store_path(project)
    write_table(layer, path, table)
    stored = QgsVectorLayer(source_of(path, table), layer.name(), "ogr")
    if not stored.isValid():
        raise PluginError(f"Could not open table {table} of {path}: check that the folder is writable")
    copy_style(layer, stored)
    stored.setCustomProperty(KIND, kind)
    stored.setCustomProperty(TABLE, table)
    embed_style(stored)
    return stored


def relocate(layer: QgsVectorLayer, project: QgsProject) -> bool:
    """Move a kept layer into the store of the project's current file (after a save or 'save as'); False when
    it is there already. An unsaved store left with no layer is deleted."""
    target, old = store_path(project), table_path(layer)
    if old == target:
        return False
    table = str(layer.customProperty(TABLE) or f"{layer.customProperty(KIND)}_{uuid.uuid4().hex[:8]}")
    write_table(layer, target, table)
    layer.setDataSource(source_of(target, table), layer.name(), "ogr", QgsDataProvider.ProviderOptions())
    layer.setCustomProperty(TABLE, table)
    embed_style(layer)
    if old.parent == unsaved_folder() and not any(table_path(x) == old for x in kept_layers(project)):
        with suppress(OSError):
            old.unlink()
        # OGR may still hold the deleted file open: later unsaved results go to a file of another name
        _UNSAVED[0] = uuid.uuid4().hex[:12]
    return True


def rewrite_source(layer: QgsVectorLayer, element: QDomElement, document: QDomDocument) -> None:
    """Point a layer element being written to the project at the layer's (relocated) GeoPackage table."""
    project = QgsProject.instance()
    if not relocate(layer, project):
        return
    old = element.firstChildElement("datasource")
    new = document.createElement("datasource")
    new.appendChild(document.createTextNode(
        f"{project.pathResolver().writePath(str(table_path(layer)))}|layername={layer.customProperty(TABLE)}"))
    if old.isNull():
        element.appendChild(new)
    else:
        element.replaceChild(new, old)


def export_geopackage(layer: QgsVectorLayer, path: str, roots: tuple[str, ...] = ()) -> str:
    """Write layer to a GeoPackage at path (overwriting it) with its style embedded and each raster path
    relative to the allowed folder holding it (never the server's absolute paths); returns the path."""
    copy = QgsVectorLayer(f"Polygon?crs={layer.crs().authid() or 'EPSG:4326'}", layer.name(), "memory")
    copy.dataProvider().addAttributes(layer.fields().toList())
    copy.updateFields()
    column = copy.fields().indexOf("raster")
    features = []
    for feature in layer.getFeatures():
        out = QgsFeature(copy.fields())
        out.setAttributes(feature.attributes())
        out.setGeometry(feature.geometry())
        if column >= 0 and feature["raster"]:
            out.setAttribute(column, relative_to_roots(str(feature["raster"]), roots))
        features.append(out)
    copy.dataProvider().addFeatures(features)
    target = Path(path)
    with suppress(OSError):
        target.unlink()  # an export replaces the whole file
    write_table(copy, target, EXPORT_TABLE)
    written = QgsVectorLayer(source_of(target, EXPORT_TABLE), layer.name(), "ogr")
    copy_style(layer, written)
    embed_style(written)
    return str(target)
