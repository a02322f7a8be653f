"""HarMA Search server. Rooms, imports pointing down only: the HTTP API here (app, api, services, jobs,
training_job, previews, cli) -> search/ and indexing/ -> store/ -> harma_core; errors.py is shared by all."""

__version__ = "0.1.0"
