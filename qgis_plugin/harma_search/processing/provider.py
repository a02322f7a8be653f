"""The 'HarMA Search' Processing provider."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .change_algorithm import CompareDatesAlgorithm
from .index_algorithm import IndexRastersAlgorithm
from .map_algorithm import MapLandCoverAlgorithm
from .search_algorithm import SearchByTextAlgorithm
from .setup_algorithm import SetupServerAlgorithm
from .train_algorithm import TrainAdapterAlgorithm

ICON = str(Path(__file__).resolve().parents[1] / "icon.svg")


class HarmaProvider(QgsProcessingProvider):
    """Provides search, indexing, comparing dates, land-cover maps, adapter training and setting up the local server."""

    def id(self) -> str:  # noqa: A003 - QGIS API name
        """Provider id used in algorithm ids (harma_search:...)."""
        return "harma_search"

    def name(self) -> str:
        """Name shown in the Processing toolbox."""
        return "HarMA Search"

    def icon(self) -> QIcon:
        """Toolbox icon."""
        return QIcon(ICON)

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API name
        """Add the algorithms."""
        self.addAlgorithm(SearchByTextAlgorithm())
        self.addAlgorithm(IndexRastersAlgorithm())
        self.addAlgorithm(TrainAdapterAlgorithm())
        self.addAlgorithm(SetupServerAlgorithm())
        self.addAlgorithm(CompareDatesAlgorithm())
        self.addAlgorithm(MapLandCoverAlgorithm())
