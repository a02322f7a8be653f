"""HarMA Search: natural-language search over your GeoTIFFs from QGIS, through a local HarMA server."""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    """Return the plugin instance QGIS loads (imports QGIS modules only when QGIS asks)."""
    from .plugin import HarmaSearchPlugin

    return HarmaSearchPlugin(iface)
