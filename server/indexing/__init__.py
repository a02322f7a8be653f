"""The indexing engines: tiling rasters, reading tiles, the local pipeline, Ray Data and GeoParquet shards.
Imports server.store, server.errors and harma_core; never server.search or the HTTP layer."""
