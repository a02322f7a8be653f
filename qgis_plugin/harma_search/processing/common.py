"""Parameters and client shared by the HarMA Processing algorithms."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterString,
)

from ..network import ServerClient
from ..settings import load_settings

SERVER_URL = "SERVER_URL"


def add_server_parameter(algorithm: QgsProcessingAlgorithm) -> None:
    """An optional, advanced server URL (defaults to the plugin settings), handy in qgis_process."""
    param = QgsProcessingParameterString(SERVER_URL, "Server URL (empty: plugin settings)", optional=True)
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
    algorithm.addParameter(param)


def client_for(algorithm: QgsProcessingAlgorithm, parameters: dict, context: QgsProcessingContext,
               feedback: QgsProcessingFeedback) -> ServerClient:
    """A client for the chosen server, cancelled through the algorithm's feedback."""
    settings = load_settings()
    url = algorithm.parameterAsString(parameters, SERVER_URL, context).strip() or settings.server_url
    return ServerClient(url, settings.token, feedback)
