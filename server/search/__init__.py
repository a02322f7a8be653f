"""Search and ranking: requests, text embedding, area selection, query-bank re-ranking, relevance, feedback
and de-duplication. Imports server.store, server.errors and harma_core; never server.indexing or the HTTP layer."""
