"""The collection store: collections on disk (manifest, tile table, hnswlib index shards), their locks, the
tile data model (records) and the allowed-roots path checks. Imports only server.errors and harma_core."""
