"""The model's query bank (shipped caption embeddings, harma_core.querybank) as the server uses it."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def bank_for(model: Any) -> Any | None:
    """The query bank shipped with this model, or None (a model without one, or no bank module)."""
    try:
        from harma_core import querybank
    except ImportError:
        return None
    loader = getattr(querybank, "load_querybank", None) or getattr(querybank, "load_bank", None)
    if loader is None or not hasattr(model, "identity"):
        return None
    try:
        return loader(model)
    except Exception as e:  # noqa: BLE001 - a missing or mismatched bank disables relevance, never search
        log.warning("no query bank for %s: %s", getattr(model, "identity", model), e)
        return None
